//! Live counters: one [`Registry`] per run that every part of the data path
//! publishes into and anything can read while the run goes on (a progress
//! line, a metrics endpoint) and at its end (the summary).
//!
//! Nothing on the packet path takes a lock or does an atomic read-modify-
//! write per packet. Each writer keeps plain counters of its own and
//! publishes them with relaxed stores now and then: the capture loop after
//! each poll of its source (a few thousand frames at most), each flow worker
//! after each batch. Each cell has one writer, so a store never loses a
//! count; a reader sees every cell at most one publication behind. Locks
//! guard only the lists of cells, which change when a part starts (a worker,
//! an interface, an output), never while counting.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::decode::{PacketRepr, SkipReason};
use crate::error::DecodeError;
use crate::flow::record::EndReason;
use crate::flow::table::TableStats;

/// Distinct unsupported link types counted one by one; more are summed
/// under link type `u32::MAX`.
const LINK_TYPE_SLOTS: usize = 8;

/// What happened to the frames a capture loop read, by reason. Kept plain
/// by the loop and published into the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeCounts {
    /// Frames read.
    pub frames: u64,
    /// Frames the capture filter left out here (those it left out in the
    /// kernel never arrive).
    pub filtered: u64,
    /// Frames decoded into an IP packet of a flow.
    pub decoded: u64,
    /// Frames skipped (not IP, unsupported link type), indexed like
    /// [`SkipReason::ALL`].
    pub skipped: [u64; SkipReason::ALL.len()],
    /// Malformed frames, indexed like [`DecodeError::REASONS`].
    pub malformed: [u64; DecodeError::REASONS.len()],
    /// Decoded packets that came out of a tunnel.
    pub decapsulated: u64,
    /// Packets whose tunnel header (or the packet inside) was malformed,
    /// indexed like [`DecodeError::REASONS`]: each is counted on the flow
    /// of the packet that carried it.
    pub tunnel_malformed: [u64; DecodeError::REASONS.len()],
    /// Frames per unsupported link type: the first 8 types seen, in order;
    /// later ones are summed under `u32::MAX`.
    pub unsupported_link_types: Vec<(u32, u64)>,
    /// GSO/GRO super-frames (live capture) counted as their wire segments.
    pub super_frames: u64,
    /// The wire segments those super-frames stand for.
    pub segments: u64,
    /// Super-frames counted as one packet: their GSO type is not the TCP or
    /// UDP the decoder found (e.g. a tunnel), or they hold one segment.
    pub super_frames_unsplit: u64,
    /// Flow observations (kernel aggregates) taken in.
    pub flow_observations: u64,
    /// Fragmented outer datagrams put together to open their tunnel.
    pub reassembled: u64,
    /// The fragments of those datagrams.
    pub reassembled_fragments: u64,
    /// Fragments held for reassembly and then counted one by one: their
    /// datagram did not come whole (lost or overlapping fragments, too
    /// long a wait, a full table, the end of the input).
    pub reassembly_given_up: u64,
}

impl Default for DecodeCounts {
    fn default() -> Self {
        DecodeCounts {
            frames: 0,
            filtered: 0,
            decoded: 0,
            skipped: [0; SkipReason::ALL.len()],
            malformed: [0; DecodeError::REASONS.len()],
            decapsulated: 0,
            tunnel_malformed: [0; DecodeError::REASONS.len()],
            unsupported_link_types: Vec::new(),
            super_frames: 0,
            segments: 0,
            super_frames_unsplit: 0,
            flow_observations: 0,
            reassembled: 0,
            reassembled_fragments: 0,
            reassembly_given_up: 0,
        }
    }
}

impl DecodeCounts {
    /// Counts a skipped frame of link type `link_type`.
    pub fn skip(&mut self, reason: SkipReason, link_type: u32) {
        self.skipped[reason as usize] += 1;
        if reason == SkipReason::UnsupportedLinkType {
            let slot = match self
                .unsupported_link_types
                .iter()
                .position(|(t, _)| *t == link_type)
            {
                Some(i) => i,
                None if self.unsupported_link_types.len() < LINK_TYPE_SLOTS => {
                    self.unsupported_link_types.push((link_type, 0));
                    self.unsupported_link_types.len() - 1
                }
                None => {
                    if self.unsupported_link_types.last().map(|(t, _)| *t) != Some(u32::MAX) {
                        self.unsupported_link_types.push((u32::MAX, 0));
                    }
                    self.unsupported_link_types.len() - 1
                }
            };
            self.unsupported_link_types[slot].1 += 1;
        }
    }

    /// Counts a malformed frame.
    pub fn malformed(&mut self, e: DecodeError) {
        self.malformed[e.reason_index()] += 1;
    }

    /// Counts a decoded packet, its tunnel, if any, and where its decoding
    /// stopped, if its transport header was cut short (it still counts in
    /// its IP-level flow, and as malformed).
    #[inline]
    pub fn decoded(&mut self, p: &PacketRepr) {
        self.decoded += 1;
        if p.extra.is_some() {
            self.decoded_extra(p);
        }
    }

    /// The rare part of [`decoded`](Self::decoded), out of line: a packet
    /// with tunnels, IPsec identifiers or a cut transport header.
    #[cold]
    #[inline(never)]
    pub fn decoded_extra(&mut self, p: &PacketRepr) {
        if p.encap().is_some() {
            self.decapsulated += 1;
        }
        if let Some(e) = p.tunnel_error() {
            self.tunnel_malformed[e.reason_index()] += 1;
        }
        if let Some(e) = p.stopped() {
            self.malformed[e.reason_index()] += 1;
        }
    }

    /// Skipped frames by reason name, leaving out reasons never counted.
    pub fn skipped_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        SkipReason::ALL
            .iter()
            .zip(self.skipped)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.reason(), n))
    }

    /// Malformed frames by reason name, leaving out reasons never counted.
    pub fn malformed_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        by_reason(&self.malformed)
    }

    /// Malformed tunnel headers by reason name, leaving out reasons never
    /// counted.
    pub fn tunnel_malformed_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        by_reason(&self.tunnel_malformed)
    }
}

fn by_reason(counts: &[u64]) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    DecodeError::REASONS
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| (*r, *n))
}

/// A relaxed atomic counter with one writer.
#[derive(Debug, Default)]
struct Cell(AtomicU64);

impl Cell {
    fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn set_all(cells: &[Cell], values: &[u64]) {
    for (c, v) in cells.iter().zip(values) {
        c.set(*v);
    }
}

fn get_all<const N: usize>(cells: &[Cell; N]) -> [u64; N] {
    std::array::from_fn(|i| cells[i].get())
}

#[derive(Debug)]
struct DecodeCells {
    frames: Cell,
    filtered: Cell,
    decoded: Cell,
    skipped: [Cell; SkipReason::ALL.len()],
    malformed: [Cell; DecodeError::REASONS.len()],
    decapsulated: Cell,
    tunnel_malformed: [Cell; DecodeError::REASONS.len()],
    link_types: [(AtomicU32, Cell); LINK_TYPE_SLOTS + 1],
    link_type_slots: AtomicU32,
    super_frames: Cell,
    segments: Cell,
    super_frames_unsplit: Cell,
    flow_observations: Cell,
    reassembly: [Cell; 3],
}

impl Default for DecodeCells {
    fn default() -> Self {
        DecodeCells {
            frames: Cell::default(),
            filtered: Cell::default(),
            decoded: Cell::default(),
            skipped: Default::default(),
            malformed: std::array::from_fn(|_| Cell::default()),
            decapsulated: Cell::default(),
            tunnel_malformed: std::array::from_fn(|_| Cell::default()),
            link_types: Default::default(),
            link_type_slots: AtomicU32::new(0),
            super_frames: Cell::default(),
            segments: Cell::default(),
            super_frames_unsplit: Cell::default(),
            flow_observations: Cell::default(),
            reassembly: Default::default(),
        }
    }
}

/// One flow table's counters, published by its worker after each batch.
#[derive(Debug, Default)]
struct TableCells {
    packets: Cell,
    flows: Cell,
    open: Cell,
    records: [Cell; EndReason::ALL.len()],
    fragments_without_first: Cell,
    fragments_untracked: Cell,
    evicted: Cell,
    peak_flows: Cell,
    peak_memory_bytes: Cell,
    duplicates: Cell,
    sampled_out: Cell,
    filtered_out: Cell,
}

/// Where a worker publishes its table's counters; see [`Registry::table`].
#[derive(Debug, Clone)]
pub struct TableSlot(Arc<TableCells>);

impl TableSlot {
    /// Publishes `stats` and the number of flows open now.
    pub fn publish(&self, stats: &TableStats, open: usize) {
        let c = &self.0;
        c.packets.set(stats.packets);
        c.flows.set(stats.flows);
        c.open.set(open as u64);
        set_all(&c.records, &stats.records);
        c.fragments_without_first.set(stats.fragments_without_first);
        c.fragments_untracked.set(stats.fragments_untracked);
        c.evicted.set(stats.evicted);
        c.peak_flows.set(stats.peak_flows);
        c.peak_memory_bytes.set(stats.peak_memory_bytes);
        c.duplicates.set(stats.duplicates);
    }

    /// Publishes how many records this worker left out: `sampled` by flow
    /// sampling, `filtered` by record filters.
    pub fn publish_left_out(&self, sampled: u64, filtered: u64) {
        self.0.sampled_out.set(sampled);
        self.0.filtered_out.set(filtered);
    }
}

/// What kind of input a source is, which says which of its counters mean
/// something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A capture file or standard input.
    File,
    /// A network interface captured live.
    Interface,
}

/// Counters of one input: a capture file or one live interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Frames read from the file or the interface's rings; with the eBPF
    /// backend, the packets its programs sent to userspace whole.
    pub packets: u64,
    /// Bytes read from the file, or on the wire of the frames captured.
    pub bytes: u64,
    /// Packets the kernel passed to the capture (live).
    pub kernel_packets: u64,
    /// Packets the kernel dropped because the ring was full (live).
    pub kernel_drops: u64,
    /// Times the kernel froze the ring (live).
    pub kernel_freezes: u64,
    /// Packets the kernel passed (and did not drop) that were not read
    /// (live): in the ring at the moment of publishing, or, once the
    /// capture has ended or the interface has gone away, never read.
    pub kernel_unread: u64,
    /// pcapng packet blocks for an interface never described (file).
    pub unknown_interface: u64,
    /// pcapng packet blocks too short for their header (file).
    pub bad_packet_block: u64,
    /// pcapng simple packet blocks, which carry no timestamp (file).
    pub simple_packet_blocks: u64,
    /// The interface went away and is no longer captured (live).
    pub gone: bool,
}

#[derive(Debug)]
struct SourceCells {
    name: String,
    kind: SourceKind,
    values: [Cell; 10],
}

/// How the eBPF backend's programs name why a packet went to userspace,
/// in their counters' order (`capture_ebpf::abi::UpReason`).
pub const UP_REASONS: [&str; 9] = [
    "not_ip",
    "fragment",
    "tunnel_port",
    "other_header",
    "malformed",
    "flow_map_full",
    "ended_flow",
    "super_packet",
    "tcp_flow_handed_over",
];

/// Counters of kernel programs that count flows themselves (the eBPF
/// backend), summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgramCounts {
    /// Packets the programs ran on.
    pub packets: u64,
    /// Packets counted in the kernel's flow map.
    pub counted: u64,
    /// Packets for userspace lost because the ring buffer was full.
    pub lost: u64,
    /// Packets sent to userspace whole, by [`UP_REASONS`].
    pub up: [u64; 9],
    /// Of the packets counted, those decapsulated in the kernel.
    pub decapsulated: u64,
    /// Packets seen on an interface other than their flow's, left out
    /// (`InterfaceFlows::First`).
    pub duplicates: u64,
    /// Flow map entries now.
    pub entries: u64,
    /// Flow map entries deleted after they ended.
    pub collected: u64,
    /// Flow map entries read one by one, when something could be due.
    pub reads: u64,
    /// Reads of the whole flow map (at the end, after lost notices, and
    /// every `--ebpf-scan-interval` when set).
    pub full_reads: u64,
    /// Notices of new and closed entries lost because the ring buffer was
    /// full (each one costs a read of the whole map).
    pub notices_lost: u64,
    /// GSO/GRO super-packets counted in the kernel as their segments.
    pub super_frames: u64,
    /// The segments they counted as.
    pub segments: u64,
}

impl ProgramCounts {
    /// Packets sent to userspace, all reasons.
    pub fn up_total(&self) -> u64 {
        self.up.iter().sum()
    }
}

/// Where kernel programs' counters are published; see
/// [`Registry::programs`].
#[derive(Debug, Clone)]
pub struct ProgramSlot(Arc<[Cell; PROGRAM_CELLS]>);

/// The cells of a [`ProgramSlot`]: the fields of [`ProgramCounts`].
const PROGRAM_CELLS: usize = 21;

impl ProgramSlot {
    /// Publishes the programs' counters so far.
    pub fn publish(&self, c: &ProgramCounts) {
        let mut values = [0; PROGRAM_CELLS];
        values[..3].copy_from_slice(&[c.packets, c.counted, c.lost]);
        values[3..12].copy_from_slice(&c.up);
        values[12..].copy_from_slice(&[
            c.entries,
            c.collected,
            c.decapsulated,
            c.duplicates,
            c.reads,
            c.full_reads,
            c.notices_lost,
            c.super_frames,
            c.segments,
        ]);
        set_all(&self.0[..], &values);
    }

    fn read(&self) -> ProgramCounts {
        let v = get_all(&self.0);
        let mut up = [0; 9];
        up.copy_from_slice(&v[3..12]);
        ProgramCounts {
            packets: v[0],
            counted: v[1],
            lost: v[2],
            up,
            entries: v[12],
            collected: v[13],
            decapsulated: v[14],
            duplicates: v[15],
            reads: v[16],
            full_reads: v[17],
            notices_lost: v[18],
            super_frames: v[19],
            segments: v[20],
        }
    }
}

/// Where a source publishes the counters of one input; see
/// [`Registry::source`].
#[derive(Debug, Clone)]
pub struct SourceSlot(Arc<SourceCells>);

impl SourceSlot {
    /// Publishes the input's counters so far.
    pub fn publish(&self, c: &SourceCounts) {
        set_all(
            &self.0.values,
            &[
                c.packets,
                c.bytes,
                c.kernel_packets,
                c.kernel_drops,
                c.kernel_freezes,
                c.kernel_unread,
                c.unknown_interface,
                c.bad_packet_block,
                c.simple_packet_blocks,
                u64::from(c.gone),
            ],
        );
    }

    fn read(&self) -> SourceCounts {
        let [
            packets,
            bytes,
            kernel_packets,
            kernel_drops,
            kernel_freezes,
            kernel_unread,
            unknown_interface,
            bad_packet_block,
            simple_packet_blocks,
            gone,
        ] = get_all(&self.0.values);
        SourceCounts {
            packets,
            bytes,
            kernel_packets,
            kernel_drops,
            kernel_freezes,
            kernel_unread,
            unknown_interface,
            bad_packet_block,
            simple_packet_blocks,
            gone: gone != 0,
        }
    }
}

/// Upper bounds of the export request duration histogram's buckets, in
/// microseconds; a last bucket takes the rest.
pub const REQUEST_DURATION_BOUNDS_US: [u64; 12] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    10_000_000,
];

/// How long export requests took, from sending to the receiver's answer
/// (or the failure), each attempt counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DurationHistogram {
    /// Requests by bucket: `counts[i]` took at most
    /// [`REQUEST_DURATION_BOUNDS_US`]`[i]` and more than the bound before
    /// it; the last, longer than every bound.
    pub counts: [u64; REQUEST_DURATION_BOUNDS_US.len() + 1],
    /// The sum of the durations, in microseconds.
    pub sum_us: u64,
}

impl DurationHistogram {
    /// The bucket a duration of `us` microseconds falls in.
    pub fn bucket(us: u64) -> usize {
        REQUEST_DURATION_BOUNDS_US.partition_point(|&bound| bound < us)
    }
}

/// An exporter's accounting: where every item handed to it ended up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExportCounts {
    /// Items (spans, data points) handed to the exporter.
    pub submitted: u64,
    /// Items the receiver accepted.
    pub delivered: u64,
    /// Items the receiver reported as rejected in a partial success.
    pub rejected: u64,
    /// Items in requests that failed permanently.
    pub failed: u64,
    /// Items dropped because the queue was full.
    pub dropped: u64,
    /// Items still queued or being retried at the shutdown deadline.
    pub undelivered: u64,
    /// Requests sent, retries included.
    pub requests: u64,
    /// Requests sent again after a retryable failure.
    pub retries: u64,
    /// Items waiting in the queue or in retry now.
    pub queued: u64,
    /// The last request that ended failed (the receiver was unreachable or
    /// refused it whole); a request it accepted, even in part, ends this.
    pub failing: bool,
    /// How long requests took.
    pub durations: DurationHistogram,
}

impl ExportCounts {
    /// Items that did not reach the receiver (or that it rejected).
    pub fn lost(&self) -> u64 {
        self.rejected + self.failed + self.dropped + self.undelivered
    }
}

/// An exporter's live accounting, which it keeps itself (atomics read on
/// demand).
pub trait ExportGauge: Send + Sync + fmt::Debug {
    /// The counts now.
    fn counts(&self) -> ExportCounts;
}

#[derive(Debug)]
struct OutputCells {
    signal: &'static str,
    target: String,
    written: Cell,
    overflowed: Cell,
    export: Option<Arc<dyn ExportGauge>>,
}

/// The signal of an output of spans.
pub const SPANS: &str = "spans";
/// The signal of an output of flow metrics, which counts data points.
pub const METRIC_POINTS: &str = "metric points";

/// Where an output publishes what it wrote; see [`Registry::output`].
#[derive(Debug, Clone)]
pub struct OutputSlot(Arc<OutputCells>);

impl OutputSlot {
    /// Publishes the number of items (spans, data points) written so far.
    pub fn publish_written(&self, n: u64) {
        self.0.written.set(n);
    }

    /// Flow metrics: publishes the number of records counted in the
    /// overflow series so far.
    pub fn publish_overflowed(&self, n: u64) {
        self.0.overflowed.set(n);
    }
}

/// One output's counts, as read from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputCounts {
    /// The signal: [`SPANS`] or [`METRIC_POINTS`].
    pub signal: &'static str,
    /// Where it goes: a file, standard output, or an OTLP endpoint.
    pub target: String,
    /// Items written (JSON) or handed to the exporter.
    pub written: u64,
    /// Flow metrics: records counted in the overflow series.
    pub overflowed: u64,
    /// The exporter's accounting, for an OTLP export.
    pub export: Option<ExportCounts>,
}

/// Every counter of a run, read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The capture loop's frame counters.
    pub decode: DecodeCounts,
    /// The flow tables' counters, summed over the workers.
    pub table: TableStats,
    /// Flows open now, summed over the workers.
    pub open_flows: u64,
    /// Records left out by flow sampling, summed over the workers.
    pub sampled_out: u64,
    /// Records left out by record filters, summed over the workers.
    pub filtered_out: u64,
    /// Each input's counters, in the order they were registered, but for
    /// those retired.
    pub sources: Vec<(String, SourceKind, SourceCounts)>,
    /// Inputs retired (interfaces that went away and are no longer
    /// listed), and the sum of their counters.
    pub retired: (u64, SourceCounts),
    /// Each output's counts, in the order they were registered.
    pub outputs: Vec<OutputCounts>,
    /// The kernel programs' counters (eBPF backend), if any registered.
    pub programs: Option<ProgramCounts>,
}

#[derive(Debug, Default)]
struct Inner {
    decode: DecodeCells,
    tables: RwLock<Vec<TableSlot>>,
    sources: RwLock<Vec<SourceSlot>>,
    outputs: RwLock<Vec<OutputSlot>>,
    programs: RwLock<Option<ProgramSlot>>,
    retired: std::sync::Mutex<(u64, SourceCounts)>,
}

/// The run's live counters; cheap to clone (all clones share the cells).
#[derive(Debug, Clone, Default)]
pub struct Registry(Arc<Inner>);

fn push<T: Clone>(list: &RwLock<Vec<T>>, item: T) -> T {
    list.write()
        .unwrap_or_else(PoisonError::into_inner)
        .push(item.clone());
    item
}

fn read<T: Clone>(list: &RwLock<Vec<T>>) -> Vec<T> {
    list.read().unwrap_or_else(PoisonError::into_inner).clone()
}

impl Registry {
    /// A registry with every counter at zero.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Publishes the capture loop's frame counters.
    pub fn publish_decode(&self, d: &DecodeCounts) {
        let c = &self.0.decode;
        c.frames.set(d.frames);
        c.filtered.set(d.filtered);
        c.decoded.set(d.decoded);
        set_all(&c.skipped, &d.skipped);
        set_all(&c.malformed, &d.malformed);
        c.decapsulated.set(d.decapsulated);
        set_all(&c.tunnel_malformed, &d.tunnel_malformed);
        for (slot, (t, n)) in c.link_types.iter().zip(&d.unsupported_link_types) {
            slot.0.store(*t, Ordering::Relaxed);
            slot.1.set(*n);
        }
        c.link_type_slots
            .store(d.unsupported_link_types.len() as u32, Ordering::Release);
        c.super_frames.set(d.super_frames);
        c.segments.set(d.segments);
        c.super_frames_unsplit.set(d.super_frames_unsplit);
        set_all(
            &c.reassembly,
            &[
                d.reassembled,
                d.reassembled_fragments,
                d.reassembly_given_up,
            ],
        );
        c.flow_observations.set(d.flow_observations);
    }

    /// A new slot for one flow table's counters (one per worker).
    pub fn table(&self) -> TableSlot {
        push(&self.0.tables, TableSlot(Arc::default()))
    }

    /// Registers the counters of kernel programs that count flows (one
    /// per run: a second call replaces the first).
    pub fn programs(&self) -> ProgramSlot {
        let slot = ProgramSlot(Arc::new(Default::default()));
        *self
            .0
            .programs
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(slot.clone());
        slot
    }

    /// A new slot for the counters of input `name`.
    pub fn source(&self, name: &str, kind: SourceKind) -> SourceSlot {
        push(
            &self.0.sources,
            SourceSlot(Arc::new(SourceCells {
                name: name.to_owned(),
                kind,
                values: Default::default(),
            })),
        )
    }

    /// Takes `slot` off the list of inputs (an interface that went away,
    /// of which there may be many over a run), adding its counters to the
    /// retired inputs' sum.
    pub fn retire_source(&self, slot: &SourceSlot) {
        let mut list = self
            .0
            .sources
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(at) = list.iter().position(|s| Arc::ptr_eq(&s.0, &slot.0)) else {
            return;
        };
        let gone = list.remove(at).read();
        drop(list);
        let mut retired = self
            .0
            .retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (n, sum) = &mut *retired;
        *n += 1;
        sum.packets += gone.packets;
        sum.bytes += gone.bytes;
        sum.kernel_packets += gone.kernel_packets;
        sum.kernel_drops += gone.kernel_drops;
        sum.kernel_freezes += gone.kernel_freezes;
        sum.kernel_unread += gone.kernel_unread;
    }

    /// A new slot for an output of `signal` to `target`; `export` is the
    /// exporter's own accounting when the output is an OTLP export.
    pub fn output(
        &self,
        signal: &'static str,
        target: &str,
        export: Option<Arc<dyn ExportGauge>>,
    ) -> OutputSlot {
        push(
            &self.0.outputs,
            OutputSlot(Arc::new(OutputCells {
                signal,
                target: target.to_owned(),
                written: Cell::default(),
                overflowed: Cell::default(),
                export,
            })),
        )
    }

    /// Every counter now.
    pub fn snapshot(&self) -> Snapshot {
        let c = &self.0.decode;
        let slots = (c.link_type_slots.load(Ordering::Acquire) as usize).min(c.link_types.len());
        let [reassembled, reassembled_fragments, reassembly_given_up] = get_all(&c.reassembly);
        let decode = DecodeCounts {
            frames: c.frames.get(),
            filtered: c.filtered.get(),
            decoded: c.decoded.get(),
            skipped: get_all(&c.skipped),
            malformed: get_all(&c.malformed),
            decapsulated: c.decapsulated.get(),
            tunnel_malformed: get_all(&c.tunnel_malformed),
            unsupported_link_types: c.link_types[..slots]
                .iter()
                .map(|(t, n)| (t.load(Ordering::Relaxed), n.get()))
                .collect(),
            super_frames: c.super_frames.get(),
            segments: c.segments.get(),
            super_frames_unsplit: c.super_frames_unsplit.get(),
            flow_observations: c.flow_observations.get(),
            reassembled,
            reassembled_fragments,
            reassembly_given_up,
        };
        let mut table = TableStats::default();
        let (mut open_flows, mut sampled_out, mut filtered_out) = (0, 0, 0);
        for t in read(&self.0.tables) {
            let t = &t.0;
            table.merge(&TableStats {
                packets: t.packets.get(),
                flows: t.flows.get(),
                records: get_all(&t.records),
                fragments_without_first: t.fragments_without_first.get(),
                fragments_untracked: t.fragments_untracked.get(),
                evicted: t.evicted.get(),
                peak_flows: t.peak_flows.get(),
                peak_memory_bytes: t.peak_memory_bytes.get(),
                duplicates: t.duplicates.get(),
            });
            open_flows += t.open.get();
            sampled_out += t.sampled_out.get();
            filtered_out += t.filtered_out.get();
        }
        let sources = read(&self.0.sources)
            .into_iter()
            .map(|s| (s.0.name.clone(), s.0.kind, s.read()))
            .collect();
        let outputs = read(&self.0.outputs)
            .into_iter()
            .map(|o| OutputCounts {
                signal: o.0.signal,
                target: o.0.target.clone(),
                written: o.0.written.get(),
                overflowed: o.0.overflowed.get(),
                export: o.0.export.as_ref().map(|e| e.counts()),
            })
            .collect();
        let programs = self
            .0
            .programs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(ProgramSlot::read);
        let retired = *self
            .0
            .retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Snapshot {
            decode,
            table,
            open_flows,
            sampled_out,
            filtered_out,
            sources,
            retired,
            outputs,
            programs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_published_while_running_are_read_back() {
        let registry = Registry::new();
        let table = registry.table();
        let other = registry.table();
        let mut d = DecodeCounts {
            frames: 10,
            ..DecodeCounts::default()
        };
        d.skip(SkipReason::Arp, 1);
        for t in 0..12 {
            d.skip(SkipReason::UnsupportedLinkType, 200 + t);
        }
        registry.publish_decode(&d);
        let stats = TableStats {
            packets: 9,
            flows: 3,
            records: [1, 0, 0, 2, 0],
            ..TableStats::default()
        };
        table.publish(&stats, 2);
        other.publish(&stats, 1);
        let s = registry.snapshot();
        assert_eq!(s.decode, d);
        assert_eq!(s.decode.unsupported_link_types.len(), 9);
        assert_eq!(s.decode.unsupported_link_types[8], (u32::MAX, 4));
        assert_eq!(s.table.packets, 18);
        assert_eq!(s.table.records_total(), 6);
        assert_eq!(s.open_flows, 3);
        assert_eq!(
            s.decode.skipped_by_reason().collect::<Vec<_>>(),
            [("unsupported_link_type", 12), ("non_ip_arp", 1)]
        );
    }
}
