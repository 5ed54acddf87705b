//! Live capture as an [`engine::CaptureSource`]: the rings of every
//! interface asked for, drained by the capture loop ([`engine::drive`]).
//!
//! Each interface gets one ring per flow worker, joined in a fanout group
//! whose program splits the traffic among them by the pair of IP addresses
//! (so a flow, fragments included, stays on one ring in arrival order;
//! ready for a capture thread per ring, while today one thread drains them
//! all). An interface that goes away is dropped with a warning once what
//! its rings still hold has been read (the kernel hands over the block
//! under way within its block timeout), and its counters are kept; the
//! capture ends when none is left. Packets the kernel passed that were never
//! read are counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::registry::{Registry, SourceCounts, SourceKind, SourceSlot};
use engine::source::{CaptureSource, Clock, Frame, Input, Poll, Segmentation};

use crate::{GsoKind, Ring, RingConfig, RingError, RingStats, wait_any};

/// A sink for one-line warnings (an interface that failed or went away).
pub type Warn = Arc<dyn Fn(&str) + Send + Sync>;

/// Why a live capture could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// A ring could not be opened for a reason every interface would meet.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// The rings would take more kernel memory than is allowed
    /// ([`check_ring_memory`](crate::check_ring_memory)).
    #[error("rings of {0}")]
    RingMemory(String),
    /// None of the interfaces given could be opened.
    #[error("no interface to capture on (-i): every one given failed to open")]
    NoInterface,
    /// Every interface went away (or failed); open flows can be flushed.
    #[error("every interface went away")]
    NoInterfaceLeft,
}

/// One interface being captured.
#[derive(Debug)]
struct Interface {
    name: String,
    /// The kernel counters of its rings that were closed.
    retired: RingStats,
    /// Bytes on the wire of the frames read.
    bytes: u64,
    /// Packets read from its rings.
    read: u64,
    /// It went away: until when to wait for what its rings still hold.
    closing: Option<Instant>,
    /// It went away (or its capture failed).
    gone: bool,
    slot: SourceSlot,
}

/// How long to wait for the rings of an interface that went away to give
/// up what they hold: many times the kernel's block timeout.
const DRAIN_TIME: Duration = Duration::from_millis(500);

/// The rings of every interface being captured.
pub struct LiveCapture {
    rings: Vec<Ring>,
    /// The index in `interfaces` of each ring's interface.
    owners: Vec<usize>,
    interfaces: Vec<Interface>,
    warn: Warn,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("rings", &self.rings.len())
            .field("interfaces", &self.interfaces)
            .finish()
    }
}

impl LiveCapture {
    /// Opens `workers` rings on each of `interfaces`, each interface in a
    /// fanout group of its own, and registers each interface's counters in
    /// `registry`. An interface that does not exist or cannot be opened is
    /// a warning and the others are captured.
    ///
    /// # Errors
    /// Missing privileges, a bad ring configuration or too much ring memory
    /// (which every interface would meet), or no interface could be opened.
    pub fn open(
        interfaces: &[String],
        workers: usize,
        ring: &RingConfig,
        registry: &Registry,
        warn: Warn,
    ) -> Result<LiveCapture, LiveError> {
        // Checked here too, not only by the binary: ring memory is kernel
        // memory no cgroup charges, whoever opens the rings.
        crate::check_ring_memory(
            ring.block_size,
            ring.block_count,
            interfaces.len().saturating_mul(workers),
        )
        .map_err(LiveError::RingMemory)?;
        let mut live = LiveCapture {
            rings: Vec::new(),
            owners: Vec::new(),
            interfaces: Vec::new(),
            warn,
        };
        let base = std::process::id() as u16;
        for (k, interface) in interfaces.iter().enumerate() {
            let config = RingConfig {
                // Fanout group ids are per network namespace: one per
                // interface of this process.
                fanout_group: Some(base.wrapping_add(k as u16)),
                ..ring.clone()
            };
            let mut opened = Vec::new();
            let mut failed = None;
            for _ in 0..workers {
                match Ring::open(interface, &config) {
                    Ok(r) => opened.push(r),
                    Err(e @ (RingError::NoPrivilege { .. } | RingError::BadConfig(_))) => {
                        return Err(e.into());
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                Some(e) => (live.warn)(&format!("not capturing on {interface:?}: {e}")),
                None => {
                    let at = live.interfaces.len();
                    live.owners.extend(opened.iter().map(|_| at));
                    live.rings.extend(opened);
                    live.interfaces.push(Interface {
                        name: interface.clone(),
                        retired: RingStats::default(),
                        bytes: 0,
                        read: 0,
                        closing: None,
                        gone: false,
                        slot: registry.source(interface, SourceKind::Interface),
                    });
                }
            }
        }
        if live.rings.is_empty() {
            return Err(LiveError::NoInterface);
        }
        Ok(live)
    }

    /// The captured interfaces' indexes and names.
    pub fn interface_names(&self) -> Vec<(u32, String)> {
        let mut names: Vec<(u32, String)> = self
            .rings
            .iter()
            .map(|r| (r.ifindex(), r.interface().to_owned()))
            .collect();
        names.dedup();
        names
    }

    /// The interfaces captured, comma-separated.
    pub fn interface_list(&self) -> String {
        let names: Vec<&str> = self.interfaces.iter().map(|i| i.name.as_str()).collect();
        names.join(", ")
    }

    /// Rings still open.
    pub fn ring_count(&self) -> usize {
        self.rings.len()
    }

    /// The kernel counters of interface `at` so far, closed rings
    /// included.
    fn totals(&mut self, at: usize) -> RingStats {
        let mut total = self.interfaces[at].retired;
        for (ring, owner) in self.rings.iter_mut().zip(&self.owners) {
            if *owner == at
                && let Ok(s) = ring.stats()
            {
                add(&mut total, &s);
            }
        }
        total
    }

    /// Packets the kernel passed to interface `at`'s rings (and did not
    /// drop) that have not been read: in the rings, or lost with closed
    /// ones.
    fn unread(&mut self, at: usize) -> u64 {
        let t = self.totals(at);
        let i = &self.interfaces[at];
        t.packets.saturating_sub(t.drops).saturating_sub(i.read)
    }

    /// Closes the rings of every interface that went away once they have
    /// given up what they hold, or once it has waited [`DRAIN_TIME`];
    /// what was not read is counted and said.
    fn settle_closing(&mut self) -> Result<(), LiveError> {
        let now = Instant::now();
        for at in 0..self.interfaces.len() {
            let Some(deadline) = self.interfaces[at].closing else {
                continue;
            };
            let unread = self.unread(at);
            if unread > 0 && now < deadline {
                continue;
            }
            if unread > 0 {
                let name = &self.interfaces[at].name;
                (self.warn)(&format!(
                    "{unread} packets the kernel passed on {name:?} could not be read before its rings closed"
                ));
            }
            self.retire(at);
        }
        if self.rings.is_empty() {
            return Err(LiveError::NoInterfaceLeft);
        }
        Ok(())
    }

    /// Closes the rings of interface `at` (gone away), keeping their
    /// counters (so what they held unread stays counted).
    fn retire(&mut self, at: usize) {
        let rings = std::mem::take(&mut self.rings);
        let owners = std::mem::take(&mut self.owners);
        for (mut ring, owner) in rings.into_iter().zip(owners) {
            if owner != at {
                self.rings.push(ring);
                self.owners.push(owner);
            } else if let Ok(s) = ring.stats() {
                add(&mut self.interfaces[at].retired, &s);
            }
        }
        self.interfaces[at].closing = None;
        self.publish();
    }
}

fn add(total: &mut RingStats, s: &RingStats) {
    total.packets += s.packets;
    total.drops += s.drops;
    total.freezes += s.freezes;
}

impl CaptureSource for LiveCapture {
    type Error = LiveError;

    fn poll<I: Input>(&mut self, input: &mut I) -> Result<Poll, LiveError> {
        let closing = self.interfaces.iter().any(|i| i.closing.is_some());
        // While an interface's rings drain, wake often enough to notice its
        // deadline.
        let timeout = Duration::from_millis(if closing { 20 } else { 100 });
        let mut ready = true;
        match wait_any(&self.rings, timeout) {
            Ok(Some((i, Some(e)))) => {
                let at = self.owners[i];
                let interface = &mut self.interfaces[at];
                if interface.closing.is_none() && !interface.gone {
                    interface.closing = Some(Instant::now() + DRAIN_TIME);
                    interface.gone = true;
                    let name = &interface.name;
                    (self.warn)(&format!(
                        "capture on {name:?} stopped: {e}; reading what its rings still hold"
                    ));
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => ready = false,
            Err(e) => {
                (self.warn)(&format!("waiting for packets failed: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                return Ok(Poll::Idle);
            }
        }
        if !ready {
            if closing {
                self.settle_closing()?;
            }
            return Ok(Poll::Idle);
        }
        for (ring, at) in self.rings.iter_mut().zip(&self.owners) {
            let interface = &mut self.interfaces[*at];
            while let Some(block) = ring.next_block() {
                for p in block.packets() {
                    interface.bytes += u64::from(p.wire_len);
                    interface.read += 1;
                    let frame = Frame {
                        ts_ns: p.ts_ns,
                        link_type: p.link_type(),
                        data: p.data,
                        ifindex: p.ifindex,
                        segmentation: p.gso.map(|g| Segmentation {
                            transport: match g.kind {
                                GsoKind::Tcp => 6,
                                GsoKind::Udp => 17,
                                // No transport is numbered 0 here: never
                                // split.
                                GsoKind::Other(_) => 0,
                            },
                            segment_size: g.segment_size,
                        }),
                    };
                    if input.frame(&frame).is_break() {
                        return Ok(Poll::Ready);
                    }
                }
            }
        }
        if self.interfaces.iter().any(|i| i.closing.is_some()) {
            self.settle_closing()?;
        }
        Ok(Poll::Ready)
    }

    fn clock(&self) -> Clock {
        Clock::Wall
    }

    /// Reads every ring's kernel counters (`PACKET_STATISTICS`, which the
    /// kernel resets on each read: [`Ring::stats`] keeps the sums).
    fn publish(&mut self) {
        for at in 0..self.interfaces.len() {
            let t = self.totals(at);
            let interface = &self.interfaces[at];
            interface.slot.publish(&SourceCounts {
                packets: interface.read,
                bytes: interface.bytes,
                kernel_packets: t.packets,
                kernel_drops: t.drops,
                kernel_freezes: t.freezes,
                kernel_unread: t
                    .packets
                    .saturating_sub(t.drops)
                    .saturating_sub(interface.read),
                gone: interface.gone,
                ..SourceCounts::default()
            });
        }
    }
}
