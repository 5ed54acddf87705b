//! Sharded flow metering with a deterministic output order.
//!
//! The caller (the reader) pushes decoded packets. Each packet goes to one of
//! N workers chosen by a symmetric hash of its addresses and protocol (ports
//! are left out so that non-first fragments, which have none, land with their
//! datagram). Each worker owns a [`FlowTable`] outright. Packets travel in
//! batches over bounded channels; every batch carries the capture clock as a
//! watermark, so timeouts fire on workers that saw no packet.
//!
//! Each worker sends its records in [`FlowRecord::order_key`] order: a batch's
//! records are sorted, and a later batch's are all due after the earlier
//! batch's watermark. Workers can map records (e.g. encode them as spans)
//! before sending, in parallel. A merger does a k-way merge of the workers'
//! streams and releases an item once no worker can still send an earlier
//! one: every other worker has a later item queued, has sent a later item,
//! has acknowledged a watermark after the item's due time, or is done. Record
//! contents do not depend on sharding, so the output sequence is the same for
//! any number of workers (the one exception is `max_flows`, which is a
//! per-table limit). At the end of input each worker sorts its final records
//! and sends them in chunks, so the final flush streams through the merger
//! instead of being held in memory whole.

use std::net::IpAddr;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::decode::PacketRepr;
use crate::flow::config::FlowConfig;
use crate::flow::key::FlowKey;
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

/// What orders an output item: its record's [`FlowRecord::order_key`].
type OrderKey = (u64, u64, FlowKey, u32);

/// A worker's output item with what orders it.
type Item<T> = (OrderKey, T);

enum MergeMsg<T> {
    /// Items in output order, after the worker's earlier items; then, if
    /// given, a watermark: the worker will send nothing due before it.
    Records {
        worker: usize,
        items: Vec<Item<T>>,
        watermark: Option<u64>,
    },
    /// The worker has sent everything.
    Done { worker: usize },
}

/// Final records travel to the merger in chunks of this many.
const FLUSH_CHUNK: usize = 4096;

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
        Pipeline::start_mapped(config, |records| records)
    }

    /// Like [`start`](Self::start), but each worker turns its records into
    /// `T`s with `map` (e.g. encodes them as spans) before they are ordered,
    /// so that this work runs in parallel; each worker has its own clone of
    /// `map`. `map` gets the records of one message at a time, in output
    /// order, and must return one item per record in the same order (so it
    /// can, for instance, encode them all into one buffer). Items arrive in
    /// the records' output order.
    ///
    /// # Panics
    /// A worker panics if `map` returns a different number of items than
    /// it was given records.
    pub fn start_mapped<T, F>(config: PipelineConfig, map: F) -> (Pipeline, Receiver<Vec<T>>)
    where
        T: Send + 'static,
        F: FnMut(Vec<FlowRecord>) -> Vec<T> + Clone + Send + 'static,
    {
        let n = config.workers.max(1);
        let (merge_tx, merge_rx) = bounded::<MergeMsg<T>>(4 * n);
        let (out_tx, out_rx) = bounded::<Vec<T>>(16);
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
            let map = map.clone();
            workers.push(
                thread::Builder::new()
                    .name(format!("flow-worker-{worker}"))
                    .spawn(move || run_worker(worker, table, rx, merge_tx, map))
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

fn run_worker<T, F: FnMut(Vec<FlowRecord>) -> Vec<T>>(
    worker: usize,
    mut table: FlowTable,
    rx: Receiver<WorkerMsg>,
    merge: Sender<MergeMsg<T>>,
    mut map: F,
) -> TableStats {
    let mut out = Vec::new();
    let mut items_of = |records: Vec<FlowRecord>| -> Vec<Item<T>> {
        let keys: Vec<OrderKey> = records.iter().map(FlowRecord::order_key).collect();
        let items = map(records);
        assert_eq!(items.len(), keys.len(), "map returns one item per record");
        keys.into_iter().zip(items).collect()
    };
    for msg in rx {
        match msg {
            WorkerMsg::Batch(batch, watermark) => {
                for o in &batch {
                    table.observe(&o.packet, o.ts_ns, o.clock_ns, &mut out);
                }
                table.advance(watermark, &mut out);
                let msg = MergeMsg::Records {
                    worker,
                    items: items_of(sorted(&mut out)),
                    watermark: Some(watermark),
                };
                if merge.send(msg).is_err() {
                    break;
                }
            }
            WorkerMsg::Finish(clock) => {
                table.flush_sorted(clock, FLUSH_CHUNK, |records| {
                    let msg = MergeMsg::Records {
                        worker,
                        items: items_of(records),
                        watermark: None,
                    };
                    merge.send(msg).is_ok()
                });
                let _ = merge.send(MergeMsg::Done { worker });
                break;
            }
        }
    }
    *table.stats()
}

/// Drains `records` in output order. Records are large, so they are sorted
/// through indices and each moved once.
fn sorted(records: &mut Vec<FlowRecord>) -> Vec<FlowRecord> {
    let mut order: Vec<(OrderKey, u32)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.order_key(), i as u32))
        .collect();
    order.sort_unstable_by_key(|e| e.0);
    // Taking the vector (not draining it) lets the collect reuse its memory.
    let mut slots: Vec<Option<FlowRecord>> =
        std::mem::take(records).into_iter().map(Some).collect();
    order
        .iter()
        .filter_map(|&(_, i)| slots[i as usize].take())
        .collect()
}

/// One worker's stream of items, as the merger sees it.
struct Stream<T> {
    queue: std::collections::VecDeque<Item<T>>,
    /// The worker sends nothing due before this.
    watermark: u64,
    /// The last item received: the worker sends nothing before it.
    last: Option<OrderKey>,
    done: bool,
}

impl<T> Stream<T> {
    /// Whether this worker can no longer send an item ordered before `x`.
    fn is_past(&self, x: &OrderKey) -> bool {
        self.done
            || !self.queue.is_empty()
            // Strictly: records forced out at the end of input are due at
            // the last watermark itself.
            || x.0 < self.watermark
            || self.last.is_some_and(|k| *x < k)
    }
}

fn run_merger<T>(n: usize, rx: Receiver<MergeMsg<T>>, out: Sender<Vec<T>>) {
    let mut streams: Vec<Stream<T>> = (0..n)
        .map(|_| Stream {
            queue: std::collections::VecDeque::new(),
            watermark: 0,
            last: None,
            done: false,
        })
        .collect();
    for msg in rx {
        match msg {
            MergeMsg::Records {
                worker,
                items,
                watermark,
            } => {
                let s = &mut streams[worker];
                if let Some((k, _)) = items.last() {
                    s.last = Some(*k);
                }
                s.queue.extend(items);
                if let Some(w) = watermark {
                    s.watermark = w;
                }
            }
            MergeMsg::Done { worker } => streams[worker].done = true,
        }
        // k-way merge: take the smallest head while no worker can still
        // send something before it.
        let mut ready = Vec::new();
        loop {
            let mut best: Option<usize> = None;
            for (w, s) in streams.iter().enumerate() {
                if let Some((k, _)) = s.queue.front()
                    && best.is_none_or(|b| *k < streams[b].queue[0].0)
                {
                    best = Some(w);
                }
            }
            let Some(b) = best else { break };
            let head = streams[b].queue[0].0;
            if !streams.iter().all(|s| s.is_past(&head)) {
                break;
            }
            if let Some((_, item)) = streams[b].queue.pop_front() {
                ready.push(item);
            }
        }
        if !ready.is_empty() && out.send(ready).is_err() {
            return;
        }
        if streams.iter().all(|s| s.done) {
            return;
        }
    }
}
