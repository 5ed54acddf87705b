//! The biflow table: one per worker, owned outright, no locks.
//!
//! Time is capture time. Every call passes a `clock_ns`: the highest packet
//! timestamp seen so far in the whole capture (so it never goes backwards,
//! even when packet timestamps do). Deadlines are computed from that clock,
//! which keeps each timer list sorted and makes every record's content
//! independent of *when* a sweep happens: a packet that arrives after its
//! flow's deadline first ends the old flow exactly as a sweep would have.
//!
//! Timers are intrusive doubly-linked lists over the slot array, one per idle
//! class (TCP, UDP, ICMP, other, TCP closing) in last-seen order, and one for
//! the active timeout in record-start order. Expiring is popping heads.

use std::net::IpAddr;
use std::sync::Arc;

use std::hash::BuildHasher;

use hashbrown::HashMap;

use super::index::SlotIndex;
use sha1::{Digest, Sha1};

use crate::community_id::{IcmpRole, icmp_role};
use crate::decode::{Fragment, IpIpHeader, Ipsec, PacketExtra, PacketRepr, TunnelHeader};
use crate::flow::config::FlowConfig;
use crate::flow::host::HostSockets;
use crate::flow::key::FlowKey;
use crate::flow::record::{
    DirectionRecord, EncapRecord, EndReason, FirstPacket, FlowRecord, FlowRole, OverheadBytes,
    TcpLatency, TcpState, sort_in_output_order,
};
use crate::flow::tcp::{ACK, FIN, RST, SYN, TcpTiming};

const NIL: u32 = u32::MAX;

const CLASS_TCP: usize = 0;
const CLASS_UDP: usize = 1;
const CLASS_ICMP: usize = 2;
const CLASS_OTHER: usize = 3;
const CLASS_CLOSING: usize = 4;
const CLASSES: usize = 5;

/// How the initiator of a flow was determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evidence {
    /// TCP SYN or SYN/ACK, ICMP request or reply, SCTP INIT or INIT ACK.
    Protocol,
    /// The port heuristic (see [`service_port_side`]).
    Ports,
    /// A local socket listens on the responder's port (live capture).
    Listening,
    /// Neither: the sender of the first packet.
    None,
}

#[derive(Debug, Clone, Copy, Default)]
struct Link {
    prev: u32,
    next: u32,
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };

    fn push_back(&mut self, links: &mut [Link], i: u32) {
        links[i as usize] = Link {
            prev: self.tail,
            next: NIL,
        };
        if self.tail == NIL {
            self.head = i;
        } else {
            links[self.tail as usize].next = i;
        }
        self.tail = i;
    }

    /// Moves `i`, already in the list, to its back; nothing to do (and no
    /// neighbour to touch) when it is there already, as for consecutive
    /// packets of one flow.
    fn move_to_back(&mut self, links: &mut [Link], i: u32) {
        if self.tail != i {
            self.unlink(links, i);
            self.push_back(links, i);
        }
    }

    fn unlink(&mut self, links: &mut [Link], i: u32) {
        let Link { prev, next } = links[i as usize];
        if prev == NIL {
            self.head = next;
        } else {
            links[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            links[next as usize].prev = prev;
        }
        links[i as usize] = Link {
            prev: NIL,
            next: NIL,
        };
    }
}

/// One direction's counters, and its first packet in the record (which is
/// there if and only if `packets_delta > 0`).
#[derive(Debug, Clone, Copy, Default)]
struct Direction {
    packets_delta: u64,
    bytes_delta: u64,
    packets_total: u64,
    bytes_total: u64,
    first: FirstPacket,
}

impl Direction {
    fn record(&self, tcp_flags: u16) -> DirectionRecord {
        DirectionRecord {
            packets_delta: self.packets_delta,
            bytes_delta: self.bytes_delta,
            packets_total: self.packets_total,
            bytes_total: self.bytes_total,
            tcp_flags,
            first: (self.packets_delta > 0).then_some(self.first),
        }
    }

    fn reset_record(&mut self) {
        self.packets_delta = 0;
        self.bytes_delta = 0;
    }
}

/// One open flow: 248 bytes (checked by a test). Identifiers derived from
/// the key (Community ID, trace id) are computed when a record is made, not
/// stored.
#[derive(Debug, Clone)]
struct Flow {
    key: FlowKey,
    flow_start_ns: u64,
    record_start_ns: u64,
    record_end_ns: u64,
    record_start_clock: u64,
    last_clock: u64,
    fwd: Direction,
    rev: Direction,
    /// TCP flags seen over the flow's life: forward, reverse.
    tcp_flags: [u16; 2],
    /// TCP latency state, and the clock at which a TCP flow began closing.
    tcp: TcpTiming,
    record_seq: u32,
    /// Idle class (`CLASS_*`).
    class: u8,
    role: FlowRole,
    /// Whether endpoint `a` of the key is the initiator.
    initiator_is_a: bool,
    in_active: bool,
    /// Interface of the flow's first packet (0: unknown).
    ifindex: u32,
    /// The initiator's Ethernet address, from the flow's first packet
    /// (live capture; zero when unknown).
    mac: [u8; 6],
    /// Whether the table holds a [`FlowExtra`] for this flow.
    extra: bool,
}

/// What a flow with tunnels, IPsec or WireGuard keeps beyond [`Flow`], in
/// a map beside the slots, so that other flows do not pay for it. Arrays
/// are indexed by key side: 0 for endpoint `a`, 1 for `b`.
#[derive(Debug, Clone, Default)]
struct FlowExtra {
    /// Outer headers from each side's first tunnelled packet.
    tunnel: [Option<TunnelHeader>; 2],
    ipip: [Option<IpIpHeader>; 2],
    /// Overhead bytes counted under `tunnel.*` and `ipip.*`, by side.
    tunnel_bytes: [Overhead; 2],
    ipip_bytes: [Overhead; 2],
    /// The first non-zero identifiers of each side's packets.
    ipsec: [Ipsec; 2],
    tunnel_ah_spi: [u32; 2],
}

impl FlowExtra {
    fn note(&mut self, p: &PacketExtra, side: usize) {
        let e = &p.encap;
        if e.is_tunnelled() {
            self.tunnel_bytes[side].add(e.tunnel_bytes);
            self.ipip_bytes[side].add(e.ipip_bytes);
            if self.tunnel[side].is_none() {
                self.tunnel[side] = e.tunnel;
            }
            if self.ipip[side].is_none() {
                self.ipip[side] = e.ipip;
            }
            first_nonzero(&mut self.tunnel_ah_spi[side], e.outer_ah_spi);
        }
        let mine = &mut self.ipsec[side];
        first_nonzero(&mut mine.ah_spi, p.ipsec.ah_spi);
        first_nonzero(&mut mine.esp_spi, p.ipsec.esp_spi);
        first_nonzero(&mut mine.wg_sender, p.ipsec.wg_sender);
        first_nonzero(&mut mine.wg_receiver, p.ipsec.wg_receiver);
    }

    fn reset_record(&mut self) {
        for b in self.tunnel_bytes.iter_mut().chain(&mut self.ipip_bytes) {
            b.delta = 0;
        }
    }

    /// The record's view, `init` being the initiator's side.
    fn record(&self, init: usize) -> EncapRecord {
        let resp = 1 - init;
        let nonzero = |v: u32| (v != 0).then_some(v);
        let overhead = |b: &[Overhead; 2]| OverheadBytes {
            delta: b[init].delta,
            total: b[init].total,
            reverse_delta: b[resp].delta,
            reverse_total: b[resp].total,
        };
        let (i, r) = (&self.ipsec[init], &self.ipsec[resp]);
        EncapRecord {
            tunnel: self.tunnel[init].or(self.tunnel[resp].map(|t| t.reversed())),
            tunnel_bytes: overhead(&self.tunnel_bytes),
            ipip: self.ipip[init].or(self.ipip[resp].map(|t| t.reversed())),
            ipip_bytes: overhead(&self.ipip_bytes),
            tunnel_ah_spi: nonzero(self.tunnel_ah_spi[init]),
            ah_spi: nonzero(i.ah_spi),
            esp_spi: nonzero(i.esp_spi),
            // Each side names its own index as sender and the other's as
            // receiver.
            wg_sender_index: nonzero(i.wg_sender).or(nonzero(r.wg_receiver)),
            wg_receiver_index: nonzero(r.wg_sender).or(nonzero(i.wg_receiver)),
        }
    }
}

/// Overhead bytes of one side: this record's and since the flow started.
#[derive(Debug, Clone, Copy, Default)]
struct Overhead {
    delta: u64,
    total: u64,
}

impl Overhead {
    fn add(&mut self, bytes: u32) {
        self.delta += u64::from(bytes);
        self.total += u64::from(bytes);
    }
}

fn first_nonzero(slot: &mut u32, v: u32) {
    if *slot == 0 {
        *slot = v;
    }
}

impl Flow {
    fn class(&self) -> usize {
        usize::from(self.class)
    }

    fn record_has_packets(&self) -> bool {
        self.fwd.packets_delta + self.rev.packets_delta > 0
    }

    fn tcp_state(&self) -> Option<TcpState> {
        if self.key.protocol != 6 {
            return None;
        }
        let [f, r] = self.tcp_flags;
        let fin_f = f & FIN != 0;
        let fin_r = r & FIN != 0;
        Some(if (f | r) & RST != 0 {
            TcpState::Closed
        } else if fin_f && fin_r {
            TcpState::TimeWait
        } else if fin_f {
            TcpState::FinWait1
        } else if fin_r {
            TcpState::CloseWait
        } else if r & SYN != 0 && !self.tcp.established() {
            TcpState::SynReceived
        } else if f & SYN != 0 && r == 0 {
            TcpState::SynSent
        } else {
            TcpState::Established
        })
    }
}

/// Counters of one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Packets observed.
    pub packets: u64,
    /// Flows created.
    pub flows: u64,
    /// Records emitted, indexed like [`EndReason::ALL`].
    pub records: [u64; 5],
    /// Non-first fragments whose first fragment was not seen (or had expired):
    /// counted in a flow without ports for their addresses and protocol.
    pub fragments_without_first: u64,
    /// The most flows open at once in this table. [`merge`](Self::merge)
    /// adds peaks, so for several tables it is the sum of each table's peak
    /// (an upper bound of the peak of their union).
    pub peak_flows: u64,
    /// Bytes the table had allocated when it held `peak_flows` flows (see
    /// [`FlowTable::memory_bytes`]); summed by [`merge`](Self::merge).
    pub peak_memory_bytes: u64,
}

impl TableStats {
    /// Adds another table's counters.
    pub fn merge(&mut self, other: &TableStats) {
        self.packets += other.packets;
        self.flows += other.flows;
        for (a, b) in self.records.iter_mut().zip(other.records) {
            *a += b;
        }
        self.fragments_without_first += other.fragments_without_first;
        self.peak_flows += other.peak_flows;
        self.peak_memory_bytes += other.peak_memory_bytes;
    }

    /// Total records emitted.
    pub fn records_total(&self) -> u64 {
        self.records.iter().sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragmentKey {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    id: u32,
    tunnel: u64,
}

#[derive(Debug, Clone, Copy)]
struct FragmentEntry {
    src_port: u16,
    dst_port: u16,
    icmp_type: u8,
    icmp_code: u8,
    clock: u64,
}

/// The distance between the look-ahead stages of
/// [`FlowTable::observe_batch`], in packets.
const AHEAD: usize = 8;

/// Asks the CPU to start loading the cache line holding `addr`: a hint,
/// which does nothing where there is no stable prefetch instruction.
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch_addr(addr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and changes no memory, whatever the
    // address, and nothing is dereferenced; SSE is part of every x86-64 CPU.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// [`prefetch_addr`] for the first cache line of `*p`.
#[inline(always)]
fn prefetch<T>(p: &T) {
    prefetch_addr((p as *const T).cast());
}

/// [`prefetch_addr`] for every cache line of `*p`.
#[inline(always)]
fn prefetch_object<T>(p: &T) {
    let start: *const u8 = (p as *const T).cast();
    let mut offset = 0;
    while offset < std::mem::size_of::<T>() {
        prefetch_addr(start.wrapping_add(offset));
        offset += 64;
    }
    // The last line, when the object does not start on a line boundary.
    prefetch_addr(start.wrapping_add(std::mem::size_of::<T>().saturating_sub(1)));
}

/// Flow slots in fixed chunks: growing never moves flows or doubles the
/// memory, so the slack is at most one chunk.
#[derive(Debug, Default)]
struct Slab {
    chunks: Vec<Box<[Option<Flow>]>>,
    /// Slots handed out so far (occupied or free).
    len: u32,
}

const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNK_MASK: u32 = (1 << CHUNK_BITS) - 1;

impl Slab {
    fn slot(&self, i: u32) -> &Option<Flow> {
        &self.chunks[(i >> CHUNK_BITS) as usize][(i & CHUNK_MASK) as usize]
    }

    fn slot_mut(&mut self, i: u32) -> &mut Option<Flow> {
        &mut self.chunks[(i >> CHUNK_BITS) as usize][(i & CHUNK_MASK) as usize]
    }

    fn get(&self, i: u32) -> Option<&Flow> {
        self.slot(i).as_ref()
    }

    fn get_mut(&mut self, i: u32) -> Option<&mut Flow> {
        self.slot_mut(i).as_mut()
    }

    fn key_is(&self, i: u32, key: &FlowKey) -> bool {
        self.get(i).is_some_and(|f| f.key == *key)
    }

    fn put(&mut self, i: u32, flow: Flow) {
        *self.slot_mut(i) = Some(flow);
    }

    fn take(&mut self, i: u32) -> Option<Flow> {
        self.slot_mut(i).take()
    }

    /// A new slot holding `flow`.
    fn push(&mut self, flow: Flow) -> u32 {
        let i = self.len;
        if (i as usize) == self.chunks.len() * CHUNK {
            self.chunks
                .push(std::iter::repeat_with(|| None).take(CHUNK).collect());
        }
        self.len = i.checked_add(1).expect("fewer than 2^32 flows per table");
        self.put(i, flow);
        i
    }

    fn allocated_bytes(&self) -> usize {
        self.chunks.len() * CHUNK * std::mem::size_of::<Option<Flow>>()
    }
}

/// A biflow table.
#[derive(Debug)]
pub struct FlowTable {
    config: FlowConfig,
    idle_ns: [u64; CLASSES],
    /// Slot numbers of open flows, by key (the key lives in the slot).
    index: SlotIndex,
    hasher: foldhash::fast::FixedState,
    slots: Slab,
    free: Vec<u32>,
    idle_links: Vec<Link>,
    active_links: Vec<Link>,
    idle_lists: [List; CLASSES],
    active_list: List,
    fragments: HashMap<FragmentKey, FragmentEntry, foldhash::fast::FixedState>,
    /// Tunnel and IPsec state of the flows that have some, by slot.
    extras: HashMap<u32, FlowExtra, foldhash::fast::FixedState>,
    last_fragment_purge: u64,
    stats: TableStats,
    id_scratch: Vec<u8>,
    /// The observing host's addresses and listening sockets (live
    /// capture), for span kinds.
    host: Option<Arc<HostSockets>>,
}

impl FlowTable {
    /// An empty table.
    pub fn new(config: FlowConfig) -> FlowTable {
        let t = config.timeouts;
        FlowTable {
            idle_ns: [
                t.tcp_idle_ns,
                t.udp_idle_ns,
                t.icmp_idle_ns,
                t.other_idle_ns,
                t.tcp_end_linger_ns,
            ],
            config,
            index: SlotIndex::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed),
            slots: Slab::default(),
            free: Vec::new(),
            idle_links: Vec::new(),
            active_links: Vec::new(),
            idle_lists: [List::EMPTY; CLASSES],
            active_list: List::EMPTY,
            fragments: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0xf4a9)),
            extras: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0xe8a)),
            last_fragment_purge: 0,
            stats: TableStats::default(),
            id_scratch: Vec::with_capacity(64),
            host: None,
        }
    }

    /// Judges new flows' span kinds by `host`'s addresses and listening
    /// sockets from now on (flows already open keep theirs). Without it,
    /// `--local-net` is the only knowledge of the host.
    pub fn set_host(&mut self, host: Option<Arc<HostSockets>>) {
        self.host = host;
    }

    /// Number of open flows.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no flow is open.
    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// Bytes allocated for flow state: slots, index, timer links, the free
    /// list and the fragment map. Per open flow this is 248 for the flow,
    /// 8 for its index entry (at 3/4 load or less, so up to 21 with the
    /// empty entries), 16 for its two timer links, and the slack of growth:
    /// 282 bytes at 1 M flows, at most 300 just after the index and the
    /// links double (a test checks both).
    pub fn memory_bytes(&self) -> usize {
        self.slots.allocated_bytes()
            + self.index.allocation_size()
            + (self.idle_links.capacity() + self.active_links.capacity())
                * std::mem::size_of::<Link>()
            + self.free.capacity() * std::mem::size_of::<u32>()
            + self.fragments.allocation_size()
            + self.extras.allocation_size()
    }

    /// The table's counters.
    pub fn stats(&self) -> &TableStats {
        &self.stats
    }

    /// Accounts one packet with timestamp `ts_ns`; `clock_ns` is the capture
    /// clock (the highest timestamp seen so far, `>= ts_ns` normally). Records
    /// that become due are appended to `out`.
    pub fn observe(
        &mut self,
        packet: &PacketRepr,
        ts_ns: u64,
        clock_ns: u64,
        out: &mut Vec<FlowRecord>,
    ) {
        self.observe_hashed(packet, None, ts_ns, clock_ns, out);
    }

    /// [`observe`](Self::observe), given the hash of the packet's key if
    /// it is already known (only for a whole packet: a fragment's key may
    /// change once it is matched with its first fragment).
    fn observe_hashed(
        &mut self,
        packet: &PacketRepr,
        hash: Option<u64>,
        ts_ns: u64,
        clock_ns: u64,
        out: &mut Vec<FlowRecord>,
    ) {
        self.stats.packets += 1;
        // Fragments (rare) are copied to take their datagram's ports.
        let mut resolved = None;
        if packet.fragment != Fragment::Whole {
            let mut q = packet.clone();
            self.resolve_fragment(&mut q, clock_ns);
            resolved = Some(q);
        }
        let p = resolved.as_ref().unwrap_or(packet);
        let (key, from_a) = FlowKey::from_packet(p);
        let hash = match hash {
            Some(h) if matches!(p.fragment, Fragment::Whole) => {
                debug_assert_eq!(h, self.hasher.hash_one(key));
                h
            }
            _ => self.hasher.hash_one(key),
        };
        let slots = &self.slots;
        let mut slot = self.index.find(hash, |i| slots.key_is(i, &key));
        if let Some(i) = slot {
            slot = self.check_due_on_arrival(i, p, clock_ns, out);
        }
        let i = match slot {
            Some(i) => i,
            None => {
                if self.config.max_flows > 0 && self.index.len() >= self.config.max_flows {
                    self.advance(clock_ns, out);
                    if self.index.len() >= self.config.max_flows {
                        self.evict_least_recent(clock_ns, out);
                    }
                }
                self.insert(key, hash, from_a, p, ts_ns, clock_ns)
            }
        };
        self.update(i, p, from_a, ts_ns, clock_ns);
    }

    /// Accounts a batch of packets, each with its timestamp and the capture
    /// clock at its arrival: the same as [`observe`](Self::observe) on each
    /// in turn, but faster on large tables. While it meters one packet it
    /// looks up packets further on and asks the CPU to load their flows and
    /// timer links, so that the cache misses of a table much larger than
    /// the cache overlap instead of stalling one after the other.
    pub fn observe_batch(&mut self, batch: &[(PacketRepr, u64, u64)], out: &mut Vec<FlowRecord>) {
        // Three stages run ahead of metering: 3 * AHEAD packets on, hash the
        // key and load its index entries; 2 * AHEAD on, look the slot up
        // there and load the flow and its timer link; AHEAD on, load the
        // link's neighbours. Results wait in rings indexed by position.
        const RING: usize = 4 * AHEAD;
        let mut hashes = [0u64; RING];
        let mut found = [NIL; RING];
        for k in 0..batch.len() {
            if let Some((p, _, _)) = batch.get(k + 3 * AHEAD) {
                let (key, _) = FlowKey::from_packet(p);
                let hash = self.hasher.hash_one(key);
                hashes[(k + 3 * AHEAD) % RING] = hash;
                prefetch_addr(self.index.entry_addr(hash));
            }
            if k + 2 * AHEAD < batch.len() {
                let at = (k + 2 * AHEAD) % RING;
                found[at] = self.prefetch_flow(hashes[at]);
            }
            if k + AHEAD < batch.len() {
                self.prefetch_neighbours(found[(k + AHEAD) % RING]);
            }
            let (p, ts_ns, clock_ns) = &batch[k];
            // The first packets of the batch were not looked ahead at.
            let hash = (k >= 3 * AHEAD).then(|| hashes[k % RING]);
            self.observe_hashed(p, hash, *ts_ns, *clock_ns, out);
        }
    }

    /// Finds the slot stored under `hash` (the first candidate, without
    /// comparing the key, which would wait for the load) and starts loading
    /// the flow and its idle-list link.
    fn prefetch_flow(&self, hash: u64) -> u32 {
        let Some(i) = self.index.find(hash, |_| true) else {
            return NIL;
        };
        if let Some(chunk) = self.slots.chunks.get((i >> CHUNK_BITS) as usize)
            && let Some(slot) = chunk.get((i & CHUNK_MASK) as usize)
        {
            prefetch_object(slot);
        }
        if let Some(link) = self.idle_links.get(i as usize) {
            prefetch(link);
        }
        i
    }

    /// Starts loading the idle-list neighbours of slot `i`, which
    /// [`observe`](Self::observe) relinks.
    fn prefetch_neighbours(&self, i: u32) {
        if let Some(link) = self.idle_links.get(i as usize) {
            for n in [link.prev, link.next] {
                if let Some(l) = self.idle_links.get(n as usize) {
                    prefetch(l);
                }
            }
        }
    }

    /// Emits every record due at or before `clock_ns` (idle, linger and
    /// active timeouts).
    pub fn advance(&mut self, clock_ns: u64, out: &mut Vec<FlowRecord>) {
        for class in 0..CLASSES {
            let timeout = self.idle_ns[class];
            loop {
                let head = self.idle_lists[class].head;
                if head == NIL {
                    break;
                }
                let f = self.flow(head);
                let since = if class == CLASS_CLOSING {
                    f.tcp.closed_at()
                } else {
                    f.last_clock
                };
                let due = since.saturating_add(timeout);
                if due > clock_ns {
                    break;
                }
                let reason = if class == CLASS_CLOSING {
                    EndReason::EndOfFlowDetected
                } else {
                    EndReason::IdleTimeout
                };
                self.finish(head, reason, due, out);
            }
        }
        let active = self.config.timeouts.active_ns;
        if active > 0 {
            loop {
                let head = self.active_list.head;
                if head == NIL {
                    break;
                }
                let due = self.flow(head).record_start_clock.saturating_add(active);
                if due > clock_ns {
                    break;
                }
                self.emit_active(head, due, out);
            }
        }
        if clock_ns.saturating_sub(self.last_fragment_purge) >= 1_000_000_000 {
            let keep_after = clock_ns.saturating_sub(self.config.timeouts.fragment_ns);
            self.fragments.retain(|_, e| e.clock > keep_after);
            self.last_fragment_purge = clock_ns;
        }
    }

    /// Ends every open flow at the end of input: `end_of_flow_detected` for
    /// TCP flows that had already closed, `forced_end` for the rest.
    pub fn flush(&mut self, clock_ns: u64, out: &mut Vec<FlowRecord>) {
        self.advance(clock_ns, out);
        for class in 0..CLASSES {
            while self.idle_lists[class].head != NIL {
                let head = self.idle_lists[class].head;
                let reason = if class == CLASS_CLOSING {
                    EndReason::EndOfFlowDetected
                } else {
                    EndReason::ForcedEnd
                };
                self.finish(head, reason, clock_ns, out);
            }
        }
        self.fragments.clear();
    }

    /// Like [`flush`](Self::flush), but hands the records to `emit` in
    /// [`FlowRecord::order_key`] order, at most `chunk` at a time. Open flows
    /// are sorted first and turned into records chunk by chunk, so the
    /// records of a large table never all exist at once. Stops early if
    /// `emit` returns `false`.
    pub fn flush_sorted(
        &mut self,
        clock_ns: u64,
        chunk: usize,
        mut emit: impl FnMut(Vec<FlowRecord>) -> bool,
    ) {
        enum Source {
            /// A record already made by the sweep (index into `swept`).
            Swept(usize),
            /// An open flow (slot) that ends now.
            Open(u32),
        }
        let mut swept = Vec::new();
        self.advance(clock_ns, &mut swept);
        // Each record to be, as its times and an index into `rest`: its key,
        // record number and source.
        let mut order: Vec<(u64, u64, u32)> = Vec::new();
        let mut rest: Vec<(FlowKey, u32, Source)> = Vec::new();
        for (i, r) in swept.iter().enumerate() {
            let ((due, start), (key, seq)) = (r.order_times(), r.order_tie());
            order.push((due, start, rest.len() as u32));
            rest.push((key, seq, Source::Swept(i)));
        }
        for class in 0..CLASSES {
            let mut i = self.idle_lists[class].head;
            while i != NIL {
                let f = self.flow(i);
                // The record `finish` will make, if any, is due now.
                if f.record_has_packets() {
                    order.push((clock_ns, f.record_start_ns, rest.len() as u32));
                    rest.push((f.key, f.record_seq, Source::Open(i)));
                }
                i = self.idle_links[i as usize].next;
            }
        }
        sort_in_output_order(&mut order, |at| {
            let (key, seq, _) = &rest[at as usize];
            (*key, *seq)
        });
        let mut swept: Vec<Option<FlowRecord>> = swept.into_iter().map(Some).collect();
        let chunk = chunk.max(1);
        let mut out = Vec::with_capacity(chunk.min(order.len()));
        for (due, start, at) in order {
            let (flow_key, seq, source) = &rest[at as usize];
            let key = (due, start, *flow_key, *seq);
            match *source {
                Source::Swept(k) => out.extend(swept[k].take()),
                Source::Open(i) => {
                    let reason = if self.flow(i).class() == CLASS_CLOSING {
                        EndReason::EndOfFlowDetected
                    } else {
                        EndReason::ForcedEnd
                    };
                    self.finish(i, reason, clock_ns, &mut out);
                    debug_assert_eq!(
                        out.last().map(FlowRecord::order_key),
                        Some(key),
                        "the record sorts where its flow was sorted"
                    );
                }
            }
            if out.len() >= chunk && !emit(std::mem::replace(&mut out, Vec::with_capacity(chunk))) {
                return;
            }
        }
        // Flows whose packets all went out in active-timeout records end
        // without a record.
        let mut rest = Vec::new();
        self.flush(clock_ns, &mut rest);
        debug_assert!(rest.is_empty(), "every open flow with packets was ordered");
        out.extend(rest);
        if !out.is_empty() {
            emit(out);
        }
    }

    fn flow(&self, i: u32) -> &Flow {
        self.slots
            .get(i)
            .expect("timer lists only hold occupied slots")
    }

    fn flow_mut(&mut self, i: u32) -> &mut Flow {
        self.slots
            .get_mut(i)
            .expect("the index only holds occupied slots")
    }

    /// Gives a non-first fragment the ports of its datagram, and remembers
    /// the ports of a first fragment.
    fn resolve_fragment(&mut self, p: &mut PacketRepr, clock_ns: u64) {
        match p.fragment {
            Fragment::Whole => {}
            Fragment::First { id } => {
                let key = FragmentKey {
                    src: p.src,
                    dst: p.dst,
                    protocol: p.protocol,
                    id,
                    tunnel: p.tunnel_fingerprint(),
                };
                self.fragments.insert(
                    key,
                    FragmentEntry {
                        src_port: p.src_port,
                        dst_port: p.dst_port,
                        icmp_type: p.icmp_type,
                        icmp_code: p.icmp_code,
                        clock: clock_ns,
                    },
                );
            }
            Fragment::Later { id } => {
                let key = FragmentKey {
                    src: p.src,
                    dst: p.dst,
                    protocol: p.protocol,
                    id,
                    tunnel: p.tunnel_fingerprint(),
                };
                let window = self.config.timeouts.fragment_ns;
                match self.fragments.get(&key) {
                    Some(e) if e.clock.saturating_add(window) > clock_ns => {
                        p.src_port = e.src_port;
                        p.dst_port = e.dst_port;
                        p.icmp_type = e.icmp_type;
                        p.icmp_code = e.icmp_code;
                    }
                    _ => self.stats.fragments_without_first += 1,
                }
            }
        }
    }

    /// Ends or splits flow `i` if it became due before this packet; returns
    /// the slot to update, or `None` if a new flow must start.
    fn check_due_on_arrival(
        &mut self,
        i: u32,
        p: &PacketRepr,
        clock: u64,
        out: &mut Vec<FlowRecord>,
    ) -> Option<u32> {
        let f = self.flow(i);
        if f.class() == CLASS_CLOSING {
            let due = f
                .tcp
                .closed_at()
                .saturating_add(self.idle_ns[CLASS_CLOSING]);
            if due <= clock {
                self.finish(i, EndReason::EndOfFlowDetected, due, out);
                return None;
            }
            // A new SYN from either side after FIN/FIN or RST starts a new connection.
            if p.protocol == 6 && p.tcp_flags & (SYN | ACK) == SYN {
                self.finish(i, EndReason::EndOfFlowDetected, clock, out);
                return None;
            }
        } else {
            let due = f.last_clock.saturating_add(self.idle_ns[f.class()]);
            if due <= clock {
                self.finish(i, EndReason::IdleTimeout, due, out);
                return None;
            }
        }
        let active = self.config.timeouts.active_ns;
        let f = self.flow(i);
        if active > 0 && f.in_active {
            let due = f.record_start_clock.saturating_add(active);
            if due <= clock {
                self.emit_active(i, due, out);
            }
        }
        Some(i)
    }

    fn insert(
        &mut self,
        key: FlowKey,
        hash: u64,
        from_a: bool,
        p: &PacketRepr,
        ts_ns: u64,
        clock_ns: u64,
    ) -> u32 {
        let (sender_is_initiator, mut evidence) = initiator_of_first_packet(p);
        let mut initiator_is_a = from_a == sender_is_initiator;
        if let Some(host) = self.host.as_deref()
            && has_ports(key.protocol)
            && (evidence == Evidence::None || (evidence == Evidence::Ports && key.protocol == 6))
        {
            // A local listening socket on one side makes that side the
            // responder. A TCP socket in LISTEN state is better evidence
            // than the port heuristic; an unconnected UDP socket may be a
            // client's, so it only decides where nothing else does.
            let a_listens = host.listens(key.protocol, key.a, key.a_port);
            let b_listens = host.listens(key.protocol, key.b, key.b_port);
            if a_listens != b_listens {
                initiator_is_a = b_listens;
                evidence = Evidence::Listening;
            }
        }
        let ((initiator, _), (responder, responder_port)) = if initiator_is_a {
            ((key.a, key.a_port), (key.b, key.b_port))
        } else {
            ((key.b, key.b_port), (key.a, key.a_port))
        };
        let role = match (evidence, self.host.as_deref()) {
            (Evidence::None, _) => FlowRole::Internal,
            // Live: the host opened it, or answers it on a listening socket
            // (for protocols without ports: answers it at all, as the
            // kernel answers an echo request).
            (_, Some(host)) if host.is_local(initiator) => FlowRole::Client,
            (_, Some(host))
                if (has_ports(key.protocol)
                    && host.listens(key.protocol, responder, responder_port))
                    || (!has_ports(key.protocol) && host.is_local(responder)) =>
            {
                FlowRole::Server
            }
            (_, Some(_)) => FlowRole::Client,
            // Capture files: `--local-net` stands in for the host.
            _ if self.config.is_local(responder) && !self.config.is_local(initiator) => {
                FlowRole::Server
            }
            _ => FlowRole::Client,
        };
        let class = match key.protocol {
            6 => CLASS_TCP,
            17 => CLASS_UDP,
            1 | 58 => CLASS_ICMP,
            _ => CLASS_OTHER,
        };
        let flow = Flow {
            key,
            flow_start_ns: ts_ns,
            record_start_ns: ts_ns,
            record_end_ns: ts_ns,
            record_start_clock: clock_ns,
            last_clock: clock_ns,
            fwd: Direction::default(),
            rev: Direction::default(),
            tcp_flags: [0; 2],
            tcp: TcpTiming::new(p, from_a == initiator_is_a),
            record_seq: 0,
            class: class as u8,
            role,
            initiator_is_a,
            in_active: false,
            ifindex: p.ifindex,
            mac: match (p.ifindex, from_a == initiator_is_a) {
                (0, _) => [0; 6],
                (_, true) => p.src_mac,
                (_, false) => p.dst_mac,
            },
            extra: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots.put(i, flow);
                i
            }
            None => {
                self.idle_links.push(Link::default());
                self.active_links.push(Link::default());
                self.slots.push(flow)
            }
        };
        self.idle_lists[class].push_back(&mut self.idle_links, i);
        self.index.insert(hash, i);
        self.stats.flows += 1;
        if self.index.len() as u64 > self.stats.peak_flows {
            self.stats.peak_flows = self.index.len() as u64;
            self.stats.peak_memory_bytes = self.memory_bytes() as u64;
        }
        i
    }

    fn update(&mut self, i: u32, p: &PacketRepr, from_a: bool, ts_ns: u64, clock_ns: u64) {
        let active_enabled = self.config.timeouts.active_ns > 0;
        let f = self.slots.get_mut(i).expect("updated slot is occupied");
        let forward = from_a == f.initiator_is_a;
        if let Some(x) = &p.extra {
            f.extra = true;
            self.extras
                .entry(i)
                .or_default()
                .note(x, usize::from(!from_a));
        }
        if !f.record_has_packets() {
            f.record_start_ns = ts_ns;
            f.record_end_ns = ts_ns;
        } else {
            f.record_start_ns = f.record_start_ns.min(ts_ns);
            f.record_end_ns = f.record_end_ns.max(ts_ns);
        }
        let d = if forward { &mut f.fwd } else { &mut f.rev };
        if d.packets_delta == 0 {
            d.first = FirstPacket {
                ttl: p.ttl,
                tos: p.tos,
                flow_label: p.flow_label,
                icmp_type: p.icmp_type,
                icmp_code: p.icmp_code,
            };
        }
        d.packets_delta += u64::from(p.segments);
        d.packets_total += u64::from(p.segments);
        d.bytes_delta += u64::from(p.ip_bytes);
        d.bytes_total += u64::from(p.ip_bytes);
        f.tcp_flags[usize::from(!forward)] |= p.tcp_flags;
        f.last_clock = clock_ns;
        let [fwd_flags, rev_flags] = f.tcp_flags;
        let closing_now = f.key.protocol == 6
            && f.class() != CLASS_CLOSING
            && ((fwd_flags | rev_flags) & RST != 0
                || (fwd_flags & FIN != 0 && rev_flags & FIN != 0));
        if f.key.protocol == 6 {
            // The initiator's ACK after the responder's SYN and ACK
            // completes the handshake.
            let established =
                forward && p.tcp_flags & (SYN | ACK) == ACK && rev_flags & (SYN | ACK) == SYN | ACK;
            f.tcp
                .observe(p, forward, ts_ns, f.flow_start_ns, established);
        }
        let class = f.class();
        let needs_active = active_enabled && !f.in_active;
        if closing_now {
            f.class = CLASS_CLOSING as u8;
            f.tcp.close(clock_ns);
            self.idle_lists[class].unlink(&mut self.idle_links, i);
            self.idle_lists[CLASS_CLOSING].push_back(&mut self.idle_links, i);
        } else if class != CLASS_CLOSING {
            // Most recently seen goes last.
            self.idle_lists[class].move_to_back(&mut self.idle_links, i);
        }
        if needs_active {
            let f = self.flow_mut(i);
            f.in_active = true;
            f.record_start_clock = clock_ns;
            self.active_list.push_back(&mut self.active_links, i);
        }
    }

    fn evict_least_recent(&mut self, clock_ns: u64, out: &mut Vec<FlowRecord>) {
        let mut victim: Option<(u64, u32)> = None;
        for class in 0..CLASSES {
            let head = self.idle_lists[class].head;
            if head == NIL {
                continue;
            }
            let last = self.flow(head).last_clock;
            if victim.is_none_or(|(v, _)| last < v) {
                victim = Some((last, head));
            }
        }
        if let Some((_, i)) = victim {
            self.finish(i, EndReason::LackOfResources, clock_ns, out);
        }
    }

    fn emit_active(&mut self, i: u32, due: u64, out: &mut Vec<FlowRecord>) {
        let f = self
            .slots
            .get(i)
            .expect("the active list only holds occupied slots");
        // Only flows with tunnels or IPsec have an entry: the others skip
        // the map lookup.
        let has_extra = f.extra;
        if f.record_has_packets() {
            out.push(make_record(
                f,
                if has_extra { self.extras.get(&i) } else { None },
                self.config.community_id_seed,
                &mut self.id_scratch,
                EndReason::ActiveTimeout,
                due,
            ));
            self.stats.records[1] += 1;
        }
        self.active_list.unlink(&mut self.active_links, i);
        if has_extra && let Some(x) = self.extras.get_mut(&i) {
            x.reset_record();
        }
        let f = self.flow_mut(i);
        f.in_active = false;
        f.record_seq += 1;
        f.fwd.reset_record();
        f.rev.reset_record();
        f.tcp.reset_record();
    }

    fn finish(
        &mut self,
        i: u32,
        reason: EndReason,
        export_clock_ns: u64,
        out: &mut Vec<FlowRecord>,
    ) {
        let f = self.slots.take(i).expect("finished slot is occupied");
        let extra = if f.extra {
            self.extras.remove(&i)
        } else {
            None
        };
        // A flow whose packets were all reported by active-timeout records
        // ends without an empty record.
        if f.record_has_packets() {
            out.push(make_record(
                &f,
                extra.as_ref(),
                self.config.community_id_seed,
                &mut self.id_scratch,
                reason,
                export_clock_ns,
            ));
            let idx = EndReason::ALL
                .iter()
                .position(|r| *r == reason)
                .unwrap_or_default();
            self.stats.records[idx] += 1;
        }
        self.idle_lists[f.class()].unlink(&mut self.idle_links, i);
        if f.in_active {
            self.active_list.unlink(&mut self.active_links, i);
        }
        self.index.remove(self.hasher.hash_one(f.key), i);
        self.free.push(i);
    }
}

/// The record of flow `f` so far. `scratch` is reused for hashing.
fn make_record(
    f: &Flow,
    extra: Option<&FlowExtra>,
    community_id_seed: u16,
    scratch: &mut Vec<u8>,
    reason: EndReason,
    export_clock_ns: u64,
) -> FlowRecord {
    let k = &f.key;
    // The trace id: SHA-1 of the key and the flow's first packet time,
    // so every record of a flow shares it.
    scratch.clear();
    k.write_bytes(scratch);
    scratch.extend_from_slice(&f.flow_start_ns.to_be_bytes());
    let digest: [u8; 20] = Sha1::digest(&scratch).into();
    let mut trace_id = [0u8; 16];
    trace_id.copy_from_slice(&digest[..16]);
    if trace_id == [0; 16] {
        trace_id[15] = 1;
    }
    let ((src, sport), (dst, dport)) = if f.initiator_is_a {
        ((k.a, k.a_port), (k.b, k.b_port))
    } else {
        ((k.b, k.b_port), (k.a, k.a_port))
    };
    let (sport, dport) = if k.has_ports() {
        (sport, dport)
    } else {
        (0, 0)
    };
    let mut h = Sha1::new();
    h.update(trace_id);
    h.update(f.record_seq.to_be_bytes());
    let digest: [u8; 20] = h.finalize().into();
    let mut span_id = [0u8; 8];
    span_id.copy_from_slice(&digest[..8]);
    if span_id == [0; 8] {
        span_id[7] = 1;
    }
    FlowRecord {
        key: f.key,
        source: src,
        source_port: sport,
        destination: dst,
        destination_port: dport,
        community_id: k.community_id(community_id_seed),
        role: f.role,
        end_reason: reason,
        tcp_state: f.tcp_state(),
        tcp_latency: if k.protocol == 6 {
            f.tcp.record()
        } else {
            TcpLatency::default()
        },
        start_ns: f.record_start_ns,
        end_ns: f.record_end_ns,
        flow_start_ns: f.flow_start_ns,
        record_seq: f.record_seq,
        forward: f.fwd.record(f.tcp_flags[0]),
        reverse: f.rev.record(f.tcp_flags[1]),
        trace_id,
        span_id,
        export_clock_ns,
        interface_index: (f.ifindex != 0).then_some(f.ifindex),
        interface_mac: (f.mac != [0; 6]).then_some(f.mac),
        encap: extra.map(|x| Box::new(x.record(usize::from(!f.initiator_is_a)))),
    }
}

/// Who initiated a flow, judged from its first packet: `(the sender is the
/// initiator, how we know)`.
fn initiator_of_first_packet(p: &PacketRepr) -> (bool, Evidence) {
    match p.protocol {
        6 if p.tcp_flags & (SYN | ACK) == SYN => return (true, Evidence::Protocol),
        6 if p.tcp_flags & (SYN | ACK) == SYN | ACK => return (false, Evidence::Protocol),
        132 if p.sctp_chunk == 1 => return (true, Evidence::Protocol),
        132 if p.sctp_chunk == 2 => return (false, Evidence::Protocol),
        1 | 58 if p.has_transport_header() => match icmp_role(p.protocol, p.icmp_type) {
            IcmpRole::Request => return (true, Evidence::Protocol),
            IcmpRole::Reply => return (false, Evidence::Protocol),
            IcmpRole::OneWay => return (true, Evidence::None),
        },
        _ => {}
    }
    if matches!(p.protocol, 6 | 17 | 132) {
        match service_port_side(p.src_port, p.dst_port) {
            Some(ServiceSide::Destination) => return (true, Evidence::Ports),
            Some(ServiceSide::Source) => return (false, Evidence::Ports),
            None => {}
        }
    }
    (true, Evidence::None)
}

/// Whether `protocol`'s flows are told apart by ports (TCP, UDP, SCTP,
/// UDP-Lite).
fn has_ports(protocol: u8) -> bool {
    matches!(protocol, 6 | 17 | 132 | 136)
}

/// Well-known service ports at or above 1024.
const REGISTERED_SERVICES: [u16; 24] = [
    1433, 1521, 1883, 2049, 2181, 2375, 2376, 2379, 3000, 3306, 3389, 4317, 4318, 5432, 5672, 6379,
    6443, 8080, 8443, 9042, 9092, 9200, 11211, 27017,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServiceSide {
    Source,
    Destination,
}

fn is_service_port(p: u16) -> bool {
    (p != 0 && p < 1024) || REGISTERED_SERVICES.contains(&p)
}

/// The port heuristic: a side whose port is a service port (below 1024, or
/// in [`REGISTERED_SERVICES`]) facing a side whose port is not is the
/// responder; failing that, a side whose port is below the ephemeral range
/// (32768) facing one inside it is the responder.
fn service_port_side(src: u16, dst: u16) -> Option<ServiceSide> {
    match (is_service_port(src), is_service_port(dst)) {
        (true, false) => return Some(ServiceSide::Source),
        (false, true) => return Some(ServiceSide::Destination),
        (true, true) => return None,
        (false, false) => {}
    }
    const EPHEMERAL: u16 = 32768;
    match (src >= EPHEMERAL, dst >= EPHEMERAL) {
        (false, true) if src != 0 => Some(ServiceSide::Source),
        (true, false) if dst != 0 => Some(ServiceSide::Destination),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::config::Timeouts;

    const S: u64 = 1_000_000_000;

    fn tcp(src: &str, sp: u16, dst: &str, dp: u16, flags: u16) -> PacketRepr {
        PacketRepr {
            src_port: sp,
            dst_port: dp,
            tcp_flags: flags,
            ip_bytes: 60,
            ttl: 64,
            ..PacketRepr::new(src.parse().unwrap(), dst.parse().unwrap(), 6)
        }
    }

    fn run(table: &mut FlowTable, pkts: &[(u64, PacketRepr)]) -> Vec<FlowRecord> {
        let mut out = Vec::new();
        let mut clock = 0;
        for (ts, p) in pkts {
            clock = clock.max(*ts);
            table.observe(p, *ts, clock, &mut out);
        }
        table.flush(clock, &mut out);
        out
    }

    #[test]
    fn a_flow_takes_248_bytes_and_a_million_take_at_most_288_each() {
        assert_eq!(std::mem::size_of::<Flow>(), 248);
        assert_eq!(std::mem::size_of::<Option<Flow>>(), 248);
        assert_eq!(std::mem::size_of::<TcpTiming>(), 56);
        // What a flow with tunnels or IPsec keeps besides (README, "Tunnels").
        assert_eq!(std::mem::size_of::<(u32, FlowExtra)>(), 296);
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        let mut p = tcp("10.0.0.1", 1, "172.16.0.1", 443, SYN);
        p.protocol = 17;
        // Just after the index and the timer links double (2^18 + 1 and
        // 2^19 + 1 flows; the index also at 3/4 of 2^20) is the worst case.
        let mut worst = 0;
        for n in 0..1_000_000u32 {
            let [_, b, c, d] = n.to_be_bytes();
            p.src = IpAddr::from([10, b, c, d]);
            p.src_port = 1024 + (n % 60_000) as u16;
            t.observe(&p, S, S, &mut out);
            if matches!(n + 1, 262_145 | 524_289 | 786_433) {
                worst = worst.max(t.memory_bytes() / t.len());
            }
        }
        assert_eq!(t.len(), 1_000_000);
        assert!(out.is_empty());
        let per_flow = t.memory_bytes() / t.len();
        // The figures README and benches/README give (`-- --nocapture`).
        eprintln!("bytes per flow: {per_flow} at 1 M flows, {worst} at worst after a doubling");
        assert!(per_flow <= 288, "{per_flow} bytes per flow at 1 M flows");
        assert!(worst <= 300, "{worst} bytes per flow after a doubling");
        assert_eq!(t.stats().peak_memory_bytes, t.memory_bytes() as u64);
    }

    #[test]
    fn synack_first_makes_its_receiver_the_initiator() {
        let mut t = FlowTable::new(FlowConfig::default());
        let out = run(
            &mut t,
            &[
                (S, tcp("10.0.0.2", 80, "10.0.0.1", 40000, SYN | ACK)),
                (2 * S, tcp("10.0.0.1", 40000, "10.0.0.2", 80, ACK)),
                (3 * S, tcp("10.0.0.1", 40000, "10.0.0.2", 80, ACK)),
            ],
        );
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(r.source, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!((r.source_port, r.destination_port), (40000, 80));
        assert_eq!(r.forward.packets_delta, 2);
        assert_eq!(r.reverse.packets_delta, 1);
        assert_eq!(r.role, FlowRole::Client);
        assert_eq!(r.end_reason, EndReason::ForcedEnd);
    }

    #[test]
    fn mid_stream_without_port_evidence_is_internal_from_first_sender() {
        let mut t = FlowTable::new(FlowConfig::default());
        let out = run(
            &mut t,
            &[
                (S, tcp("10.0.0.9", 40001, "10.0.0.1", 50000, ACK)),
                (2 * S, tcp("10.0.0.1", 50000, "10.0.0.9", 40001, ACK)),
            ],
        );
        assert_eq!(out[0].role, FlowRole::Internal);
        assert_eq!(out[0].source_port, 40001);
        assert_eq!(out[0].forward.packets_delta, 1);
    }

    #[test]
    fn fin_both_sides_ends_flow_after_linger_and_late_packet_starts_new_flow() {
        let mut t = FlowTable::new(FlowConfig::default());
        let a = "10.0.0.1";
        let b = "10.0.0.2";
        let out = run(
            &mut t,
            &[
                (S, tcp(a, 40000, b, 80, SYN)),
                (S + 1, tcp(b, 80, a, 40000, SYN | ACK)),
                (S + 2, tcp(a, 40000, b, 80, ACK)),
                (S + 3, tcp(a, 40000, b, 80, FIN | ACK)),
                (S + 4, tcp(b, 80, a, 40000, FIN | ACK)),
                (S + 5, tcp(a, 40000, b, 80, ACK)),
                (10 * S, tcp(a, 40000, b, 80, ACK)),
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].end_reason, EndReason::EndOfFlowDetected);
        assert_eq!(out[0].forward.packets_delta, 4);
        assert_eq!(out[0].tcp_state, Some(TcpState::TimeWait));
        assert_eq!(out[0].export_clock_ns, S + 4 + 2 * S);
        assert_eq!(out[1].end_reason, EndReason::ForcedEnd);
        assert_ne!(out[0].trace_id, out[1].trace_id);
    }

    #[test]
    fn active_timeout_splits_deltas_but_totals_grow() {
        let cfg = FlowConfig {
            timeouts: Timeouts {
                active_ns: 10 * S,
                ..Timeouts::default()
            },
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg);
        let pkts: Vec<_> = (0..25)
            .map(|i| (i * S, tcp("10.0.0.1", 40000, "10.0.0.2", 443, ACK)))
            .collect();
        let out = run(&mut t, &pkts);
        let deltas: Vec<u64> = out.iter().map(|r| r.forward.packets_delta).collect();
        let totals: Vec<u64> = out.iter().map(|r| r.forward.packets_total).collect();
        assert_eq!(deltas, [10, 10, 5]);
        assert_eq!(totals, [10, 20, 25]);
        assert_eq!(out[0].end_reason, EndReason::ActiveTimeout);
        assert_eq!(out[2].end_reason, EndReason::ForcedEnd);
        assert!(out.iter().all(|r| r.trace_id == out[0].trace_id));
        assert_eq!(
            out.iter().map(|r| r.record_seq).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    #[test]
    fn idle_timeout_is_evaluated_on_arrival() {
        let mut cfg = FlowConfig::default();
        cfg.timeouts.set_all_idle(5 * S);
        let mut t = FlowTable::new(cfg);
        let p = tcp("10.0.0.1", 40000, "10.0.0.2", 443, ACK);
        let out = run(&mut t, &[(S, p.clone()), (7 * S, p)]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].end_reason, EndReason::IdleTimeout);
        assert_eq!(out[0].export_clock_ns, 6 * S);
    }

    #[test]
    fn max_flows_evicts_least_recently_seen() {
        let cfg = FlowConfig {
            max_flows: 2,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg);
        let out = run(
            &mut t,
            &[
                (S, tcp("10.0.0.1", 40000, "10.0.0.2", 443, SYN)),
                (2 * S, tcp("10.0.0.1", 40001, "10.0.0.2", 443, SYN)),
                (3 * S, tcp("10.0.0.1", 40000, "10.0.0.2", 443, ACK)),
                (4 * S, tcp("10.0.0.1", 40002, "10.0.0.2", 443, SYN)),
            ],
        );
        assert_eq!(out[0].end_reason, EndReason::LackOfResources);
        assert_eq!(out[0].source_port, 40001);
        assert_eq!(t.stats().records[4], 1);
    }

    #[test]
    fn local_net_responder_makes_server_role() {
        let cfg = FlowConfig {
            local_nets: vec!["10.0.0.2/32".parse().unwrap()],
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg);
        let out = run(
            &mut t,
            &[
                (S, tcp("10.0.0.1", 40000, "10.0.0.2", 443, SYN)),
                (S, tcp("10.0.0.2", 40000, "10.0.0.1", 443, SYN)),
            ],
        );
        assert_eq!(out[0].role, FlowRole::Server);
        assert_eq!(out[1].role, FlowRole::Client);
        assert_eq!(out[0].source, "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    /// A host with address 10.0.0.2, TCP listening on 10.0.0.2:45000 and
    /// on every address at 22, UDP bound to 10.0.0.2:41000.
    fn host_table() -> FlowTable {
        use crate::flow::host::{ANY_V4, Listener};
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let host = HostSockets::new(
            [ip("10.0.0.2")],
            &[],
            [
                Listener {
                    protocol: 6,
                    address: ip("10.0.0.2"),
                    port: 45000,
                },
                Listener {
                    protocol: 6,
                    address: ANY_V4,
                    port: 22,
                },
                Listener {
                    protocol: 17,
                    address: ip("10.0.0.2"),
                    port: 41000,
                },
            ],
        );
        let mut t = FlowTable::new(FlowConfig::default());
        t.set_host(Some(Arc::new(host)));
        t
    }

    #[test]
    fn the_host_answering_on_a_listening_socket_makes_server_role() {
        let mut t = host_table();
        let udp = |src, sp, dst, dp| {
            let mut p = tcp(src, sp, dst, dp, 0);
            p.protocol = 17;
            p
        };
        let out = run(
            &mut t,
            &[
                // An inbound SYN to a listening port.
                (S, tcp("10.0.0.1", 50000, "10.0.0.2", 22, SYN)),
                // Mid-stream, the server speaking first, no port rule: the
                // listening socket says who answers.
                (S, tcp("10.0.0.2", 45000, "10.0.0.1", 46000, ACK)),
                // The host connects out: CLIENT even to a port that it
                // listens on elsewhere.
                (S, tcp("10.0.0.2", 51000, "10.0.0.9", 22, SYN)),
                // An inbound SYN to a port nobody listens on (a scan).
                (S, tcp("10.0.0.1", 50001, "10.0.0.2", 23, SYN)),
                // UDP to a bound socket, the reply seen first.
                (S, udp("10.0.0.2", 41000, "10.0.0.7", 42000)),
                // Transit traffic: neither side is the host.
                (S, tcp("10.0.0.5", 50000, "10.0.0.6", 22, SYN)),
            ],
        );
        let by_port = |port: u16| {
            out.iter()
                .find(|r| r.source_port == port || r.destination_port == port)
                .map(|r| (r.role, r.source_port))
                .unwrap()
        };
        assert_eq!(by_port(50000), (FlowRole::Server, 50000));
        assert_eq!(by_port(46000), (FlowRole::Server, 46000));
        assert_eq!(by_port(51000), (FlowRole::Client, 51000));
        assert_eq!(by_port(50001), (FlowRole::Client, 50001));
        assert_eq!(by_port(42000), (FlowRole::Server, 42000));
        let transit = out
            .iter()
            .find(|r| r.source.to_string() == "10.0.0.5")
            .unwrap();
        assert_eq!(transit.role, FlowRole::Client);
    }

    #[test]
    fn the_host_answering_a_ping_makes_server_role_and_its_own_ping_client() {
        let mut t = host_table();
        let icmp = |src: &str, dst: &str, ty: u8| {
            let mut p = tcp(src, 0, dst, 0, 0);
            p.protocol = 1;
            p.icmp_type = ty;
            p.src_port = 7; // the echo identifier
            p
        };
        let out = run(
            &mut t,
            &[
                (S, icmp("10.0.0.1", "10.0.0.2", 8)),
                (S, icmp("10.0.0.2", "10.0.0.1", 0)),
                (2 * S, icmp("10.0.0.2", "10.0.0.3", 8)),
            ],
        );
        let from = |src: &str| {
            out.iter()
                .find(|r| r.source.to_string() == src)
                .unwrap()
                .role
        };
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(from("10.0.0.1"), FlowRole::Server);
        assert_eq!(from("10.0.0.2"), FlowRole::Client);
    }

    #[test]
    fn an_unconnected_udp_socket_does_not_overrule_the_port_rule() {
        // A resolver's unconnected socket on 10.0.0.2:41000 asks port 53:
        // the port rule makes the host the initiator, so CLIENT.
        let mut t = host_table();
        let mut p = tcp("10.0.0.2", 41000, "10.0.0.53", 53, 0);
        p.protocol = 17;
        let out = run(&mut t, &[(S, p)]);
        assert_eq!((out[0].role, out[0].source_port), (FlowRole::Client, 41000));
    }

    #[test]
    fn port_heuristic() {
        assert_eq!(service_port_side(53, 40000), Some(ServiceSide::Source));
        assert_eq!(
            service_port_side(51000, 5432),
            Some(ServiceSide::Destination)
        );
        assert_eq!(service_port_side(8081, 50000), Some(ServiceSide::Source));
        assert_eq!(service_port_side(53, 53), None);
        assert_eq!(service_port_side(40000, 40001), None);
    }
}
