//! Sharded flow metering with a deterministic output order.
//!
//! The caller (the reader) pushes decoded packets. Each packet goes to one of
//! N workers chosen by a symmetric hash of its addresses and protocol (ports
//! are left out so that non-first fragments, which have none, land with their
//! datagram). Each worker owns a [`FlowTable`] outright. Packets travel in
//! batches over a lock-free single-producer ring per worker (the private
//! `ring` module), and the emptied batches come back over a second ring, so that once running the reader allocates nothing. Every batch
//! carries the capture clock as a watermark, so timeouts fire on workers that
//! saw no packet.
//!
//! Each worker sends its records in [`FlowRecord::order_key`] order: a batch's
//! records are sorted, and a later batch's are all due after the earlier
//! batch's watermark. Workers can map records (e.g. encode them as spans)
//! before sending, in parallel, each over its own ring to the consumer. The
//! consumer's [`Records`] does a k-way merge of the workers' streams as it is
//! read (no thread of its own), and releases an item once no worker can
//! still send an earlier one: every other worker has a later item queued,
//! has sent a later item, has acknowledged a watermark after the item's due
//! time, or is done. Record contents do not depend on sharding, so the
//! output sequence is the same for any number of workers (the one exception
//! is `max_flows`, which is a per-table limit). At the end of input each worker sorts its final records
//! and sends them in chunks, so the final flush streams through the merge
//! instead of being held in memory whole: the merge holds at most a few
//! chunks of a flushing worker that is ahead of the others.
//!
//! Read the records on a thread other than the one that pushes packets and
//! calls [`Pipeline::finish`]: a worker waits while its ring to the consumer
//! is full.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::decode::PacketRepr;
use crate::enrich::EnrichmentView;
use crate::flow::config::FlowConfig;
use crate::flow::host::HostView;
use crate::flow::key::FlowKey;
use crate::flow::observation::FlowObservation;
use crate::flow::record::{FlowRecord, sort_in_output_order};
use crate::flow::table::{FlowTable, TableStats};
use crate::registry::{Registry, TableSlot};
use crate::ring::{self, Waker};
use crate::sample::FlowSampler;

/// Packets per worker batch.
const BATCH: usize = 512;
/// Every this many packets all workers get a batch (and so a watermark).
const TICK_EVERY: u64 = 8192;
/// Batches queued to one worker: 2 MB of packets (120 bytes each). A
/// reader that finds the ring full waits for half of it to drain, so a
/// longer ring means fewer of its sleeps and wake-ups.
const WORKER_RING: usize = 32;
/// Messages queued from one worker to the consumer.
const MERGE_RING: usize = 4;
/// While full batches keep coming, a worker sends its items when it has
/// this many, not after every batch: each message can cost the consumer a
/// wake-up. A batch sent for any other reason ([`Cut::Flush`]: a tick every
/// `TICK_EVERY` packets, a sync, the end) sends what is held with it, so a
/// live capture's records wait at most until its next clock tick, and the
/// merge never waits on a worker's held records for more than a tick.
const HOLD_ITEMS: usize = 1024;

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Number of worker threads (at least 1).
    pub workers: usize,
    /// Flow metering settings, the same for every worker. `max_flows` is
    /// divided among the workers.
    pub flow: FlowConfig,
    /// The observing host's addresses and listening sockets, kept current
    /// by the capture side (live capture); workers take a new snapshot
    /// between batches.
    pub host: Option<HostView>,
    /// Where each worker publishes its table's counters after every batch.
    pub registry: Registry,
    /// What is known about endpoints (processes, pods), kept current by
    /// whatever watches them; each record is looked up when it is emitted.
    pub enrichment: Option<EnrichmentView>,
    /// Flow sampling: records of flows it leaves out are dropped (and
    /// counted) as they are emitted, before enrichment.
    pub sampler: Option<FlowSampler>,
}

/// A packet, its timestamp and the capture clock when it arrived.
type Observation = (PacketRepr, u64, u64);

/// A flow observation, the capture clock when it arrived, and how many of
/// its batch's packets came before it (so that the worker takes packets and
/// observations in the order they were pushed).
type FlowInput = (FlowObservation, u64, usize);

/// Why a batch was sent, which says whether its worker may hold its records
/// back (see [`HOLD_ITEMS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The batch filled up: more input is already coming.
    Full,
    /// A tick, a sync (the input paused, or a live capture's clock moved) or
    /// the end: the records go out with it.
    Flush,
}

#[derive(Debug)]
enum WorkerMsg {
    /// Packets and flow observations (usually none; each says where among
    /// the packets it came), then the watermark, then the interfaces whose
    /// flows end at the watermark (usually none), then whether the worker
    /// must send its records now ([`Cut::Flush`]) or may hold them.
    Batch(Vec<Observation>, Vec<FlowInput>, u64, Vec<u32>, Cut),
    Finish(u64),
}

/// What orders an output item: its record's [`FlowRecord::order_key`].
type OrderKey = (u64, u64, FlowKey, u32);

/// A worker's output item with what orders it.
type Item<T> = (OrderKey, T);

enum MergeMsg<T> {
    /// Items in output order, after the worker's earlier items; then, if
    /// given, a watermark: the worker will send nothing due before it. The
    /// final flush sends no watermark.
    Records {
        items: Vec<Item<T>>,
        watermark: Option<u64>,
    },
    /// The worker has sent everything.
    Done,
}

/// Final records travel to the consumer in chunks of this many. Each
/// encoded span held keeps its bytes (about 2.3 KB as JSON): a worker ahead
/// of the others can have `MERGE_RING` chunks queued, `FLUSH_HOLD` items
/// held and a chunk in the making, about 5 MB at 256. At 1024 it was 19 MB
/// (75 MB at 4096), most of what a second worker added to the peak RSS:
/// two workers' peak RSS was 24 MB lower at 256, for 0.944 of the wall
/// time (benches/README.md, issue 21, fourth steps).
const FLUSH_CHUNK: usize = 256;
/// The merge stops taking a flushing worker's chunks while it holds this
/// many of its items that it cannot release yet.
const FLUSH_HOLD: usize = 4 * FLUSH_CHUNK;

/// The output side has gone away (the record receiver was dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the flow record consumer stopped")]
pub struct PipelineClosed;

/// A running pipeline. Push packets, then [`finish`](Pipeline::finish).
#[derive(Debug)]
pub struct Pipeline {
    senders: Vec<ring::Sender<WorkerMsg>>,
    /// Emptied batches coming back from each worker.
    returns: Vec<ring::Receiver<Vec<Observation>>>,
    batches: Vec<Vec<Observation>>,
    /// Flow observations waiting for each worker's next batch.
    flow_batches: Vec<Vec<FlowInput>>,
    /// Interfaces whose flows end with the next batches.
    ended_interfaces: Vec<u32>,
    workers: Vec<JoinHandle<TableStats>>,
    clock_ns: u64,
    since_tick: u64,
}

impl Pipeline {
    /// Starts the workers. Ordered records come out of the returned
    /// [`Records`] in batches; it ends after the last one.
    pub fn start(config: PipelineConfig) -> (Pipeline, Records<FlowRecord>) {
        Pipeline::start_mapped(config, |records| records.into_iter().map(Some).collect())
    }

    /// Like [`start`](Self::start), but each worker turns its records into
    /// `T`s with `map` (e.g. encodes them as spans) before they are ordered,
    /// so that this work runs in parallel; each worker has its own clone of
    /// `map`. `map` gets the records of one message at a time, in output
    /// order, and must return one item per record in the same order (so it
    /// can, for instance, encode them all into one buffer), `None` for a
    /// record it leaves out (a record filter; counted in the registry).
    /// Items arrive in the records' output order.
    ///
    /// # Panics
    /// A worker panics if `map` returns a different number of items than
    /// it was given records.
    pub fn start_mapped<T, F>(config: PipelineConfig, map: F) -> (Pipeline, Records<T>)
    where
        T: Send + 'static,
        F: FnMut(Vec<FlowRecord>) -> Vec<Option<T>> + Clone + Send + 'static,
    {
        let n = config.workers.max(1);
        let mut flow = config.flow.clone();
        if flow.max_flows > 0 {
            flow.max_flows = flow.max_flows.div_ceil(n);
        }
        let consumer_waker = Waker::new();
        let mut senders = Vec::with_capacity(n);
        let mut returns = Vec::with_capacity(n);
        let mut merge_rings = Vec::with_capacity(n);
        let mut workers = Vec::with_capacity(n);
        for worker in 0..n {
            let (tx, rx) = ring::ring::<WorkerMsg>(WORKER_RING, Waker::new());
            // Room for every batch that can exist: queued, being filled and
            // being metered.
            let (ret_tx, ret_rx) = ring::ring(WORKER_RING + 2, Waker::new());
            let (merge_tx, merge_rx) = ring::ring(MERGE_RING, consumer_waker.clone());
            senders.push(tx);
            returns.push(ret_rx);
            merge_rings.push(merge_rx);
            let table = FlowTable::new(flow.clone());
            let map = map.clone();
            let host = config.host.clone();
            let enrichment = config.enrichment.clone();
            let slot = config.registry.table();
            let sampler = config.sampler;
            workers.push(
                thread::Builder::new()
                    .name(format!("flow-worker-{worker}"))
                    .spawn(move || {
                        let views = Views {
                            host,
                            enrichment,
                            sampler,
                        };
                        run_worker(table, views, slot, rx, ret_tx, merge_tx, map)
                    })
                    .expect("spawning a worker thread"),
            );
        }
        let records = Records {
            streams: (0..n).map(|_| Stream::default()).collect(),
            rings: merge_rings,
            waker: consumer_waker,
        };
        let pipeline = Pipeline {
            senders,
            returns,
            batches: (0..n).map(|_| Vec::with_capacity(BATCH)).collect(),
            flow_batches: (0..n).map(|_| Vec::new()).collect(),
            ended_interfaces: Vec::new(),
            workers,
            clock_ns: 0,
            since_tick: 0,
        };
        (pipeline, records)
    }

    /// The capture clock: the highest timestamp pushed so far.
    pub fn clock_ns(&self) -> u64 {
        self.clock_ns
    }

    /// Accounts one packet captured at `ts_ns`.
    ///
    /// # Errors
    /// The record consumer has stopped.
    #[inline]
    pub fn push(&mut self, packet: PacketRepr, ts_ns: u64) -> Result<(), PipelineClosed> {
        self.clock_ns = self.clock_ns.max(ts_ns);
        let w = shard(&packet, self.senders.len());
        self.batches[w].push((packet, ts_ns, self.clock_ns));
        self.since_tick += 1;
        if self.since_tick >= TICK_EVERY {
            self.since_tick = 0;
            for w in 0..self.senders.len() {
                self.send_batch(w, Cut::Flush)?;
            }
        } else if self.batches[w].len() >= BATCH {
            self.send_batch(w, Cut::Full)?;
        }
        Ok(())
    }

    /// Accounts one flow observation (flow-level input, e.g. a kernel
    /// aggregate). It goes to the worker that owns the flow's packets, and
    /// is taken in after the packets pushed before it into the same batch.
    /// Its `last_seen_ns` moves the capture clock as a packet's timestamp
    /// does.
    ///
    /// # Errors
    /// The record consumer has stopped.
    pub fn push_flow(&mut self, observation: FlowObservation) -> Result<(), PipelineClosed> {
        self.clock_ns = self.clock_ns.max(observation.last_seen_ns);
        let k = &observation.key;
        let w = shard_of(k.a, k.b, k.protocol, self.senders.len());
        let at = self.batches[w].len();
        self.flow_batches[w].push((observation, self.clock_ns, at));
        if self.flow_batches[w].len() >= BATCH {
            self.send_batch(w, Cut::Full)?;
        }
        Ok(())
    }

    /// Moves the capture clock forward to `clock_ns` (it never goes back)
    /// without a packet: live capture advances it with the wall clock, so
    /// that flows time out while no packet arrives. It reaches the workers
    /// with the next batches, or at once with [`sync`](Self::sync).
    pub fn advance_clock(&mut self, clock_ns: u64) {
        self.clock_ns = self.clock_ns.max(clock_ns);
    }

    /// Ends the open flows kept by interface `ifindex` (it went away) at
    /// the current clock, as `forced_end` (`end_of_flow_detected` for TCP
    /// flows already closed); sent to every worker at once.
    ///
    /// # Errors
    /// The record consumer stopped.
    pub fn end_interface(&mut self, ifindex: u32) -> Result<(), PipelineClosed> {
        self.ended_interfaces.push(ifindex);
        self.sync()?;
        self.ended_interfaces.clear();
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
            self.send_batch(w, Cut::Flush)?;
        }
        Ok(())
    }

    fn send_batch(&mut self, w: usize, why: Cut) -> Result<(), PipelineClosed> {
        self.send_batch_at(w, why, self.clock_ns)
    }

    /// [`send_batch`](Self::send_batch) with `watermark` instead of the
    /// clock.
    fn send_batch_at(&mut self, w: usize, why: Cut, watermark: u64) -> Result<(), PipelineClosed> {
        let fresh = self.returns[w]
            .try_recv()
            .unwrap_or_else(|| Vec::with_capacity(BATCH));
        let batch = std::mem::replace(&mut self.batches[w], fresh);
        let flows = std::mem::take(&mut self.flow_batches[w]);
        self.senders[w]
            .send(WorkerMsg::Batch(
                batch,
                flows,
                watermark,
                self.ended_interfaces.clone(),
                why,
            ))
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
            closed |= self
                .send_batch_at(w, Cut::Flush, last_watermark(self.clock_ns))
                .is_err();
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
        if closed {
            Err(PipelineClosed)
        } else {
            Ok(stats)
        }
    }
}

/// The watermark of the batch sent just before the end of input at
/// `clock`: flows whose idle time runs out at the clock itself are left
/// for the final flush, which sorts their records among the records of the
/// flows it ends (due at the clock too). Ended by that batch, they would go
/// out ahead of all of those with one worker and among them with several.
fn last_watermark(clock: u64) -> u64 {
    clock.saturating_sub(1)
}

/// A symmetric shard choice from the addresses and protocol only.
#[inline]
fn shard(p: &PacketRepr, n: usize) -> usize {
    shard_of(p.src, p.dst, p.protocol, n)
}

/// The shard of a flow between `a` and `b`, in either order.
#[inline]
fn shard_of(a: IpAddr, b: IpAddr, protocol: u8, n: usize) -> usize {
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
    // XOR is symmetric; the multiply-shift spreads the bits. The top 32
    // bits, a fraction of 2^32, are scaled to `n` by a multiply, not a
    // division (the division took a tenth of the frame loop's samples in a
    // two-worker profile, benches/README).
    let x = (fold(a) ^ fold(b) ^ u64::from(protocol)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (((x >> 32) * n as u64) >> 32) as usize
}

/// The snapshots a worker follows.
struct Views {
    host: Option<HostView>,
    enrichment: Option<EnrichmentView>,
    sampler: Option<FlowSampler>,
}

fn run_worker<T, F: FnMut(Vec<FlowRecord>) -> Vec<Option<T>>>(
    mut table: FlowTable,
    views: Views,
    slot: TableSlot,
    mut rx: ring::Receiver<WorkerMsg>,
    mut returns: ring::Sender<Vec<Observation>>,
    mut merge: ring::Sender<MergeMsg<T>>,
    mut map: F,
) -> TableStats {
    let mut out = Vec::new();
    let mut directory = views.enrichment.as_ref().map(|e| e.get());
    let mut enrichment_seen = 0;
    let sampler = views.sampler;
    let mut left_out = LeftOut::default();
    let mut items_of = |mut records: Vec<FlowRecord>,
                        directory: &Option<std::sync::Arc<crate::enrich::Directory>>,
                        left_out: &mut LeftOut|
     -> Vec<Item<T>> {
        if let Some(s) = sampler {
            let before = records.len();
            records.retain(|r| s.keeps(&r.community_id));
            left_out.sampled += (before - records.len()) as u64;
        }
        if let Some(d) = directory {
            for r in &mut records {
                d.enrich(r);
            }
        }
        let keys: Vec<OrderKey> = records.iter().map(FlowRecord::order_key).collect();
        let n = keys.len();
        let items = map(records);
        assert_eq!(items.len(), n, "map returns one item per record");
        let kept: Vec<Item<T>> = keys
            .into_iter()
            .zip(items)
            .filter_map(|(k, item)| item.map(|i| (k, i)))
            .collect();
        left_out.filtered += (n - kept.len()) as u64;
        kept
    };
    let mut host_seen = 0;
    // Items of full batches not sent yet, and the watermark they are due by.
    let mut held: Vec<Item<T>> = Vec::new();
    let mut last_watermark = 0;
    while let Some(msg) = rx.recv() {
        if let Some(next) = views.host.as_ref().and_then(|h| h.changed(&mut host_seen)) {
            table.set_host(Some(next));
        }
        if let Some(next) = views
            .enrichment
            .as_ref()
            .and_then(|e| e.changed(&mut enrichment_seen))
        {
            directory = Some(next);
        }
        match msg {
            WorkerMsg::Batch(mut batch, flows, watermark, ended, why) => {
                // In the order they were pushed: the packets before each
                // observation, then it.
                let mut done = 0;
                for (observation, clock, at) in &flows {
                    table.observe_batch(&batch[done..*at], &mut out);
                    done = *at;
                    table.observe_flow(observation, *clock, &mut out);
                }
                table.observe_batch(&batch[done..], &mut out);
                batch.clear();
                // Only fails if the reader has gone away.
                let _ = returns.try_send(batch);
                table.advance(watermark, &mut out);
                for ifindex in ended {
                    table.end_interface(ifindex, watermark, &mut out);
                }
                held.extend(items_of(sorted(&mut out), &directory, &mut left_out));
                slot.publish(table.stats(), table.len());
                slot.publish_left_out(left_out.sampled, left_out.filtered);
                last_watermark = watermark;
                if why == Cut::Full && held.len() < HOLD_ITEMS {
                    continue;
                }
                let msg = MergeMsg::Records {
                    items: std::mem::take(&mut held),
                    watermark: Some(watermark),
                };
                if merge.send(msg).is_err() {
                    break;
                }
            }
            WorkerMsg::Finish(clock) => {
                // `Pipeline::finish` sends a last batch first, with
                // `Cut::Flush`: nothing is held.
                debug_assert!(held.is_empty());
                table.flush_sorted(clock, FLUSH_CHUNK, |records| {
                    let msg = MergeMsg::Records {
                        items: items_of(records, &directory, &mut left_out),
                        watermark: None,
                    };
                    merge.send(msg).is_ok()
                });
                let _ = merge.send(MergeMsg::Done);
                slot.publish(table.stats(), table.len());
                slot.publish_left_out(left_out.sampled, left_out.filtered);
                break;
            }
        }
    }
    if !held.is_empty() {
        // The reader went away without finishing: what was metered still
        // goes out.
        let _ = merge.send(MergeMsg::Records {
            items: held,
            watermark: Some(last_watermark),
        });
    }
    *table.stats()
}

/// Records a worker emitted and left out, by why.
#[derive(Debug, Default, Clone, Copy)]
struct LeftOut {
    /// Flow sampling left their flows out.
    sampled: u64,
    /// The map (a record filter) left them out.
    filtered: u64,
}

/// Drains `records` in output order. Records are large, so they are sorted
/// through indices and each moved once.
fn sorted(records: &mut Vec<FlowRecord>) -> Vec<FlowRecord> {
    let mut order: Vec<(u64, u64, u32)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (due, start) = r.order_times();
            (due, start, i as u32)
        })
        .collect();
    sort_in_output_order(&mut order, |i| records[i as usize].order_tie());
    // Taking the vector (not draining it) lets the collect reuse its memory.
    let mut slots: Vec<Option<FlowRecord>> =
        std::mem::take(records).into_iter().map(Some).collect();
    order
        .iter()
        .filter_map(|&(_, _, i)| slots[i as usize].take())
        .collect()
}

/// One worker's stream of items, as the merge sees it.
struct Stream<T> {
    queue: VecDeque<Item<T>>,
    /// The worker sends nothing due before this.
    watermark: u64,
    /// The last item received: the worker sends nothing before it.
    last: Option<OrderKey>,
    /// The worker is sending its final records.
    flushing: bool,
    done: bool,
}

impl<T> Default for Stream<T> {
    fn default() -> Self {
        Stream {
            queue: VecDeque::new(),
            watermark: 0,
            last: None,
            flushing: false,
            done: false,
        }
    }
}

impl<T> Stream<T> {
    /// Whether this worker can no longer send an item ordered before `x`.
    fn is_past(&self, x: &OrderKey) -> bool {
        self.done
            || !self.queue.is_empty()
            // Strictly, on the safe side: an item due at the watermark
            // itself waits for the worker's next message. (The final
            // flush's records are due at the clock, one past the last
            // watermark: see `last_watermark`.)
            || x.0 < self.watermark
            || self.last.is_some_and(|k| *x < k)
    }

    /// Whether to leave the worker's messages in its ring for now: it is
    /// flushing, far ahead of the others. Holding back earlier would risk a
    /// deadlock (the reader, blocked on this worker, may owe another worker
    /// the batch whose watermark releases these items); once a worker
    /// flushes, the reader has sent everything it will send it.
    fn holds_back(&self) -> bool {
        self.done || (self.flushing && self.queue.len() >= FLUSH_HOLD)
    }

    fn take(&mut self, msg: MergeMsg<T>) {
        match msg {
            MergeMsg::Records { items, watermark } => {
                if let Some((k, _)) = items.last() {
                    self.last = Some(*k);
                }
                self.queue.extend(items);
                match watermark {
                    Some(w) => self.watermark = w,
                    None => self.flushing = true,
                }
            }
            MergeMsg::Done => self.done = true,
        }
    }
}

/// A pipeline's output: its records (or what the workers mapped them to)
/// in output order, in batches, merged from the workers' streams as they
/// are read. Iterating waits for the next batch and ends after the last.
///
/// Dropping it stops the pipeline: the workers' sends fail, and
/// [`Pipeline::push`] then reports [`PipelineClosed`].
pub struct Records<T> {
    rings: Vec<ring::Receiver<MergeMsg<T>>>,
    streams: Vec<Stream<T>>,
    /// Where the reading thread sleeps until a worker sends.
    waker: Arc<Waker>,
}

impl<T> std::fmt::Debug for Records<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("workers", &self.rings.len())
            .finish_non_exhaustive()
    }
}

/// Why [`Records::recv_timeout`] returned no batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// Nothing could be released before the timeout.
    Timeout,
    /// Every record has been read: the workers are done.
    Disconnected,
}

impl<T> Records<T> {
    /// The next batch of items in output order, waiting for it; `None`
    /// after the last.
    pub fn recv(&mut self) -> Option<Vec<T>> {
        self.recv_deadline(None).ok()
    }

    /// Like [`recv`](Self::recv), waiting at most `timeout`.
    ///
    /// # Errors
    /// Nothing was ready in time, or every item has been read.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<T>, RecvTimeoutError> {
        self.recv_deadline(Instant::now().checked_add(timeout))
    }

    fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<Vec<T>, RecvTimeoutError> {
        loop {
            let news = self.take_messages();
            if news {
                let ready = self.release();
                if !ready.is_empty() {
                    return Ok(ready);
                }
            }
            if self.streams.iter().all(|s| s.done && s.queue.is_empty()) {
                return Err(RecvTimeoutError::Disconnected);
            }
            if !news {
                let (streams, rings) = (&self.streams, &self.rings);
                let woke = self.waker.wait_until_deadline(
                    || {
                        streams
                            .iter()
                            .zip(rings)
                            .any(|(s, r)| !s.holds_back() && r.has_news())
                    },
                    deadline,
                );
                if !woke {
                    return Err(RecvTimeoutError::Timeout);
                }
            }
        }
    }

    /// Takes the messages the workers have sent (but leaves a flushing
    /// worker's in its ring while it is far ahead); whether there were any.
    fn take_messages(&mut self) -> bool {
        let mut news = false;
        for (s, ring) in self.streams.iter_mut().zip(&mut self.rings) {
            while !s.holds_back() {
                if let Some(msg) = ring.try_recv() {
                    s.take(msg);
                } else if ring.is_closed() {
                    // Gone without saying done (it panicked, or the reader
                    // stopped early): a message may have come just before.
                    match ring.try_recv() {
                        Some(msg) => s.take(msg),
                        None => s.done = true,
                    }
                } else {
                    break;
                }
                news = true;
            }
        }
        news
    }

    /// The k-way merge: takes the smallest head while no worker can still
    /// send something before it.
    fn release(&mut self) -> Vec<T> {
        let streams = &mut self.streams;
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
        ready
    }
}

impl<T> Iterator for Records<T> {
    type Item = Vec<T>;

    fn next(&mut self) -> Option<Vec<T>> {
        self.recv()
    }
}
