//! Capture sources and the one loop that drives any of them into a
//! [`Pipeline`].
//!
//! A [`CaptureSource`] is whatever delivers traffic: a capture file
//! (`capture_pcap`), AF_PACKET rings (`capture_afpacket`), eBPF maps
//! (`capture_ebpf`). Each [`poll`](CaptureSource::poll) hands what it has
//! now to an [`Input`]: frames, which are decoded and metered packet by
//! packet, or [`FlowObservation`]s, flows already counted elsewhere (in the
//! kernel). [`drive`] is the loop every user of a source runs (the binary,
//! the benches): it decodes and counts frames, pushes packets and
//! observations into the pipeline, moves a live capture's clock with the
//! wall clock, publishes its counters into the [`Registry`], and stops at
//! the end of the input, on a stop flag, or when the pipeline's consumer has
//! gone.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::net::{IpAddr, Ipv4Addr};

use crate::bpf::FrameFilter;
use crate::decode::reassembly::{HeldFrame, Offered, Reassembler};
use crate::decode::{Decoder, Fragment, LinkType, PacketRepr, Stop};
use crate::flow::observation::FlowObservation;
use crate::pipeline::Pipeline;
use crate::registry::{DecodeCounts, Registry};

/// A GSO/GRO super-frame's segmentation: the frame stands for several
/// packets on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segmentation {
    /// The transport the kernel segments: 6 (TCP) or 17 (UDP).
    pub transport: u8,
    /// Payload bytes per segment.
    pub segment_size: u16,
}

/// One captured frame, borrowed from the source.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Link type (`LINKTYPE_*`) of `data`.
    pub link_type: u32,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The frame's length on the wire (more than `data` if it was cut).
    pub wire_len: u32,
    /// An 802.1Q/802.1ad tag the kernel took out of the frame, as (TPID,
    /// TCI): the capture filter sees it back in place.
    pub vlan: Option<(u16, u16)>,
    /// The capture filter was already applied to this frame (in the
    /// kernel): it is not applied again.
    pub prefiltered: bool,
    /// The interface it was captured on (0: unknown, as in files).
    pub ifindex: u32,
    /// Set for a super-frame that stands for several wire packets.
    pub segmentation: Option<Segmentation>,
}

/// What a source delivers into: the capture loop.
pub trait Input {
    /// Takes one frame. `Break` means stop: the consumer has gone.
    fn frame(&mut self, frame: &Frame<'_>) -> ControlFlow<()>;
    /// Takes one flow observation. `Break` means stop.
    fn flow(&mut self, observation: FlowObservation) -> ControlFlow<()>;
    /// Says that interface `ifindex` is no longer captured (it went away):
    /// its open flows end now. `Break` means stop.
    fn interface_gone(&mut self, ifindex: u32) -> ControlFlow<()> {
        let _ = ifindex;
        ControlFlow::Continue(())
    }
}

/// The outcome of one [`CaptureSource::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Delivered what it had; call again.
    Ready,
    /// Nothing is ready now and the next poll may block (a quiet pipe or
    /// interface): what is due should be released first.
    Idle,
    /// The input has ended.
    End,
}

/// Which clock times flows out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Packet timestamps only: the run is deterministic (capture files).
    Packets,
    /// The wall clock too, so that flows time out while nothing arrives
    /// (live capture).
    Wall,
}

/// A source of frames or flow observations.
pub trait CaptureSource {
    /// What ends a source early (a damaged file, every interface gone).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Delivers what is available now into `input`, a bounded amount at a
    /// time (so that the loop can check its stop flag), waiting at most
    /// about 100 ms when nothing is.
    ///
    /// # Errors
    /// The source cannot go on.
    fn poll<I: Input>(&mut self, input: &mut I) -> Result<Poll, Self::Error>;

    /// Which clock the source's flows follow.
    fn clock(&self) -> Clock;

    /// How late the source may hand on a flow's traffic after it happened
    /// (with [`Clock::Wall`]): the flow table's clock stays this far behind
    /// the wall clock, so that it does not time out a flow whose latest
    /// counts are still to come. Zero for sources of packets as they
    /// arrive.
    fn report_delay(&self) -> Duration {
        Duration::ZERO
    }

    /// Publishes the source's own counters (kernel ring statistics, reader
    /// problems) into the slots it registered; called by [`drive`] now and
    /// then and at the end.
    fn publish(&mut self) {}

    /// Hands on what the source still holds when the capture stops (a
    /// signal, or the end of the input): flows a kernel program counted
    /// since they were last read. Called once by [`drive`], unless the
    /// pipeline's consumer has gone.
    ///
    /// # Errors
    /// The source cannot be read.
    fn finish<I: Input>(&mut self, input: &mut I) -> Result<(), Self::Error> {
        let _ = input;
        Ok(())
    }
}

/// How [`drive`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The input ended.
    EndOfInput,
    /// The stop flag was set.
    Stopped,
    /// The pipeline's consumer stopped; it reports why.
    OutputClosed,
}

/// How often a wall-clock source's pipeline is synced and counters are
/// published.
const TICK: Duration = Duration::from_millis(100);

/// The capture loop's state: decodes frames into the pipeline.
struct Driver<'a> {
    decoder: &'a Decoder,
    /// The capture filter, if any.
    filter: Option<&'a FrameFilter>,
    /// A frame with its VLAN tag put back, for the filter.
    retagged: Vec<u8>,
    pipeline: &'a mut Pipeline,
    counts: DecodeCounts,
    /// The pipeline's consumer has stopped.
    closed: bool,
    /// The packet being decoded, in place.
    packet: PacketRepr,
    /// Fragmented outer packets held until their tunnel can be opened.
    reassembler: Reassembler,
    /// When the reassembler next gives a datagram up (`u64::MAX`: holds
    /// none), so that the packet path checks one number.
    reassembly_deadline: u64,
}

impl Input for Driver<'_> {
    // Always: each source's poll loop calls it once per frame, and a call
    // there costs a copy of the decoded packet's context (seen in `engine`,
    // where the heuristics left it out of line).
    #[inline(always)]
    fn frame(&mut self, frame: &Frame<'_>) -> ControlFlow<()> {
        if frame.ts_ns >= self.reassembly_deadline {
            self.expire_fragments(frame.ts_ns)?;
        }
        self.counts.frames += 1;
        if let Some(filter) = self.filter
            && !frame.prefiltered
            && !self.passes(filter, frame)
        {
            self.counts.filtered += 1;
            return ControlFlow::Continue(());
        }
        let c = &mut self.counts;
        let link = LinkType(frame.link_type);
        let packet = &mut self.packet;
        match self
            .decoder
            .decode_into(link, frame.data, frame.ifindex, packet)
        {
            Ok(()) => {
                c.decoded += 1;
                if packet.extra.is_some() {
                    c.decoded_extra(packet);
                }
                if let Some(s) = frame.segmentation {
                    count_segments(packet, s, c);
                }
                if packet.fragment != Fragment::Whole {
                    return self.fragment(frame);
                }
                return self.push_packet(frame.ts_ns);
            }
            Err(Stop::Skip(reason)) => c.skip(reason, frame.link_type),
            Err(Stop::Err(e)) => c.malformed(e),
        }
        ControlFlow::Continue(())
    }

    fn interface_gone(&mut self, ifindex: u32) -> ControlFlow<()> {
        match self.pipeline.end_interface(ifindex) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => {
                self.closed = true;
                ControlFlow::Break(())
            }
        }
    }

    fn flow(&mut self, observation: FlowObservation) -> ControlFlow<()> {
        self.counts.flow_observations += 1;
        match self.pipeline.push_flow(observation) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => {
                self.closed = true;
                ControlFlow::Break(())
            }
        }
    }
}

impl Driver<'_> {
    /// Whether `frame` passes `filter`, with the VLAN tag the kernel took
    /// out of it put back (as a capture file has it).
    #[inline]
    fn passes(&mut self, filter: &FrameFilter, frame: &Frame<'_>) -> bool {
        let wire_len = frame.wire_len;
        match frame.vlan {
            None => filter.matches(frame.link_type, frame.data, wire_len),
            Some(tag) => {
                retag(&mut self.retagged, frame.data, tag);
                filter.matches(frame.link_type, &self.retagged, wire_len.saturating_add(4))
            }
        }
    }

    /// Pushes the packet decoded in place, captured at `ts_ns`.
    #[inline(always)]
    fn push_packet(&mut self, ts_ns: u64) -> ControlFlow<()> {
        // One copy, from the packet decoded in place into the batch; the
        // next decode overwrites it (and drops its `extra`, which the copy
        // shares no more: `take` leaves `None`).
        let copy = PacketRepr {
            extra: self.packet.extra.take(),
            ..self.packet
        };
        self.push(copy, ts_ns)
    }

    /// Pushes `packet`, captured at `ts_ns`.
    #[inline(always)]
    fn push(&mut self, packet: PacketRepr, ts_ns: u64) -> ControlFlow<()> {
        if self.pipeline.push(packet, ts_ns).is_err() {
            self.closed = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// A fragment (decoded in place): held for reassembly if it may carry a
    /// tunnel, else pushed as it is. Out of line: fragments are rare.
    #[cold]
    #[inline(never)]
    fn fragment(&mut self, frame: &Frame<'_>) -> ControlFlow<()> {
        let mut released = Vec::new();
        let offered = self.reassembler.offer(
            &self.decoder.tunnel_ports,
            &self.packet,
            frame.link_type,
            frame.data,
            frame.ts_ns,
            frame.ifindex,
            &mut released,
        );
        self.reassembly_deadline = self.reassembler.next_deadline();
        // What was given up is older than this fragment and goes first; it
        // is decoded into the same packet, so this one is kept aside.
        let this = matches!(offered, Offered::Pass).then(|| PacketRepr {
            extra: self.packet.extra.take(),
            ..self.packet
        });
        let mut flow = self.push_released(released);
        match offered {
            Offered::Pass => {
                if let Some(p) = this
                    && flow.is_continue()
                {
                    flow = self.push(p, frame.ts_ns);
                }
            }
            Offered::Held => {}
            Offered::Whole {
                frame: whole,
                link_type,
                fragments,
                extra_bytes,
                ts_ns,
                ifindex,
            } => {
                if flow.is_break() {
                    return flow;
                }
                let c = &mut self.counts;
                c.reassembled += 1;
                c.reassembled_fragments += u64::from(fragments);
                let p = &mut self.packet;
                if self
                    .decoder
                    .decode_into(LinkType(link_type), &whole, ifindex, p)
                    .is_err()
                {
                    return ControlFlow::Continue(());
                }
                if p.extra.is_some() {
                    c.decoded_extra(p);
                }
                // Each fragment was a packet on the wire, and every byte
                // of their IP headers beyond the whole datagram's is
                // overhead of the tunnel (or of the flow, if none opened).
                p.segments = fragments;
                match p.extra.as_mut().map(|x| &mut x.encap) {
                    Some(e) if e.is_tunnelled() => {
                        if e.tunnel.is_some() {
                            e.tunnel_bytes = e.tunnel_bytes.saturating_add(extra_bytes);
                        } else {
                            e.ipip_bytes = e.ipip_bytes.saturating_add(extra_bytes);
                        }
                    }
                    _ => p.ip_bytes = p.ip_bytes.saturating_add(extra_bytes),
                }
                flow = self.push_packet(ts_ns);
            }
        }
        flow
    }

    /// Gives up the datagrams due at `now`.
    #[cold]
    #[inline(never)]
    fn expire_fragments(&mut self, now: u64) -> ControlFlow<()> {
        let mut released = Vec::new();
        self.reassembler.expire(now, &mut released);
        self.reassembly_deadline = self.reassembler.next_deadline();
        self.push_released(released)
    }

    /// Gives up every datagram held (the end of the input).
    fn release_fragments(&mut self) {
        let mut released = Vec::new();
        self.reassembler.release_all(&mut released);
        self.reassembly_deadline = u64::MAX;
        let _ = self.push_released(released);
    }

    /// Pushes fragments given up, each as it is, as if never held (they
    /// were counted as decoded when they came).
    fn push_released(&mut self, released: Vec<HeldFrame>) -> ControlFlow<()> {
        self.counts.reassembly_given_up += released.len() as u64;
        for held in released {
            let decoded = self.decoder.decode_into(
                LinkType(held.link_type),
                &held.data,
                held.ifindex,
                &mut self.packet,
            );
            if decoded.is_ok() {
                self.push_packet(held.ts_ns)?;
            }
        }
        ControlFlow::Continue(())
    }
}

/// `data` (an Ethernet frame) with the tag `(tpid, tci)` put back after
/// its addresses, into `out`.
fn retag(out: &mut Vec<u8>, data: &[u8], (tpid, tci): (u16, u16)) {
    out.clear();
    let at = data.len().min(12);
    out.extend_from_slice(&data[..at]);
    out.extend_from_slice(&tpid.to_be_bytes());
    out.extend_from_slice(&tci.to_be_bytes());
    out.extend_from_slice(&data[at..]);
}

/// Counts a super-frame as the segments the wire carries, where the GSO
/// type agrees with the transport the decoder found. Out of line: only
/// live capture with offloads on has super-frames.
#[cold]
#[inline(never)]
fn count_segments(packet: &mut PacketRepr, s: Segmentation, c: &mut DecodeCounts) {
    match (s.transport == packet.protocol)
        .then(|| packet.count_segments(s.segment_size))
        .flatten()
    {
        Some(segments) => {
            c.super_frames += 1;
            c.segments += u64::from(segments);
        }
        None => c.super_frames_unsplit += 1,
    }
}

/// Now, in nanoseconds since the Unix epoch (the kernel's packet clock).
pub fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Drives `source` into `pipeline` until the input ends, `stop` is set, or
/// the pipeline's consumer stops. Frames that do not pass `filter` (if
/// given) are counted and left out; the others are decoded with `decoder`; the
/// loop's counters go to `registry` after every poll, and `tick` is called
/// after each (for a progress line). It does not finish the pipeline.
///
/// # Errors
/// The source failed; what was read before still went into the pipeline.
pub fn drive<S: CaptureSource>(
    source: &mut S,
    decoder: &Decoder,
    filter: Option<&FrameFilter>,
    pipeline: &mut Pipeline,
    registry: &Registry,
    stop: &AtomicBool,
    mut tick: impl FnMut(),
) -> Result<Ended, S::Error> {
    let wall = source.clock() == Clock::Wall;
    let delay_ns = u64::try_from(source.report_delay().as_nanos()).unwrap_or(u64::MAX);
    let mut driver = Driver {
        decoder,
        filter,
        retagged: Vec::new(),
        pipeline,
        counts: DecodeCounts::default(),
        closed: false,
        packet: PacketRepr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            0,
        ),
        reassembler: Reassembler::default(),
        reassembly_deadline: u64::MAX,
    };
    let mut last_tick = Instant::now();
    let ended = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(Ended::Stopped);
        }
        let polled = source.poll(&mut driver);
        registry.publish_decode(&driver.counts);
        let mut closed = false;
        match polled {
            Ok(Poll::Ready) => {}
            Ok(Poll::Idle) => {
                closed = driver.pipeline.sync().is_err();
                // Before the source waits for more: its counters are
                // current while it waits (a pipe that is quiet).
                source.publish();
            }
            Ok(Poll::End) => break Ok(Ended::EndOfInput),
            Err(e) => break Err(e),
        }
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            if wall {
                driver
                    .pipeline
                    .advance_clock(wall_clock_ns().saturating_sub(delay_ns));
                closed |= driver.pipeline.sync().is_err();
            }
            source.publish();
            tick();
        }
        if closed || driver.closed {
            break Ok(Ended::OutputClosed);
        }
    };
    let ended = match ended {
        Ok(how) if how != Ended::OutputClosed && !driver.closed => {
            source.finish(&mut driver).map(|()| how)
        }
        other => other,
    };
    // Fragments still waiting for the rest of their datagram count as
    // they are.
    if !driver.closed {
        driver.release_fragments();
    }
    source.publish();
    registry.publish_decode(&driver.counts);
    ended
}
