//! Sharded flow metering with a deterministic output order.
//!
//! The caller (the reader) pushes decoded packets. Each packet goes to one of
//! N workers chosen by a symmetric hash of its addresses and protocol (ports
//! are left out so that non-first fragments, which have none, land with their
//! datagram). Each worker owns a [`FlowTable`] outright. Packets travel in
//! batches over bounded channels; every batch carries the capture clock as a
//! watermark, so timeouts fire on workers that saw no packet.
//!
//! A merger collects the workers' records and releases, in
//! [`FlowRecord::order_key`] order, every record due strictly before the
//! lowest watermark all workers have acknowledged. No worker can later emit a
//! record due before that watermark, and record contents do not depend on
//! sharding, so the output sequence is the same for any number of workers
//! (the one exception is `max_flows`, which is a per-table limit).

use std::net::IpAddr;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::decode::PacketRepr;
use crate::flow::config::FlowConfig;
use crate::flow::record::FlowRecord;
use crate::flow::table::{FlowTable, TableStats};

/// Packets per worker batch.
const BATCH: usize = 512;
/// Every this many packets all workers get a batch (and so a watermark).
const TICK_EVERY: u64 = 8192;

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Number of worker threads (at least 1).
    pub workers: usize,
    /// Flow metering settings, the same for every worker. `max_flows` is
    /// divided among the workers.
    pub flow: FlowConfig,
}

#[derive(Debug, Clone, Copy)]
struct Observation {
    packet: PacketRepr,
    ts_ns: u64,
    clock_ns: u64,
}

enum WorkerMsg {
    Batch(Vec<Observation>, u64),
    Finish(u64),
}

enum MergeMsg {
    Records {
        worker: usize,
        records: Vec<FlowRecord>,
        watermark: u64,
    },
    Done {
        worker: usize,
        records: Vec<FlowRecord>,
    },
}

/// The output side has gone away (the record receiver was dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the flow record consumer stopped")]
pub struct PipelineClosed;

/// A running pipeline. Push packets, then [`finish`](Pipeline::finish).
#[derive(Debug)]
pub struct Pipeline {
    senders: Vec<Sender<WorkerMsg>>,
    batches: Vec<Vec<Observation>>,
    workers: Vec<JoinHandle<TableStats>>,
    merger: JoinHandle<()>,
    clock_ns: u64,
    since_tick: u64,
}

impl Pipeline {
    /// Starts the workers and the merger. Ordered records arrive on the
    /// returned receiver in batches; it disconnects after the last one.
    pub fn start(config: PipelineConfig) -> (Pipeline, Receiver<Vec<FlowRecord>>) {
        let n = config.workers.max(1);
        let (merge_tx, merge_rx) = bounded::<MergeMsg>(4 * n);
        let (out_tx, out_rx) = bounded::<Vec<FlowRecord>>(16);
        let mut flow = config.flow.clone();
        if flow.max_flows > 0 {
            flow.max_flows = flow.max_flows.div_ceil(n);
        }
        let mut senders = Vec::with_capacity(n);
        let mut workers = Vec::with_capacity(n);
        for worker in 0..n {
            let (tx, rx) = bounded::<WorkerMsg>(8);
            senders.push(tx);
            let merge_tx = merge_tx.clone();
            let table = FlowTable::new(flow.clone());
            workers.push(
                thread::Builder::new()
                    .name(format!("flow-worker-{worker}"))
                    .spawn(move || run_worker(worker, table, rx, merge_tx))
                    .expect("spawning a worker thread"),
            );
        }
        drop(merge_tx);
        let merger = thread::Builder::new()
            .name("flow-merger".into())
            .spawn(move || run_merger(n, merge_rx, out_tx))
            .expect("spawning the merger thread");
        let pipeline = Pipeline {
            senders,
            batches: (0..n).map(|_| Vec::with_capacity(BATCH)).collect(),
            workers,
            merger,
            clock_ns: 0,
            since_tick: 0,
        };
        (pipeline, out_rx)
    }

    /// The capture clock: the highest timestamp pushed so far.
    pub fn clock_ns(&self) -> u64 {
        self.clock_ns
    }

    /// Accounts one packet captured at `ts_ns`.
    ///
    /// # Errors
    /// The record consumer has stopped.
    pub fn push(&mut self, packet: PacketRepr, ts_ns: u64) -> Result<(), PipelineClosed> {
        self.clock_ns = self.clock_ns.max(ts_ns);
        let w = shard(&packet, self.senders.len());
        self.batches[w].push(Observation {
            packet,
            ts_ns,
            clock_ns: self.clock_ns,
        });
        self.since_tick += 1;
        if self.since_tick >= TICK_EVERY {
            self.since_tick = 0;
            for w in 0..self.senders.len() {
                self.send_batch(w)?;
            }
        } else if self.batches[w].len() >= BATCH {
            self.send_batch(w)?;
        }
        Ok(())
    }

    /// Sends every worker its pending packets and the current clock now,
    /// instead of when batches fill. Call it before the input may stall
    /// (a pipe with nothing ready), so that records already due are released
    /// without waiting for more packets. Output does not change.
    ///
    /// # Errors
    /// The record consumer stopped.
    pub fn sync(&mut self) -> Result<(), PipelineClosed> {
        self.since_tick = 0;
        for w in 0..self.senders.len() {
            self.send_batch(w)?;
        }
        Ok(())
    }

    fn send_batch(&mut self, w: usize) -> Result<(), PipelineClosed> {
        let batch = std::mem::replace(&mut self.batches[w], Vec::with_capacity(BATCH));
        self.senders[w]
            .send(WorkerMsg::Batch(batch, self.clock_ns))
            .map_err(|_| PipelineClosed)
    }

    /// Ends every open flow at the current clock, waits for the last records
    /// to be released, and returns the workers' counters.
    ///
    /// # Errors
    /// The record consumer stopped before the end.
    pub fn finish(mut self) -> Result<TableStats, PipelineClosed> {
        let mut closed = false;
        for w in 0..self.senders.len() {
            closed |= self.send_batch(w).is_err();
            closed |= self.senders[w]
                .send(WorkerMsg::Finish(self.clock_ns))
                .is_err();
        }
        self.senders.clear();
        let mut stats = TableStats::default();
        for h in self.workers {
            match h.join() {
                Ok(s) => stats.merge(&s),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        if let Err(panic) = self.merger.join() {
            std::panic::resume_unwind(panic);
        }
        if closed {
            Err(PipelineClosed)
        } else {
            Ok(stats)
        }
    }
}

/// A symmetric shard choice from the addresses and protocol only.
fn shard(p: &PacketRepr, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    fn fold(a: IpAddr) -> u64 {
        match a {
            IpAddr::V4(v4) => u64::from(u32::from(v4)),
            IpAddr::V6(v6) => {
                let x = u128::from(v6);
                (x as u64) ^ ((x >> 64) as u64)
            }
        }
    }
    // XOR is symmetric; the multiply-shift spreads the bits.
    let x = (fold(p.src) ^ fold(p.dst) ^ u64::from(p.protocol)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((x >> 32) as usize) % n
}

fn run_worker(
    worker: usize,
    mut table: FlowTable,
    rx: Receiver<WorkerMsg>,
    merge: Sender<MergeMsg>,
) -> TableStats {
    let mut out = Vec::new();
    for msg in rx {
        match msg {
            WorkerMsg::Batch(batch, watermark) => {
                for o in &batch {
                    table.observe(&o.packet, o.ts_ns, o.clock_ns, &mut out);
                }
                table.advance(watermark, &mut out);
                let records = std::mem::take(&mut out);
                if merge
                    .send(MergeMsg::Records {
                        worker,
                        records,
                        watermark,
                    })
                    .is_err()
                {
                    break;
                }
            }
            WorkerMsg::Finish(clock) => {
                table.flush(clock, &mut out);
                let records = std::mem::take(&mut out);
                let _ = merge.send(MergeMsg::Done { worker, records });
                break;
            }
        }
    }
    *table.stats()
}

/// The output order (see [`FlowRecord::order_key`]), compared in place.
fn output_order(a: &FlowRecord, b: &FlowRecord) -> std::cmp::Ordering {
    a.export_clock_ns
        .cmp(&b.export_clock_ns)
        .then(a.start_ns.cmp(&b.start_ns))
        .then_with(|| a.key.cmp(&b.key))
        .then(a.record_seq.cmp(&b.record_seq))
}

/// Moves the records of `pending` due before `bound` (all of them when
/// `bound` is `None`) to a vector in output order. Records are large, so they
/// are sorted through indices and each moved once.
fn release(pending: &mut Vec<FlowRecord>, bound: Option<u64>) -> Vec<FlowRecord> {
    let due = |r: &FlowRecord| bound.is_none_or(|b| r.export_clock_ns < b);
    let ready: Vec<FlowRecord> = if bound.is_none() {
        std::mem::take(pending)
    } else {
        if !pending.iter().any(due) {
            return Vec::new();
        }
        let (ready, rest) = std::mem::take(pending).into_iter().partition(due);
        *pending = rest;
        ready
    };
    let mut order: Vec<u32> = (0..ready.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| output_order(&ready[a as usize], &ready[b as usize]));
    let mut slots: Vec<Option<FlowRecord>> = ready.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| slots[i as usize].take())
        .collect()
}

fn run_merger(n: usize, rx: Receiver<MergeMsg>, out: Sender<Vec<FlowRecord>>) {
    let mut pending: Vec<FlowRecord> = Vec::new();
    let mut watermarks = vec![0u64; n];
    let mut done = vec![false; n];
    for msg in rx {
        match msg {
            MergeMsg::Records {
                worker,
                records,
                watermark,
            } => {
                pending.extend(records);
                watermarks[worker] = watermark;
            }
            MergeMsg::Done { worker, records } => {
                pending.extend(records);
                done[worker] = true;
            }
        }
        let all_done = done.iter().all(|d| *d);
        let bound = watermarks
            .iter()
            .zip(&done)
            .filter(|(_, d)| !**d)
            .map(|(w, _)| *w)
            .min()
            .unwrap_or(u64::MAX);
        let ready = release(&mut pending, (!all_done).then_some(bound));
        if !ready.is_empty() && out.send(ready).is_err() {
            return;
        }
        if all_done {
            return;
        }
    }
}
