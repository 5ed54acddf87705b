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

use crate::decode::{Decoder, LinkType, PacketRepr, Stop};
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

    /// Publishes the source's own counters (kernel ring statistics, reader
    /// problems) into the slots it registered; called by [`drive`] now and
    /// then and at the end.
    fn publish(&mut self) {}
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
    pipeline: &'a mut Pipeline,
    counts: DecodeCounts,
    /// The pipeline's consumer has stopped.
    closed: bool,
    /// The packet being decoded, in place.
    packet: PacketRepr,
}

impl Input for Driver<'_> {
    // Always: each source's poll loop calls it once per frame, and a call
    // there costs a copy of the decoded packet's context (seen in `engine`,
    // where the heuristics left it out of line).
    #[inline(always)]
    fn frame(&mut self, frame: &Frame<'_>) -> ControlFlow<()> {
        let c = &mut self.counts;
        c.frames += 1;
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
                // One copy, from the packet decoded in place into the batch;
                // the next decode overwrites it (and drops its `extra`,
                // which the copy shares no more: `take` leaves `None`).
                let copy = PacketRepr {
                    extra: packet.extra.take(),
                    ..*packet
                };
                if self.pipeline.push(copy, frame.ts_ns).is_err() {
                    self.closed = true;
                    return ControlFlow::Break(());
                }
            }
            Err(Stop::Skip(reason)) => c.skip(reason, frame.link_type),
            Err(Stop::Err(e)) => c.malformed(e),
        }
        ControlFlow::Continue(())
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
/// the pipeline's consumer stops. Frames are decoded with `decoder`; the
/// loop's counters go to `registry` after every poll, and `tick` is called
/// after each (for a progress line). It does not finish the pipeline.
///
/// # Errors
/// The source failed; what was read before still went into the pipeline.
pub fn drive<S: CaptureSource>(
    source: &mut S,
    decoder: &Decoder,
    pipeline: &mut Pipeline,
    registry: &Registry,
    stop: &AtomicBool,
    mut tick: impl FnMut(),
) -> Result<Ended, S::Error> {
    let wall = source.clock() == Clock::Wall;
    let mut driver = Driver {
        decoder,
        pipeline,
        counts: DecodeCounts::default(),
        closed: false,
        packet: PacketRepr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            0,
        ),
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
            Ok(Poll::Idle) => closed = driver.pipeline.sync().is_err(),
            Ok(Poll::End) => break Ok(Ended::EndOfInput),
            Err(e) => break Err(e),
        }
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            if wall {
                driver.pipeline.advance_clock(wall_clock_ns());
                closed |= driver.pipeline.sync().is_err();
            }
            source.publish();
            tick();
        }
        if closed || driver.closed {
            break Ok(Ended::OutputClosed);
        }
    };
    source.publish();
    registry.publish_decode(&driver.counts);
    ended
}
