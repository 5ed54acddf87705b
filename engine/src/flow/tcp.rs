//! TCP timing from a passive observation point: the handshake's two halves
//! and, for each request/response turn, the gap between the end of the
//! request and the start of the response. README, "TCP latency", defines
//! the metrics; this module is that definition in code.
//!
//! With `h` = SYN → SYN/ACK and `c` = SYN/ACK → the initiator's ACK (both as
//! the observer sees them) and `g` = last new request segment → first new
//! response segment of a turn:
//! - `flow.tcp.handshake.latency` = `h`;
//! - `flow.tcp.rndtrip.latency` = mean `g` + `c` (the client's wait: the
//!   observer sees the request `c / 2` after the client sent it and the
//!   response `c / 2` before the client gets it);
//! - `flow.tcp.svc.latency` = mean `g` − `h` (the server's own time: `g`
//!   less the observer ↔ server round trip), 0 if negative;
//! - both jitters = the mean |difference| of consecutive `g`, as `h` and `c`
//!   are constants of the connection.
//!
//! Samples follow Karn's rule: a handshake whose SYN or SYN/ACK was sent
//! twice gives no `h` or `c`, and a turn in which a request segment was
//! retransmitted, filled a hole or arrived out of order gives no `g`.

use crate::decode::PacketRepr;
use crate::flow::observation::TcpSamples;
use crate::flow::record::TcpLatency;

/// TCP header flags, as [`PacketRepr::tcp_flags`] holds them.
pub(crate) const FIN: u16 = 0x01;
pub(crate) const SYN: u16 = 0x02;
pub(crate) const RST: u16 = 0x04;
pub(crate) const ACK: u16 = 0x10;

/// The flow's first packet was the initiator's SYN.
const SYN_FIRST: u16 = 1;
/// The initiator sent a SYN again before the SYN/ACK.
const SYN_AGAIN: u16 = 1 << 1;
/// A SYN/ACK was seen: both sides' sequence numbers are known.
const SYNACK: u16 = 1 << 2;
/// `synack_at` holds the SYN/ACK's time.
const SYNACK_AT: u16 = 1 << 3;
/// The responder sent a SYN/ACK again before the initiator's ACK.
const SYNACK_AGAIN: u16 = 1 << 4;
/// The initiator acknowledged the SYN/ACK.
const ESTABLISHED: u16 = 1 << 5;
/// `ack_after` holds `c`.
const ACK_AFTER: u16 = 1 << 6;
/// The initiator (client) sent the last new data: a request is under way.
const CLIENT_TALKS: u16 = 1 << 7;
/// The responder (server) sent the last new data.
const SERVER_TALKS: u16 = 1 << 8;
/// The request under way had a segment that was not next in sequence.
const TAINTED: u16 = 1 << 9;
/// `last_gap` holds a sample.
const HAS_LAST: u16 = 1 << 10;
/// This record's first sample was the flow's first: it has no jitter pair.
const UNPAIRED: u16 = 1 << 11;
/// The flow is closing: `mark` holds the clock at which it started to.
const CLOSED: u16 = 1 << 12;
/// The initiator's SYN was seen.
const SYN_SEEN: u16 = 1 << 13;

/// The TCP timing state of one flow: 56 bytes, in every flow slot.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TcpTiming {
    /// While open: the time of the last new request segment of the turn
    /// under way. Once closing ([`TcpTiming::close`]): the capture clock at
    /// which the flow started to close (turns have ended by then).
    mark: u64,
    /// This record's samples: sum of `g`.
    gap_sum_ns: u64,
    /// Sum of |`g` − previous `g`| over this record's samples that have a
    /// previous one (which may be in an earlier record).
    jitter_sum_ns: u64,
    /// The flow's latest `g`.
    last_gap_ns: u64,
    /// The next new sequence number of the initiator and of the responder.
    next_seq: [u32; 2],
    /// The SYN/ACK's time after the flow's first packet (`h` when the
    /// first packet was the SYN).
    synack_at_ns: u32,
    /// SYN/ACK → the initiator's ACK (`c`).
    ack_after_ns: u32,
    /// This record's samples of `g`.
    samples: u32,
    flags: u16,
}

impl TcpTiming {
    /// Starts the timing of a flow whose first packet has `tcp_flags`, sent
    /// by the initiator if `forward`; [`TcpTiming::observe`] then takes in
    /// that packet like every later one.
    pub(crate) fn new(tcp_flags: u16, forward: bool) -> TcpTiming {
        let mut t = TcpTiming::default();
        if forward && tcp_flags & (SYN | ACK) == SYN {
            t.flags |= SYN_FIRST;
        }
        t
    }

    fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Takes in packet `p`, sent by the initiator if `forward`, at `ts_ns`; the flow began at
    /// `flow_start_ns`. `established` says whether `p` completes the
    /// handshake (the initiator's ACK after the responder's SYN and ACK).
    #[inline]
    pub(crate) fn observe(
        &mut self,
        p: &PacketRepr,
        forward: bool,
        ts_ns: u64,
        flow_start_ns: u64,
        established: bool,
    ) {
        if self.has(CLOSED) {
            return;
        }
        let syn_ack = p.tcp_flags & (SYN | ACK);
        if syn_ack == SYN && forward {
            if self.has(SYN_SEEN) && !self.has(SYNACK) {
                self.flags |= SYN_AGAIN;
            }
            self.flags |= SYN_SEEN;
        } else if syn_ack == SYN | ACK && !forward {
            self.on_synack(p, ts_ns, flow_start_ns);
        } else if established && !self.has(ESTABLISHED) {
            self.flags |= ESTABLISHED;
            if self.has(SYNACK_AT) && !self.has(SYNACK_AGAIN) {
                let synack = flow_start_ns.saturating_add(u64::from(self.synack_at_ns));
                if let Some(c) = ts_ns.checked_sub(synack).and_then(fit) {
                    self.ack_after_ns = c;
                    self.flags |= ACK_AFTER;
                }
            }
        }
        if self.has(SYNACK)
            && let Some(len) = p.tcp_payload()
            && len > 0
        {
            self.on_data(p, len, forward, ts_ns);
        }
    }

    fn on_synack(&mut self, p: &PacketRepr, ts_ns: u64, flow_start_ns: u64) {
        if self.has(SYNACK) {
            if !self.has(ESTABLISHED) {
                self.flags |= SYNACK_AGAIN;
            }
            return;
        }
        self.flags |= SYNACK;
        // The SYN/ACK acknowledges the initiator's SYN: its ack is the
        // initiator's next sequence number, and its own SYN takes one.
        self.next_seq = [p.tcp_ack, p.tcp_seq.wrapping_add(1)];
        if let Some(at) = ts_ns.checked_sub(flow_start_ns).and_then(fit) {
            self.synack_at_ns = at;
            self.flags |= SYNACK_AT;
        }
    }

    fn on_data(&mut self, p: &PacketRepr, len: u32, forward: bool, ts_ns: u64) {
        let side = usize::from(!forward);
        let next = self.next_seq[side];
        // A SYN takes the sequence number before the data (fast open).
        let start = p.tcp_seq.wrapping_add(u32::from(p.tcp_flags & SYN != 0));
        let end = start.wrapping_add(len);
        // Serial-number comparison (RFC 1982): `end` is ahead of `next`.
        if (end.wrapping_sub(next) as i32) <= 0 {
            // Nothing new: a retransmission. One in a request spoils it.
            if forward && self.has(CLIENT_TALKS) {
                self.flags |= TAINTED;
            }
            return;
        }
        let in_order = start == next;
        self.next_seq[side] = end;
        if forward {
            if !self.has(CLIENT_TALKS) {
                self.flags = (self.flags & !(SERVER_TALKS | TAINTED)) | CLIENT_TALKS;
            }
            if !in_order {
                self.flags |= TAINTED;
            }
            self.mark = ts_ns;
            return;
        }
        // The response starts: a sample if the request was clean and the
        // response acknowledges all of it.
        if self.has(CLIENT_TALKS)
            && !self.has(TAINTED)
            && in_order
            && p.tcp_flags & ACK != 0
            && (p.tcp_ack.wrapping_sub(self.next_seq[0]) as i32) >= 0
            && let Some(gap) = ts_ns.checked_sub(self.mark)
        {
            self.add_sample(gap);
        }
        self.flags = (self.flags & !(CLIENT_TALKS | TAINTED)) | SERVER_TALKS;
    }

    fn add_sample(&mut self, gap: u64) {
        if self.has(HAS_LAST) {
            self.jitter_sum_ns = self
                .jitter_sum_ns
                .saturating_add(gap.abs_diff(self.last_gap_ns));
        } else if self.samples == 0 {
            self.flags |= UNPAIRED;
        }
        self.samples = self.samples.saturating_add(1);
        self.gap_sum_ns = self.gap_sum_ns.saturating_add(gap);
        self.last_gap_ns = gap;
        self.flags |= HAS_LAST;
    }

    /// Takes in the samples of a flow observation (flow-level input), which
    /// a kernel program computed by the same definition as
    /// [`observe`](Self::observe).
    pub(crate) fn merge(&mut self, s: &TcpSamples) {
        if self.has(CLOSED) {
            return;
        }
        if let Some(h) = s.handshake_ns
            && !self.has(SYNACK_AT)
        {
            self.synack_at_ns = h;
            self.flags |= SYN_FIRST | SYN_SEEN | SYNACK | SYNACK_AT;
        }
        if let Some(c) = s.ack_after_ns
            && !self.has(ACK_AFTER)
        {
            self.ack_after_ns = c;
            self.flags |= ACK_AFTER;
        }
        if s.established {
            self.flags |= ESTABLISHED;
        }
        if s.turns > 0 {
            if s.first_turn && self.samples == 0 {
                self.flags |= UNPAIRED;
            }
            self.samples = self.samples.saturating_add(s.turns);
            self.gap_sum_ns = self.gap_sum_ns.saturating_add(s.turn_sum_ns);
            self.jitter_sum_ns = self.jitter_sum_ns.saturating_add(s.jitter_sum_ns);
            self.flags |= HAS_LAST;
        }
    }

    /// Whether the handshake completed (the initiator's ACK of the SYN/ACK).
    pub(crate) fn established(&self) -> bool {
        self.has(ESTABLISHED)
    }

    /// Marks the flow closing at capture clock `clock_ns`; turns end here.
    pub(crate) fn close(&mut self, clock_ns: u64) {
        self.flags |= CLOSED;
        self.mark = clock_ns;
    }

    /// The clock passed to [`TcpTiming::close`].
    pub(crate) fn closed_at(&self) -> u64 {
        debug_assert!(self.has(CLOSED));
        self.mark
    }

    /// This record's metrics.
    pub(crate) fn record(&self) -> TcpLatency {
        let h = (self.has(SYN_FIRST) && !self.has(SYN_AGAIN) && self.has(SYNACK_AT))
            .then_some(u64::from(self.synack_at_ns));
        let c = self.has(ACK_AFTER).then_some(u64::from(self.ack_after_ns));
        let n = u64::from(self.samples);
        let pairs = n - u64::from(self.has(UNPAIRED));
        let mean = (n > 0).then(|| self.gap_sum_ns / n);
        let jitter = (pairs > 0).then(|| self.jitter_sum_ns / pairs);
        TcpLatency {
            handshake_ns: h,
            rndtrip_ns: mean.zip(c).map(|(g, c)| g.saturating_add(c)),
            rndtrip_jitter_ns: jitter.filter(|_| c.is_some()),
            svc_ns: mean.zip(h).map(|(g, h)| g.saturating_sub(h)),
            svc_jitter_ns: jitter.filter(|_| h.is_some()),
        }
    }

    /// Starts the next record: its samples start from none.
    pub(crate) fn reset_record(&mut self) {
        self.gap_sum_ns = 0;
        self.jitter_sum_ns = 0;
        self.samples = 0;
        self.flags &= !UNPAIRED;
    }
}

/// `ns` if it fits the 32-bit handshake fields (up to 4.29 s).
fn fit(ns: u64) -> Option<u32> {
    u32::try_from(ns).ok()
}
