//! Live capture as an [`engine::CaptureSource`]: the rings of every
//! interface asked for, drained by the capture loop ([`engine::drive`]).
//!
//! Each interface gets one ring per flow worker, joined in a fanout group
//! whose program splits the traffic among them by the pair of IP addresses
//! (so a flow, fragments included, stays on one ring in arrival order;
//! ready for a capture thread per ring, while today one thread drains them
//! all). An interface that goes away is dropped once what its rings still
//! hold has been read (the kernel hands over the block under way within its
//! block timeout), its open flows end (`forced_end`), and its counters are
//! kept. Packets the kernel passed that were never read are counted.
//!
//! Interfaces are named, or matched by glob patterns (`veth*`): with a
//! pattern, the kernel's link notifications are followed, and interfaces
//! that appear later are attached when their name matches (named ones
//! too, when they come back), while those that go away are detached
//! without ending the capture. Without a pattern, the capture ends when
//! every interface has gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::interfaces::InterfaceNames;
use engine::registry::{Registry, SourceCounts, SourceKind, SourceSlot};
use engine::source::{CaptureSource, Clock, Frame, Input, Poll, Segmentation};

use crate::{GsoKind, Ring, RingConfig, RingError, RingStats, wait_any};
use host::links::{self, LinkEvent, LinkMonitor, Selection};

/// A sink for one-line messages (an interface that failed, came or went).
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
    /// A `-i` pattern is not a glob pattern (the message says which).
    #[error("{0}")]
    BadPattern(String),
    /// The kernel's link notifications cannot be followed.
    #[error("-i {pattern:?}: cannot follow interfaces as they come and go (netlink): {source}")]
    Links {
        /// The first pattern given.
        pattern: String,
        /// The netlink error.
        source: std::io::Error,
    },
}

/// How the messages of a live capture are said.
#[derive(Clone)]
pub struct Messages {
    /// Something went wrong (an interface failed, went away unexpectedly).
    pub warn: Warn,
    /// Something happened as expected (an interface matching a pattern came
    /// or went).
    pub note: Warn,
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Messages")
    }
}

/// One interface being captured.
#[derive(Debug)]
struct Interface {
    name: String,
    ifindex: u32,
    /// The kernel counters of its rings that were closed.
    retired: RingStats,
    /// Bytes on the wire of the frames read.
    bytes: u64,
    /// Packets read from its rings.
    read: u64,
    /// It went away: until when to wait for what its rings still hold.
    closing: Option<Instant>,
    /// It went away (or its capture failed) and has no rings.
    gone: bool,
    /// It was attached because a pattern matches its name (and is
    /// forgotten, counters summed into the registry's retired inputs, when
    /// it goes).
    matched: bool,
    /// The fanout group of its rings.
    group: u16,
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
    messages: Messages,
    /// The interfaces asked for: names and patterns.
    selection: Selection,
    /// Link notifications, when there are patterns.
    monitor: Option<LinkMonitor>,
    workers: usize,
    ring: RingConfig,
    registry: Registry,
    names: InterfaceNames,
    /// The next fanout group id to try.
    next_group: u16,
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
    /// Opens `workers` rings on each of `interfaces` (names, or glob
    /// patterns that pick interfaces there now and later), each interface
    /// in a fanout group of its own, and registers each interface's
    /// counters in `registry`. A named interface that does not exist or
    /// cannot be opened is a warning and the others are captured.
    ///
    /// # Errors
    /// Missing privileges, a bad ring configuration or too much ring memory
    /// (which every interface would meet), a bad pattern, or no interface
    /// could be opened and there is no pattern to wait on.
    pub fn open(
        interfaces: &[String],
        workers: usize,
        ring: &RingConfig,
        registry: &Registry,
        messages: Messages,
    ) -> Result<LiveCapture, LiveError> {
        let selection = Selection::new(interfaces).map_err(LiveError::BadPattern)?;
        // Checked here too, not only by the binary: ring memory is kernel
        // memory no cgroup charges, whoever opens the rings. Interfaces a
        // pattern picks are checked one by one as they are attached.
        crate::check_ring_memory(
            ring.block_size,
            ring.block_count,
            selection.named.len().saturating_mul(workers),
        )
        .map_err(LiveError::RingMemory)?;
        // Subscribed before the list is read, so that no interface falls
        // between the two.
        let monitor = match selection.patterns().next() {
            Some(first) => Some(LinkMonitor::open().map_err(|source| LiveError::Links {
                pattern: first.to_owned(),
                source,
            })?),
            None => None,
        };
        let mut live = LiveCapture {
            rings: Vec::new(),
            owners: Vec::new(),
            interfaces: Vec::new(),
            messages,
            selection,
            monitor,
            workers,
            ring: ring.clone(),
            registry: registry.clone(),
            names: InterfaceNames::default(),
            next_group: std::process::id() as u16,
        };
        for name in live.selection.named.clone() {
            match live.attach(&name, false) {
                Ok(()) => {}
                Err(e @ (RingError::NoPrivilege { .. } | RingError::BadConfig(_))) => {
                    return Err(e.into());
                }
                Err(e) => (live.messages.warn)(&format!("not capturing on {name:?}: {e}")),
            }
        }
        if live.monitor.is_some() {
            live.rescan()?;
        }
        if live.rings.is_empty() && !live.selection.follows() {
            return Err(LiveError::NoInterface);
        }
        Ok(live)
    }

    /// The entry of interface `name` that has rings (or is draining them).
    fn captured(&self, name: &str) -> Option<usize> {
        self.interfaces
            .iter()
            .position(|i| i.name == name && !i.gone)
    }

    /// Reads the list of interfaces and attaches those asked for that are
    /// not captured yet; those captured that are no longer listed start
    /// closing.
    ///
    /// # Errors
    /// Missing privileges or a bad ring configuration.
    fn rescan(&mut self) -> Result<(), LiveError> {
        let mut list = match links::interfaces() {
            Ok(list) => list,
            Err(e) => {
                (self.messages.warn)(&format!("cannot list the interfaces: {e}"));
                return Ok(());
            }
        };
        list.sort_by(|a, b| a.1.cmp(&b.1));
        for (_, name) in &list {
            self.appeared(name)?;
        }
        for at in 0..self.interfaces.len() {
            let i = &self.interfaces[at];
            if !i.gone && i.closing.is_none() && !list.iter().any(|(_, n)| *n == i.name) {
                self.start_closing(at, "it went away");
            }
        }
        Ok(())
    }

    /// Interface `name` exists: attaches it if it is asked for and not
    /// captured.
    fn appeared(&mut self, name: &str) -> Result<(), LiveError> {
        let Some(pattern) = self.selection.wanted(name).map(|p| p.map(str::to_owned)) else {
            return Ok(());
        };
        if self.captured(name).is_some() {
            return Ok(());
        }
        // Checked before each interface a pattern (or a return) brings:
        // refused with a warning, and the capture goes on.
        let rings = self.rings.len().saturating_add(self.workers);
        if let Err(e) = crate::check_ring_memory(self.ring.block_size, self.ring.block_count, rings)
        {
            (self.messages.warn)(&format!(
                "not capturing on {name:?}: its rings would make {e} (lower --ring-blocks or \
                 --ring-block-size to capture on more interfaces)"
            ));
            return Ok(());
        }
        match self.attach(name, pattern.is_some()) {
            Ok(()) => {
                let why = match &pattern {
                    Some(p) => format!("it matches {p:?}"),
                    None => "it is back".to_owned(),
                };
                (self.messages.note)(&format!("capturing on {name} too: {why}"));
                Ok(())
            }
            Err(e @ (RingError::NoPrivilege { .. } | RingError::BadConfig(_))) => Err(e.into()),
            Err(e) => {
                (self.messages.warn)(&format!("not capturing on {name:?}: {e}"));
                Ok(())
            }
        }
    }

    /// Opens `workers` rings on `name` in a fanout group of their own (the
    /// ring memory was checked by the caller).
    fn attach(&mut self, name: &str, matched: bool) -> Result<(), RingError> {
        // Fanout group ids are per network namespace: one per interface of
        // this process, for all of its rings.
        let group = self.group_id();
        let config = RingConfig {
            fanout_group: Some(group),
            ..self.ring.clone()
        };
        let mut opened = Vec::with_capacity(self.workers);
        for _ in 0..self.workers {
            opened.push(Ring::open(name, &config)?);
        }
        self.next_group = group.wrapping_add(1);
        let ifindex = opened.first().map_or(0, Ring::ifindex);
        let at = match self.interfaces.iter().position(|i| i.name == name) {
            Some(at) => {
                let i = &mut self.interfaces[at];
                i.gone = false;
                i.closing = None;
                i.ifindex = ifindex;
                i.group = group;
                at
            }
            None => {
                self.interfaces.push(Interface {
                    name: name.to_owned(),
                    ifindex,
                    retired: RingStats::default(),
                    bytes: 0,
                    read: 0,
                    closing: None,
                    gone: false,
                    matched,
                    group,
                    slot: self.registry.source(name, SourceKind::Interface),
                });
                self.interfaces.len() - 1
            }
        };
        self.owners.extend(opened.iter().map(|_| at));
        self.rings.extend(opened);
        self.names.add(ifindex, name);
        Ok(())
    }

    /// A fanout group id no open ring of this process uses.
    fn group_id(&mut self) -> u16 {
        while self
            .interfaces
            .iter()
            .any(|i| !i.gone && i.group == self.next_group)
        {
            self.next_group = self.next_group.wrapping_add(1);
        }
        self.next_group
    }

    /// The captured interfaces' names by index, kept current as they come
    /// and go (shared).
    pub fn interface_names(&self) -> InterfaceNames {
        self.names.clone()
    }

    /// The interfaces captured, comma-separated, and the patterns followed.
    pub fn interface_list(&self) -> String {
        let names: Vec<&str> = self
            .interfaces
            .iter()
            .filter(|i| !i.gone)
            .map(|i| i.name.as_str())
            .collect();
        let mut list = if names.is_empty() {
            "no interface yet".to_owned()
        } else {
            names.join(", ")
        };
        if self.selection.follows() {
            let patterns: Vec<&str> = self.selection.patterns().collect();
            list.push_str(&format!(
                ", and interfaces matching {} as they come",
                patterns.join(", ")
            ));
        }
        list
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

    /// Interface `at` went away (`why`): its rings give up what they hold,
    /// then close.
    fn start_closing(&mut self, at: usize, why: &str) {
        let interface = &mut self.interfaces[at];
        if interface.closing.is_some() || interface.gone {
            return;
        }
        interface.closing = Some(Instant::now() + DRAIN_TIME);
        interface.gone = true;
        let line = format!(
            "capture on {:?} stopped: {why}; reading what its rings still hold, then ending its flows",
            interface.name
        );
        if interface.matched {
            (self.messages.note)(&line);
        } else {
            (self.messages.warn)(&line);
        }
    }

    /// Closes the rings of every interface that went away once they have
    /// given up what they hold, or once it has waited [`DRAIN_TIME`];
    /// what was not read is counted and said.
    fn settle_closing<I: Input>(&mut self, input: &mut I) -> Result<(), LiveError> {
        let now = Instant::now();
        let mut at = 0;
        while at < self.interfaces.len() {
            let Some(deadline) = self.interfaces[at].closing else {
                at += 1;
                continue;
            };
            let unread = self.unread(at);
            if unread > 0 && now < deadline {
                at += 1;
                continue;
            }
            if unread > 0 {
                let name = &self.interfaces[at].name;
                (self.messages.warn)(&format!(
                    "{unread} packets the kernel passed on {name:?} could not be read before its rings closed"
                ));
            }
            if !self.retire(at, input) {
                at += 1;
            }
        }
        if self.rings.is_empty() && !self.selection.follows() {
            return Err(LiveError::NoInterfaceLeft);
        }
        Ok(())
    }

    /// Closes the rings of interface `at` (gone away), keeping their
    /// counters (so what they held unread stays counted), and ends its
    /// flows. One a pattern picked is forgotten (its counters go to the
    /// registry's retired inputs): whether it was.
    fn retire<I: Input>(&mut self, at: usize, input: &mut I) -> bool {
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
        let ifindex = self.interfaces[at].ifindex;
        // The pipeline reports its own end: nothing to do on Break here.
        let _ = input.interface_gone(ifindex);
        self.names.gone(ifindex);
        self.publish();
        if !self.interfaces[at].matched {
            return false;
        }
        let gone = self.interfaces.remove(at);
        self.registry.retire_source(&gone.slot);
        for owner in &mut self.owners {
            if *owner > at {
                *owner -= 1;
            }
        }
        true
    }

    /// Whether interface `at`, whose ring reported `e`, is only down and
    /// keeps its rings. A ring reports ENETDOWN when its interface goes
    /// down, or is down when the ring binds to it (a new veth or a pod's
    /// interface, which a pattern attaches as soon as it appears, before
    /// it is brought up), and also when the interface is deleted. Closing
    /// the rings of one that is only down made it look gone and lost its
    /// first packets until it was attached again. The kernel hooks the
    /// rings up again when the interface comes up. Only with link
    /// notifications (patterns), which report a deletion by themselves;
    /// without them the error is the only sign of one.
    fn only_down(&self, at: usize, e: &std::io::Error) -> bool {
        let i = &self.interfaces[at];
        self.monitor.is_some()
            && e.raw_os_error() == Some(libc::ENETDOWN)
            && links::interfaces().is_ok_and(|list| {
                list.iter()
                    .any(|(index, name)| *index == i.ifindex && *name == i.name)
            })
    }

    /// Follows the link notifications: attaches what appeared, starts
    /// closing what was deleted.
    fn follow_links(&mut self) -> Result<(), LiveError> {
        let Some(monitor) = self.monitor.as_mut() else {
            return Ok(());
        };
        let events = match monitor.events() {
            Ok(events) => events,
            Err(e) => {
                (self.messages.warn)(&format!("reading link notifications failed: {e}"));
                vec![LinkEvent::Lost]
            }
        };
        for event in events {
            match event {
                LinkEvent::Present { name, .. } => self.appeared(&name)?,
                LinkEvent::Removed { name, .. } => {
                    if let Some(at) = self.captured(&name) {
                        self.start_closing(at, "it was deleted");
                    }
                }
                LinkEvent::Lost => self.rescan()?,
            }
        }
        Ok(())
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
        self.follow_links()?;
        let closing = self.interfaces.iter().any(|i| i.closing.is_some());
        // While an interface's rings drain, wake often enough to notice its
        // deadline.
        let timeout = Duration::from_millis(if closing { 20 } else { 100 });
        let mut ready = true;
        match wait_any(&self.rings, timeout) {
            Ok(Some((i, Some(e)))) => {
                let at = self.owners[i];
                if !self.only_down(at, &e) {
                    self.start_closing(at, &e.to_string());
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => ready = false,
            Err(e) => {
                (self.messages.warn)(&format!("waiting for packets failed: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                return Ok(Poll::Idle);
            }
        }
        if !ready {
            if closing {
                self.settle_closing(input)?;
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
                        wire_len: p.wire_len,
                        vlan: p.vlan,
                        // A kernel socket filter has decided, but on a
                        // frame whose tag it took out.
                        prefiltered: p.vlan.is_none(),
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
            self.settle_closing(input)?;
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
