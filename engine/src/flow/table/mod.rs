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
//! class in last-seen order, and one for the active timeout in record-start
//! order. Expiring is popping heads. The idle classes are TCP, UDP, ICMP,
//! other and TCP closing, and the same four protocols again for flows that
//! have not got going (`Flow::got_going`): every flow starts in one of
//! those, with a shorter timeout, and moves to its protocol's class once it
//! has.

mod flows;
mod fragments;
mod ids;
mod role;
mod slab;
mod state;
mod timers;

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashMap;

use self::fragments::{FragmentEntry, FragmentKey};
use self::ids::make_record;
use self::role::Opener;
use self::slab::{AHEAD, Slab, prefetch, prefetch_addr, prefetch_object};
use self::state::{Direction, Flow, FlowExtra};
use self::timers::{Link, List, NIL};
use super::index::SlotIndex;
use crate::decode::{Fragment, PacketRepr};
use crate::flow::config::{FlowConfig, InterfaceFlows};
use crate::flow::host::HostSockets;
use crate::flow::key::FlowKey;
use crate::flow::record::{EndReason, FirstPacket, FlowRecord, sort_in_output_order};
use crate::flow::tcp::{ACK, SYN, TcpTiming};

const CLASS_TCP: usize = 0;
const CLASS_UDP: usize = 1;
const CLASS_ICMP: usize = 2;
const CLASS_OTHER: usize = 3;
const CLASS_CLOSING: usize = 4;
/// Added to a protocol's class: the class of its flows that have not got
/// going.
const CLASS_NEW: usize = 5;
const CLASSES: usize = 9;

/// A packet's key, from which side it came and the key's hash, worked out
/// when [`FlowTable::observe_batch`] looks ahead at the packet and kept for
/// when it meters it.
#[derive(Clone, Copy)]
struct Keyed {
    key: FlowKey,
    from_a: bool,
    hash: u64,
}

/// What [`FlowTable::relink`] does for a flow that took traffic.
#[derive(Clone, Copy)]
struct Relink {
    /// The flow's idle class before this traffic.
    class: usize,
    /// Its idle class now: another one if it has just closed or got going.
    to: usize,
    /// It is not on the active list yet.
    needs_active: bool,
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
    /// First fragments whose ports were not remembered because the table
    /// held [`FlowConfig::max_fragments`] datagrams already.
    pub fragments_untracked: u64,
    /// Flows ended to make room for a new one ([`FlowConfig::max_flows`]);
    /// each made a `lack_of_resources` record if it had packets since its
    /// last record.
    pub evicted: u64,
    /// The most flows open at once in this table. [`merge`](Self::merge)
    /// adds peaks, so for several tables it is the sum of each table's peak
    /// (an upper bound of the peak of their union).
    pub peak_flows: u64,
    /// Bytes the table had allocated when it held `peak_flows` flows (see
    /// [`FlowTable::memory_bytes`]); summed by [`merge`](Self::merge).
    pub peak_memory_bytes: u64,
    /// Packets of a flow seen on an interface other than the one that keeps
    /// the flow ([`InterfaceFlows::First`]): left out.
    pub duplicates: u64,
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
        self.fragments_untracked += other.fragments_untracked;
        self.evicted += other.evicted;
        self.peak_flows += other.peak_flows;
        self.peak_memory_bytes += other.peak_memory_bytes;
        self.duplicates += other.duplicates;
    }

    /// Total records emitted.
    pub fn records_total(&self) -> u64 {
        self.records.iter().sum()
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
        let new = |idle: u64| idle.min(t.unestablished_idle_ns);
        let max_flows = config.max_flows;
        FlowTable {
            idle_ns: [
                t.tcp_idle_ns,
                t.udp_idle_ns,
                t.icmp_idle_ns,
                t.other_idle_ns,
                t.tcp_end_linger_ns,
                new(t.tcp_idle_ns),
                new(t.udp_idle_ns),
                new(t.icmp_idle_ns),
                new(t.other_idle_ns),
            ],
            config,
            index: SlotIndex::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed),
            slots: Slab::with_limit(max_flows),
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
        looked_up: Option<&Keyed>,
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
        let (key, from_a, hash) = match looked_up {
            // A whole packet's key does not change once looked ahead at.
            Some(k) if resolved.is_none() => {
                debug_assert_eq!((k.key, k.from_a), self.key_of(p));
                debug_assert_eq!(k.hash, self.hasher.hash_one(k.key));
                (k.key, k.from_a, k.hash)
            }
            _ => {
                let (key, from_a) = self.key_of(p);
                (key, from_a, self.hasher.hash_one(key))
            }
        };
        let slots = &self.slots;
        let mut slot = self.index.find(hash, |i| slots.key_is(i, &key));
        if let Some(i) = slot {
            let new_syn = p.protocol == 6 && p.tcp_flags & (SYN | ACK) == SYN;
            slot = self.check_due_on_arrival(i, new_syn, clock_ns, out);
        }
        let i = match slot {
            Some(i) => i,
            None => {
                self.make_room(clock_ns, out);
                self.insert(key, hash, &(p, from_a), p.ifindex, ts_ns, clock_ns)
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
        // `None` for the first packets of the batch, not looked ahead at.
        let mut keyed: [Option<Keyed>; RING] = [None; RING];
        let mut found = [NIL; RING];
        for k in 0..batch.len() {
            if let Some((p, _, _)) = batch.get(k + 3 * AHEAD) {
                let (key, from_a) = self.key_of(p);
                let hash = self.hasher.hash_one(key);
                keyed[(k + 3 * AHEAD) % RING] = Some(Keyed { key, from_a, hash });
                prefetch_addr(self.index.entry_addr(hash));
            }
            if k + 2 * AHEAD < batch.len() {
                let at = (k + 2 * AHEAD) % RING;
                found[at] = keyed[at].map_or(NIL, |x| self.prefetch_flow(x.hash));
            }
            if k + AHEAD < batch.len() {
                self.prefetch_neighbours(found[(k + AHEAD) % RING]);
            }
            let (p, ts_ns, clock_ns) = &batch[k];
            self.observe_hashed(p, keyed[k % RING].as_ref(), *ts_ns, *clock_ns, out);
        }
    }

    /// Finds the slot stored under `hash` (the first candidate, without
    /// comparing the key, which would wait for the load) and starts loading
    /// the flow and its idle-list link.
    fn prefetch_flow(&self, hash: u64) -> u32 {
        let Some(i) = self.index.find(hash, |_| true) else {
            return NIL;
        };
        if let Some(slot) = self.slots.try_slot(i) {
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

    /// The time the flow at the head of idle list `class` is due, if any.
    #[inline]
    fn idle_head_due(&self, class: usize) -> Option<(u64, u32)> {
        let head = self.idle_lists[class].head;
        if head == NIL {
            return None;
        }
        let f = self.flow(head);
        let since = if class == CLASS_CLOSING {
            f.tcp.closed_at()
        } else {
            f.last_clock
        };
        Some((since.saturating_add(self.idle_ns[class]), head))
    }

    /// Emits every record due at or before `clock_ns` (idle, linger and
    /// active timeouts), earliest first: a flow whose active timeout came
    /// before its idle timeout gets its active-timeout record whatever
    /// the clock's steps (a jump past both, or two steps), so that the
    /// records do not depend on how the input was batched. At equal times
    /// the idle (or linger) timeout wins: one record, not two.
    pub fn advance(&mut self, clock_ns: u64, out: &mut Vec<FlowRecord>) {
        let active = self.config.timeouts.active_ns;
        loop {
            // The earliest due head of the idle lists, then of the active
            // list if strictly earlier; each list is in due order.
            let mut next: Option<(u64, u32, Option<usize>)> = None;
            for class in 0..CLASSES {
                if let Some((due, i)) = self.idle_head_due(class)
                    && due <= clock_ns
                    && next.is_none_or(|(d, _, _)| due < d)
                {
                    next = Some((due, i, Some(class)));
                }
            }
            let head = self.active_list.head;
            if active > 0 && head != NIL {
                let due = self.flow(head).record_start_clock.saturating_add(active);
                if due <= clock_ns && next.is_none_or(|(d, _, _)| due < d) {
                    next = Some((due, head, None));
                }
            }
            match next {
                None => break,
                Some((due, i, Some(class))) => {
                    let reason = if class == CLASS_CLOSING {
                        EndReason::EndOfFlowDetected
                    } else {
                        EndReason::IdleTimeout
                    };
                    self.finish(i, reason, due, out);
                }
                Some((due, i, None)) => self.emit_active(i, due, out),
            }
        }
        if clock_ns.saturating_sub(self.last_fragment_purge) >= 1_000_000_000 {
            self.purge_fragments(clock_ns);
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

    /// Ends every open flow kept by interface `ifindex` (it went away) at
    /// `clock_ns`, as [`flush`](Self::flush) ends flows: each emits its
    /// last record now.
    pub fn end_interface(&mut self, ifindex: u32, clock_ns: u64, out: &mut Vec<FlowRecord>) {
        self.advance(clock_ns, out);
        for class in 0..CLASSES {
            let mut i = self.idle_lists[class].head;
            while i != NIL {
                let next = self.idle_links[i as usize].next;
                if self.flow(i).ifindex == ifindex {
                    let reason = if class == CLASS_CLOSING {
                        EndReason::EndOfFlowDetected
                    } else {
                        EndReason::ForcedEnd
                    };
                    self.finish(i, reason, clock_ns, out);
                }
                i = next;
            }
        }
    }

    /// Like [`flush`](Self::flush), but hands the records to `emit` in
    /// [`FlowRecord::order_key`] order, at most `chunk` at a time. Open flows
    /// are sorted first and turned into records chunk by chunk, so the
    /// records of a large table never all exist at once. Stops early if
    /// `emit` returns `false`. The table is empty afterwards either way.
    ///
    /// Every flow ends here, so the table takes each one out of its slot
    /// alone and empties its index and timer lists once at the end, instead
    /// of unlinking each flow from them (cache misses on the neighbours and
    /// index entries of flows in no particular order). Open flows are found
    /// by walking the slots in memory order, and each flow is prefetched a
    /// few records before its turn.
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
        for (i, f) in self.slots.occupied() {
            // The record `finish` would make, if any, is due now. Flows
            // whose packets all went out in active-timeout records end
            // without a record.
            if f.record_has_packets() {
                order.push((clock_ns, f.record_start_ns, rest.len() as u32));
                rest.push((f.key, f.record_seq, Source::Open(i)));
            }
        }
        sort_in_output_order(&mut order, |at| {
            let (key, seq, _) = &rest[at as usize];
            (*key, *seq)
        });
        let mut swept: Vec<Option<FlowRecord>> = swept.into_iter().map(Some).collect();
        let chunk = chunk.max(1);
        let mut out = Vec::with_capacity(chunk.min(order.len()));
        for (n, &(due, start, at)) in order.iter().enumerate() {
            if let Some(&(_, _, ahead)) = order.get(n + AHEAD)
                && let (_, _, Source::Open(j)) = rest[ahead as usize]
            {
                prefetch_object(self.slots.slot(j));
            }
            let (flow_key, seq, source) = &rest[at as usize];
            let key = (due, start, *flow_key, *seq);
            match *source {
                Source::Swept(k) => out.extend(swept[k].take()),
                Source::Open(i) => {
                    let f = self.slots.take(i).expect("ordered slots are occupied");
                    let reason = if f.class() == CLASS_CLOSING {
                        EndReason::EndOfFlowDetected
                    } else {
                        EndReason::ForcedEnd
                    };
                    self.record_end(i, &f, reason, clock_ns, &mut out);
                    debug_assert_eq!(
                        out.last().map(FlowRecord::order_key),
                        Some(key),
                        "the record sorts where its flow was sorted"
                    );
                }
            }
            if out.len() >= chunk && !emit(std::mem::replace(&mut out, Vec::with_capacity(chunk))) {
                self.clear_flows();
                return;
            }
        }
        self.clear_flows();
        if !out.is_empty() {
            emit(out);
        }
    }

    /// Drops every open flow, without records, and empties the index and
    /// the timer lists: what is left after [`flush_sorted`](Self::flush_sorted)
    /// took the flows with records out of their slots.
    fn clear_flows(&mut self) {
        self.slots = Slab::with_limit(self.config.max_flows);
        self.index = SlotIndex::new();
        self.free = Vec::new();
        self.idle_links = Vec::new();
        self.active_links = Vec::new();
        self.idle_lists = [List::EMPTY; CLASSES];
        self.active_list = List::EMPTY;
        self.extras.clear();
        self.extras.shrink_to_fit();
    }

    #[inline]
    fn flow(&self, i: u32) -> &Flow {
        self.slots
            .get(i)
            .expect("timer lists only hold occupied slots")
    }

    #[inline]
    fn flow_mut(&mut self, i: u32) -> &mut Flow {
        self.slots
            .get_mut(i)
            .expect("the index only holds occupied slots")
    }

    /// Ends or splits flow `i` if it became due before this packet; returns
    /// the slot to update, or `None` if a new flow must start.
    #[inline(always)]
    fn check_due_on_arrival(
        &mut self,
        i: u32,
        new_syn: bool,
        clock: u64,
        out: &mut Vec<FlowRecord>,
    ) -> Option<u32> {
        let f = self.flow(i);
        // An active timeout that came first gives its record first (as
        // `advance` would have, had the clock stepped there).
        let active = self.config.timeouts.active_ns;
        if active > 0 && f.in_active {
            let active_due = f.record_start_clock.saturating_add(active);
            let end_due = if f.class() == CLASS_CLOSING {
                f.tcp.closed_at()
            } else {
                f.last_clock
            }
            .saturating_add(self.idle_ns[f.class()]);
            if active_due <= clock && active_due < end_due {
                self.emit_active(i, active_due, out);
            }
        }
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
            if new_syn {
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

    /// Opens a flow for `key`, whose first packet is described by
    /// `opening`, at `ts_ns`; returns its slot.
    #[inline]
    fn insert(
        &mut self,
        key: FlowKey,
        hash: u64,
        opening: &impl Opener,
        ifindex: u32,
        ts_ns: u64,
        clock_ns: u64,
    ) -> u32 {
        let from_a = opening.sent_by_a();
        let (initiator_is_a, role) = self.judge(&key, opening);
        let class = CLASS_NEW
            + match key.protocol {
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
            tcp: TcpTiming::new(opening.tcp_flags(), from_a == initiator_is_a),
            record_seq: 0,
            class: class as u8,
            role,
            initiator_is_a,
            in_active: false,
            ifindex,
            mac: match (ifindex, from_a == initiator_is_a) {
                (0, _) => [0; 6],
                (_, true) => opening.macs().0,
                (_, false) => opening.macs().1,
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

    /// The key of packet `p` as this table keeps flows apart
    /// ([`FlowConfig::interfaces`]), and whether endpoint `a` sent it.
    #[inline(always)]
    fn key_of(&self, p: &PacketRepr) -> (FlowKey, bool) {
        let (mut key, from_a) = FlowKey::from_packet(p);
        if self.config.interfaces == InterfaceFlows::Separate && p.ifindex != 0 {
            key.scope = FlowKey::scoped_to_interface(key.scope, p.ifindex);
        }
        (key, from_a)
    }

    #[inline]
    fn update(&mut self, i: u32, p: &PacketRepr, from_a: bool, ts_ns: u64, clock_ns: u64) {
        let active_enabled = self.config.timeouts.active_ns > 0;
        let f = self.slots.get_mut(i).expect("updated slot is occupied");
        // Only with `InterfaceFlows::First`: otherwise the key holds the
        // interface.
        if p.ifindex != f.ifindex {
            self.stats.duplicates += u64::from(p.segments);
            return;
        }
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
            d.first = FirstPacket::of(p);
        }
        d.packets_delta += u64::from(p.segments);
        d.packets_total += u64::from(p.segments);
        d.bytes_delta += u64::from(p.ip_bytes);
        d.bytes_total += u64::from(p.ip_bytes);
        f.tcp_flags[usize::from(!forward)] |= p.tcp_flags;
        f.last_clock = clock_ns;
        let rev_flags = f.tcp_flags[1];
        let closing_now = f.closes_now(CLASS_CLOSING as u8);
        if f.key.protocol == 6 {
            // The initiator's ACK after the responder's SYN and ACK
            // completes the handshake.
            let established =
                forward && p.tcp_flags & (SYN | ACK) == ACK && rev_flags & (SYN | ACK) == SYN | ACK;
            f.tcp
                .observe(p, forward, ts_ns, f.flow_start_ns, established);
        }
        let r = Self::mark(f, closing_now, active_enabled, clock_ns);
        self.relink(i, r, clock_ns, clock_ns);
    }

    /// After flow `f` took traffic at `clock_ns`: marks it closing if it
    /// has just closed, or moves it to its protocol's class if it has just
    /// got going, and returns what [`relink`](Self::relink) needs. Takes the
    /// flow the caller holds, so that the packet path looks its slot up once.
    #[inline(always)]
    fn mark(f: &mut Flow, closing_now: bool, active_enabled: bool, clock_ns: u64) -> Relink {
        let class = f.class();
        let to = if closing_now {
            f.tcp.close(clock_ns);
            CLASS_CLOSING
        } else if class >= CLASS_NEW && f.got_going() {
            class - CLASS_NEW
        } else {
            class
        };
        f.class = to as u8;
        Relink {
            class,
            to,
            needs_active: active_enabled && !f.in_active,
        }
    }

    /// Moves flow `i` to the back of its idle list, or to the back of its
    /// new one if it has just closed or got going, and onto the active list
    /// if it is not there, with its active timeout running from
    /// `record_clock_ns` (when the traffic began).
    #[inline(always)]
    fn relink(&mut self, i: u32, r: Relink, record_clock_ns: u64, clock_ns: u64) {
        if r.to != r.class {
            self.idle_lists[r.class].unlink(&mut self.idle_links, i);
            self.idle_lists[r.to].push_back(&mut self.idle_links, i);
        } else if r.class != CLASS_CLOSING {
            // Most recently seen goes last.
            self.idle_lists[r.class].move_to_back(&mut self.idle_links, i);
        }
        if r.needs_active {
            let mut from = record_clock_ns;
            let tail = self.active_list.tail;
            if from < clock_ns && tail != NIL {
                // Not before the list's last entry: the list stays in
                // due order (flow observations only; packets come in clock
                // order).
                from = from.max(self.flow(tail).record_start_clock);
            }
            let f = self.flow_mut(i);
            f.in_active = true;
            f.record_start_clock = from;
            self.active_list.push_back(&mut self.active_links, i);
        }
    }

    /// Before a new flow: at `--max-flows`, ends what is due, and if the
    /// table is still full, one more flow (see [`evict`](Self::evict)).
    #[inline]
    fn make_room(&mut self, clock_ns: u64, out: &mut Vec<FlowRecord>) {
        if self.config.max_flows > 0 && self.index.len() >= self.config.max_flows {
            self.advance(clock_ns, out);
            if self.index.len() >= self.config.max_flows {
                self.evict(clock_ns, out);
            }
        }
    }

    /// Ends the least recently seen flow that has not got going, or if
    /// every flow has, the least recently seen flow, with
    /// `lack_of_resources`. A flood of new flows (a SYN flood, a scan) then
    /// pushes out its own kind, not the connections that carry traffic.
    fn evict(&mut self, clock_ns: u64, out: &mut Vec<FlowRecord>) {
        let least_recent = |classes: std::ops::Range<usize>| {
            let mut victim: Option<(u64, u32)> = None;
            for class in classes {
                let head = self.idle_lists[class].head;
                if head == NIL {
                    continue;
                }
                let last = self.flow(head).last_clock;
                if victim.is_none_or(|(v, _)| last < v) {
                    victim = Some((last, head));
                }
            }
            victim
        };
        let victim = least_recent(CLASS_NEW..CLASSES).or_else(|| least_recent(0..CLASSES));
        if let Some((_, i)) = victim {
            self.stats.evicted += 1;
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

    /// The last record of flow `f` (taken out of slot `i`), ended for
    /// `reason`; none when its packets were all reported by active-timeout
    /// records. Its tunnel state goes with it.
    fn record_end(
        &mut self,
        i: u32,
        f: &Flow,
        reason: EndReason,
        export_clock_ns: u64,
        out: &mut Vec<FlowRecord>,
    ) {
        let extra = if f.extra {
            self.extras.remove(&i)
        } else {
            None
        };
        if f.record_has_packets() {
            out.push(make_record(
                f,
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
    }

    fn finish(
        &mut self,
        i: u32,
        reason: EndReason,
        export_clock_ns: u64,
        out: &mut Vec<FlowRecord>,
    ) {
        let f = self.slots.take(i).expect("finished slot is occupied");
        self.record_end(i, &f, reason, export_clock_ns, out);
        self.idle_lists[f.class()].unlink(&mut self.idle_links, i);
        if f.in_active {
            self.active_list.unlink(&mut self.active_links, i);
        }
        self.index.remove(self.hasher.hash_one(f.key), i);
        self.free.push(i);
    }
}

#[cfg(test)]
mod tests;
