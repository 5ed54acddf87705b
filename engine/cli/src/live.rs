//! Live capture: `engine -i IFACE` on AF_PACKET TPACKET_V3 rings.
//!
//! Each interface gets one ring per flow worker, joined in a fanout group
//! whose program splits the traffic among them by the pair of IP addresses
//! (so a flow, fragments included, stays on one ring in arrival order;
//! ready for a capture thread per ring, while today one thread drains them
//! all). The capture thread decodes each frame, counts a GSO/GRO
//! super-frame as its wire segments, and hands it to the pipeline, which
//! shards packets by their addresses exactly as in pcap mode. The capture
//! clock follows the wall clock, so flows time out and active timeouts
//! fire while no packet arrives. A second thread keeps the host's
//! addresses and listening sockets current for span kinds (`host`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use capture_afpacket::{Gso, GsoKind, Ring, RingConfig, RingError, RingStats, wait_any};
use engine::decode::Decoder;
use engine::{Decoded, LinkType, PacketRepr, Pipeline};
use exporter::span::InterfaceNames;

use crate::summary::DecodeCounters;

/// The rings of every interface being captured.
pub struct Live {
    rings: Vec<Ring>,
    /// Interfaces asked for, in order, with the sum of their rings' kernel
    /// counters (kept when an interface goes away).
    interfaces: Vec<(String, RingStats)>,
    /// Bytes on the wire of the frames read.
    pub bytes: u64,
}

/// How a live capture ended.
pub enum LiveEnd {
    /// Stopped by a signal.
    Stopped,
    /// Every interface went away.
    NoInterfaceLeft,
}

impl Live {
    /// Opens `workers` rings on each interface. An interface that does not
    /// exist or cannot be opened is a warning, and the others are captured;
    /// missing privileges, or no interface at all, is an error.
    ///
    /// # Errors
    /// No CAP_NET_RAW, or none of the interfaces could be opened.
    pub fn open(
        interfaces: &[String],
        workers: usize,
        block_size: u32,
        block_count: u32,
    ) -> anyhow::Result<Live> {
        let mut live = Live {
            rings: Vec::new(),
            interfaces: Vec::new(),
            bytes: 0,
        };
        let base = std::process::id() as u16;
        for (k, interface) in interfaces.iter().enumerate() {
            let config = RingConfig {
                block_size,
                block_count,
                // Fanout group ids are per network namespace: one per
                // interface of this process.
                fanout_group: Some(base.wrapping_add(k as u16)),
                ..RingConfig::default()
            };
            let mut opened = Vec::new();
            let mut failed = None;
            for _ in 0..workers {
                match Ring::open(interface, &config) {
                    Ok(r) => opened.push(r),
                    Err(e @ (RingError::NoPrivilege { .. } | RingError::BadConfig(_))) => {
                        return Err(anyhow::anyhow!(e));
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                Some(e) => eprintln!("engine: warning: not capturing on {interface:?}: {e}"),
                None => {
                    live.rings.extend(opened);
                    live.interfaces
                        .push((interface.clone(), RingStats::default()));
                }
            }
        }
        if live.rings.is_empty() {
            return Err(anyhow::anyhow!(
                "no interface to capture on (-i): every one given failed to open"
            ));
        }
        Ok(live)
    }

    /// The captured interfaces' names by index, for `network.interface.name`.
    pub fn interface_names(&self) -> InterfaceNames {
        let mut names: Vec<(u32, String)> = self
            .rings
            .iter()
            .map(|r| (r.ifindex(), r.interface().to_owned()))
            .collect();
        names.dedup();
        InterfaceNames::new(names)
    }

    /// The interfaces captured, comma-separated.
    pub fn interface_list(&self) -> String {
        let names: Vec<&str> = self.interfaces.iter().map(|(n, _)| n.as_str()).collect();
        names.join(", ")
    }

    /// What the summary and progress line call this input.
    pub fn name(&self) -> String {
        format!("live capture on {}", self.interface_list())
    }

    /// Rings still open.
    pub fn ring_count(&self) -> usize {
        self.rings.len()
    }

    /// The interfaces captured, each with its kernel counters since the
    /// start: packets the kernel passed, drops (ring full) and ring freezes.
    pub fn stats(&mut self) -> Vec<(String, RingStats)> {
        let mut all = self.interfaces.clone();
        for ring in &mut self.rings {
            add_stats(&mut all, ring);
        }
        all
    }

    /// Closes the rings of `interface` (gone away), keeping their counters.
    fn retire(&mut self, interface: &str) {
        let (gone, keep): (Vec<Ring>, Vec<Ring>) = std::mem::take(&mut self.rings)
            .into_iter()
            .partition(|r| r.interface() == interface);
        self.rings = keep;
        for mut ring in gone {
            add_stats(&mut self.interfaces, &mut ring);
        }
    }

    /// Captures until `stop` is set or every interface is gone, pushing
    /// every decoded packet into `pipeline`.
    pub fn run(
        &mut self,
        decoder: &Decoder,
        pipeline: &mut Pipeline,
        stop: &AtomicBool,
        counters: &mut DecodeCounters,
        mut progress: impl FnMut(&DecodeCounters, u64),
    ) -> LiveEnd {
        let mut last_tick = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                return LiveEnd::Stopped;
            }
            match wait_any(&self.rings, Duration::from_millis(100)) {
                Ok(Some((i, Some(e)))) => {
                    let name = self.rings[i].interface().to_owned();
                    eprintln!("engine: warning: capture on {name:?} stopped: {e}");
                    self.retire(&name);
                    if self.rings.is_empty() {
                        return LiveEnd::NoInterfaceLeft;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("engine: warning: waiting for packets failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            for ring in &mut self.rings {
                while let Some(block) = ring.next_block() {
                    for p in block.packets() {
                        counters.frames += 1;
                        self.bytes += u64::from(p.wire_len);
                        let link_type = p.link_type();
                        match decoder.decode(LinkType(link_type), p.data) {
                            Decoded::Ip(mut packet) => {
                                counters.decoded(&packet);
                                packet.ifindex = p.ifindex;
                                if let Some(gso) = p.gso {
                                    count_segments(&mut packet, gso, counters);
                                }
                                if pipeline.push(packet, p.ts_ns).is_err() {
                                    // The output side stopped; it reports why.
                                    return LiveEnd::Stopped;
                                }
                            }
                            Decoded::Skipped(reason) => counters.skip(reason, link_type),
                            Decoded::Malformed(e) => counters.malformed(e),
                        }
                    }
                }
            }
            if last_tick.elapsed() >= Duration::from_millis(100) {
                last_tick = Instant::now();
                pipeline.advance_clock(wall_clock_ns());
                if pipeline.sync().is_err() {
                    return LiveEnd::Stopped;
                }
                progress(counters, self.bytes);
            }
        }
    }
}

/// Counts a super-frame as the segments the wire carries, where the GSO
/// type agrees with the transport the decoder found.
fn count_segments(packet: &mut PacketRepr, gso: Gso, counters: &mut DecodeCounters) {
    let agrees = matches!(
        (gso.kind, packet.protocol),
        (GsoKind::Tcp, 6) | (GsoKind::Udp, 17)
    );
    match agrees
        .then(|| packet.count_segments(gso.segment_size))
        .flatten()
    {
        Some(segments) => {
            counters.super_frames += 1;
            counters.segments += u64::from(segments);
        }
        None => counters.super_frames_unsplit += 1,
    }
}

/// Adds `ring`'s counters since it was opened to its interface's in `all`.
fn add_stats(all: &mut [(String, RingStats)], ring: &mut Ring) {
    let Ok(s) = ring.stats() else { return };
    if let Some((_, total)) = all.iter_mut().find(|(n, _)| n == ring.interface()) {
        total.packets += s.packets;
        total.drops += s.drops;
        total.freezes += s.freezes;
    }
}

/// Now, in nanoseconds since the Unix epoch (the kernel's packet clock).
pub fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
