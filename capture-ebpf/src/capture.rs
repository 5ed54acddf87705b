//! The eBPF backend as an [`engine::CaptureSource`]: loads the TC programs,
//! attaches them to each interface, and hands the engine the flows the
//! kernel counted (as observations) and the packets it sent up (as frames).

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::tc::{self, NlOptions, TcAttachOptions, TcAttachType};
use aya::programs::{LinkOrder, ProgramError, SchedClassifier};
use aya::{Ebpf, EbpfLoader};
use engine::Timeouts;
use engine::error::one_line;
use engine::interfaces::InterfaceNames;
use engine::registry::{
    ProgramCounts, ProgramSlot, Registry, SourceCounts, SourceKind, SourceSlot,
};
use engine::source::{CaptureSource, Clock, Frame, Input, Poll, Segmentation};

use host::links::{self, LinkEvent, LinkMonitor, Selection};

use crate::abi::{self, FsEvent, FsFlow, FsKey};
use crate::flows::{Tracker, ended};
use crate::schedule::Schedule;

/// The programs' names in the object (their ELF symbols).
const INGRESS: &str = "flowspan_ingress";
const EGRESS: &str = "flowspan_egress";
/// The same counting, reached from a capture filter's program.
const INGRESS_KEPT: &str = "flowspan_ingress_kept";
const EGRESS_KEPT: &str = "flowspan_egress_kept";

/// Kernel memory one flow map entry takes, all-in, as the kernel lays out a
/// preallocated hash map (kernel/bpf/hashtab.c): the element header
/// (`struct htab_elem`, 48 bytes), key and value each rounded up to 8
/// bytes, and up to two buckets of 16 bytes (the bucket array is the entry
/// count rounded up to a power of two). 424 bytes with today's structures.
pub const ENTRY_BYTES: u64 =
    (48 + size_of::<FsKey>().div_ceil(8) * 8 + size_of::<FsFlow>().div_ceil(8) * 8 + 2 * 16) as u64;

/// Most flow map entries `--ebpf-flows` accepts: about 1.7 GiB of kernel
/// memory, which no cgroup is charged for.
pub const MAX_FLOWS: u32 = 4 << 20;

/// Time between a program's clock reading and its taking an entry's lock
/// is at most this (microseconds in practice: programs run to completion);
/// see [`ended`].
const MARGIN: Duration = Duration::from_secs(1);

/// How the backend is set up.
#[derive(Debug, Clone)]
pub struct EbpfConfig {
    /// Flow map entries.
    pub flows: u32,
    /// Ring buffer bytes (a power of two, at least a page).
    pub ring_bytes: u32,
    /// The engine's idle timeouts, which the programs apply to their
    /// entries too.
    pub timeouts: Timeouts,
    /// UDP ports whose packets the engine looks into (tunnels, NAT-T,
    /// WireGuard): sent up whole.
    pub udp_ports: Vec<u16>,
    /// The engine's VXLAN ports: the programs decapsulate what arrives on
    /// the first four.
    pub vxlan_ports: Vec<u16>,
    /// The engine's Geneve ports, likewise.
    pub geneve_ports: Vec<u16>,
    /// The engine looks for Teredo on any UDP port.
    pub teredo_anywhere: bool,
    /// A flow's first interface keeps it (`engine::InterfaceFlows::First`);
    /// otherwise each interface has its own flow.
    pub first_interface: bool,
    /// How often the whole flow map is read besides the reads of entries
    /// something is due for (zero: never).
    pub scan_interval: Duration,
    /// Where a verifier rejection's log is written.
    pub verifier_log: PathBuf,
    /// How to attach; `None`: TCX where the kernel has it (6.6), clsact
    /// otherwise.
    pub attach: Option<AttachMode>,
    /// A capture filter, run in the kernel before the programs count a
    /// packet (its Ethernet program, translated to eBPF).
    pub filter: Option<engine::bpf::FrameFilter>,
}

impl Default for EbpfConfig {
    fn default() -> Self {
        EbpfConfig {
            flows: 65_536,
            ring_bytes: 8 << 20,
            timeouts: Timeouts::default(),
            udp_ports: Vec::new(),
            vxlan_ports: vec![4789, 8472],
            geneve_ports: vec![6081],
            teredo_anywhere: true,
            first_interface: false,
            scan_interval: Duration::ZERO,
            verifier_log: std::env::temp_dir().join("flowspan-verifier.log"),
            attach: None,
            filter: None,
        }
    }
}

/// Why the backend cannot start or go on: one line each.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// Built without the programs.
    #[error("eBPF backend unavailable: {0}")]
    Unavailable(&'static str),
    /// A setting out of range.
    #[error("{0}")]
    Config(String),
    /// The kernel refused the programs or their maps.
    #[error("loading the eBPF programs failed: {0}")]
    Load(String),
    /// An interface could not be found or attached to.
    #[error("interface {interface:?}: {message}")]
    Attach {
        /// The interface.
        interface: String,
        /// What went wrong.
        message: String,
    },
    /// Reading a map failed.
    #[error("reading the eBPF {map} failed: {message}")]
    Map {
        /// Which map.
        map: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// How the programs are attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// TCX links (Linux 6.6 and later): they go with the process.
    Tcx,
    /// Filters on a clsact qdisc (netlink): removed at exit, and at the
    /// next start if the process was killed.
    Clsact,
}

struct Interface {
    name: String,
    ifindex: u32,
    slot: SourceSlot,
    bytes: u64,
    read: u64,
}

/// Live capture with the TC programs. Dropping it detaches them.
pub struct EbpfCapture {
    /// Holds the programs and their links.
    ebpf: Ebpf,
    flows: BpfHashMap<MapData, FsKey, FsFlow>,
    /// The flow map's descriptor, for batch reads.
    flows_fd: std::os::fd::OwnedFd,
    events: RingBuf<MapData>,
    stats: PerCpuArray<MapData, [u64; abi::STATS as usize]>,
    tracker: Tracker,
    /// When to read each entry.
    schedule: Schedule,
    /// The idle timeouts and linger the programs apply, and the active
    /// timeout: when reads are due.
    timeouts: Timeouts,
    interfaces: Vec<Interface>,
    mode: AttachMode,
    /// Full reads: every `scan_interval` (if not zero), and when notices
    /// were lost.
    scan_interval: Duration,
    next_scan: Option<Instant>,
    full_read_pending: bool,
    mono_to_real: i64,
    kernel: ProgramCounts,
    programs: ProgramSlot,
    keys: Vec<FsKey>,
    values: Vec<FsFlow>,
    names: InterfaceNames,
    registry: Registry,
    /// `-i` patterns followed as interfaces come and go, if any.
    follow: Option<Follow>,
    /// The capture filter's programs and the counting ones they go on to
    /// (also held by `fs_jumps` while it is open).
    _filter_programs: Vec<std::os::fd::OwnedFd>,
}

/// What [`EbpfCapture::follow`] follows, and how it says what happens.
struct Follow {
    selection: Selection,
    monitor: LinkMonitor,
    warn: Box<dyn Fn(&str) + Send>,
    note: Box<dyn Fn(&str) + Send>,
}

impl std::fmt::Debug for EbpfCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfCapture")
            .field("interfaces", &self.interface_list())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Attaches the loaded programs to ingress and egress of `interface`:
/// TCX links in TCX `mode`, or, where that fails or in clsact mode (to
/// which `mode` then turns), filters on a clsact qdisc; filters an earlier
/// run left are removed first.
fn attach(
    ebpf: &mut Ebpf,
    interface: &str,
    mode: &mut AttachMode,
    warn: &dyn Fn(&str),
) -> Result<(), EbpfError> {
    let stale = remove_stale(interface);
    if stale > 0 {
        warn(&format!(
            "removed the eBPF filters an earlier run left on {interface:?}"
        ));
    }
    for (at, name) in [
        (TcAttachType::Ingress, INGRESS),
        (TcAttachType::Egress, EGRESS),
    ] {
        let program: &mut SchedClassifier = ebpf
            .program_mut(name)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| EbpfError::Load(format!("the object has no program {name}")))?;
        let attach_err = |e: &dyn std::error::Error| EbpfError::Attach {
            interface: interface.to_owned(),
            message: format!("attaching {name} failed: {}", one_line(e)),
        };
        if *mode == AttachMode::Tcx {
            match program.attach_with_options(
                interface,
                at,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            ) {
                Ok(_) => continue,
                Err(e) => {
                    warn(&format!(
                        "TCX attach on {interface:?} failed ({}); using a clsact qdisc",
                        one_line(&e)
                    ));
                    *mode = AttachMode::Clsact;
                }
            }
        }
        if let Err(e) = tc::qdisc_add_clsact(interface) {
            // EEXIST: it is there already.
            if !one_line(&e).contains("exists") {
                return Err(attach_err(&e));
            }
        }
        program
            .attach_with_options(
                interface,
                at,
                TcAttachOptions::Netlink(NlOptions::default()),
            )
            .map_err(|e| attach_err(&e))?;
    }
    Ok(())
}

/// Checks the kernel memory `flows` map entries and a ring buffer of
/// `ring_bytes` take (allocated when the programs load, charged to no
/// cgroup) against a quarter of the memory available; returns the total.
///
/// # Errors
/// Too much: the message says how much of what.
pub fn check_kernel_memory(flows: u32, ring_bytes: u32) -> Result<u64, String> {
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m
            .lines()
            .find(|l| l.starts_with("MemAvailable:"))?
            .to_owned();
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    });
    memory_within(
        flows,
        ring_bytes,
        available.map(|kib| kib.saturating_mul(1024)),
    )
}

/// [`check_kernel_memory`] with `available` bytes (`None`: unknown).
fn memory_within(flows: u32, ring_bytes: u32, available: Option<u64>) -> Result<u64, String> {
    let total = u64::from(flows) * ENTRY_BYTES + u64::from(ring_bytes);
    match available {
        Some(a) if total > a / 4 => Err(format!(
            "{} MiB of kernel memory for the flow map and ring buffer, more than a quarter of \
             the {} MiB available",
            total >> 20,
            a >> 20
        )),
        _ => Ok(total),
    }
}

/// Whether this build has the programs, and if not, why.
pub fn available() -> Result<(), EbpfError> {
    if crate::OBJECT.is_empty() {
        return Err(EbpfError::Unavailable(env!("FLOWSPAN_BPF_WHY")));
    }
    Ok(())
}

/// The interface index of `name`, from sysfs.
fn ifindex(name: &str) -> Result<u32, EbpfError> {
    let path = Path::new("/sys/class/net").join(name).join("ifindex");
    let bad = |message: String| EbpfError::Attach {
        interface: name.to_owned(),
        message,
    };
    if name.is_empty() || name.contains('/') {
        return Err(bad("not an interface name".into()));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => bad("no such interface".into()),
        _ => bad(format!("reading {}: {e}", path.display())),
    })?;
    text.trim()
        .parse()
        .map_err(|_| bad(format!("{} holds {:?}", path.display(), text.trim())))
}

/// Monotonic and wall-clock now, in nanoseconds.
fn clocks() -> (u64, i64) {
    let mono = nix_clock(libc::CLOCK_MONOTONIC);
    let real = nix_clock(libc::CLOCK_REALTIME);
    (
        mono,
        i64::try_from(real).unwrap_or(i64::MAX) - i64::try_from(mono).unwrap_or(0),
    )
}

pub(crate) fn nix_clock(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only
    // writes it.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Loads the counting programs a capture filter goes on to, and the
/// filter's own programs (one per direction), into `fs_jumps`.
fn install_filter(
    ebpf: &mut Ebpf,
    filter: &engine::bpf::FrameFilter,
    log: &Path,
) -> Result<Vec<std::os::fd::OwnedFd>, EbpfError> {
    use crate::filter::{SLOT_FILTER, SLOT_KEPT, load, set_slot, translate};
    let program = filter.program(1).ok_or_else(|| {
        EbpfError::Config(format!(
            "--filter {:?} does not apply to Ethernet frames",
            filter.expression()
        ))
    })?;
    let jumps = match ebpf.map("fs_jumps") {
        Some(aya::maps::Map::ProgramArray(data)) => data.fd().as_fd().as_raw_fd(),
        _ => {
            return Err(EbpfError::Load(
                "the object has no program array fs_jumps".into(),
            ));
        }
    };
    let slot_err = |e: std::io::Error| EbpfError::Map {
        map: "filter jumps",
        message: e.to_string(),
    };
    let mut held = Vec::new();
    for (direction, name) in [INGRESS_KEPT, EGRESS_KEPT].into_iter().enumerate() {
        let p: &mut SchedClassifier = ebpf
            .program_mut(name)
            .ok_or_else(|| EbpfError::Load(format!("the object has no program {name}")))?
            .try_into()
            .map_err(|e: ProgramError| EbpfError::Load(one_line(&e)))?;
        p.load().map_err(|e| load_error(name, e, log))?;
        let fd = p
            .fd()
            .map_err(|e| EbpfError::Load(one_line(&e)))?
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| EbpfError::Load(e.to_string()))?;
        set_slot(jumps, SLOT_KEPT + direction as u32, &fd).map_err(slot_err)?;
        held.push(fd);
    }
    for direction in 0..2u32 {
        let code = translate(program, jumps, SLOT_KEPT + direction, 0);
        let fd = load(&code, "flowspan_filter").map_err(|(e, text)| {
            let saved = match std::fs::write(log, &text) {
                Ok(()) => format!("the verifier's log is in {}", log.display()),
                Err(w) => format!(
                    "writing the verifier's log to {} failed: {w}",
                    log.display()
                ),
            };
            EbpfError::Load(format!(
                "the kernel refused the capture filter {:?} translated to eBPF ({e}); {saved}",
                filter.expression()
            ))
        })?;
        set_slot(jumps, SLOT_FILTER + direction, &fd).map_err(slot_err)?;
        held.push(fd);
    }
    Ok(held)
}

/// One line for a failed program load, the verifier's log saved to `log`.
fn load_error(program: &str, e: ProgramError, log: &Path) -> EbpfError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let text = verifier_log.to_string();
            let saved = match std::fs::write(log, &text) {
                Ok(()) => format!("the verifier's log is in {}", log.display()),
                Err(w) => format!(
                    "writing the verifier's log to {} failed: {w}",
                    log.display()
                ),
            };
            if io_error.kind() == io::ErrorKind::PermissionDenied && text.trim().is_empty() {
                EbpfError::Load(format!(
                    "{program}: {io_error}: loading TC programs needs CAP_BPF, CAP_PERFMON and \
                     CAP_NET_ADMIN (CAP_SYS_ADMIN before Linux 5.8), or root"
                ))
            } else if text.contains("prohibited for !root") {
                // Without CAP_PERFMON the verifier refuses pointer
                // arithmetic it otherwise allows (Spectre hardening).
                EbpfError::Load(format!(
                    "the kernel's verifier rejected {program} ({io_error}) as it does without \
                     CAP_PERFMON: grant CAP_PERFMON besides CAP_BPF and CAP_NET_ADMIN, or run as \
                     root; {saved}"
                ))
            } else {
                EbpfError::Load(format!(
                    "the kernel's verifier rejected {program} ({io_error}); {saved}"
                ))
            }
        }
        other => EbpfError::Load(format!("{program}: {}", one_line(&other))),
    }
}

/// The names of the TCX programs attached to `interface` (ingress, then
/// egress), whoever attached them.
///
/// # Errors
/// The interface does not exist, or the kernel cannot be asked.
pub fn attached_tcx(interface: &str) -> Result<Vec<String>, EbpfError> {
    let mut names = Vec::new();
    for at in [TcAttachType::Ingress, TcAttachType::Egress] {
        let (_, programs) =
            SchedClassifier::query_tcx(interface, at).map_err(|e| EbpfError::Attach {
                interface: interface.to_owned(),
                message: format!("querying TCX programs: {}", one_line(&e)),
            })?;
        // The kernel keeps 15 bytes of a name: "flowspan_ingres".
        names.extend(
            programs
                .iter()
                .map(|p| p.name_as_str().unwrap_or("?").to_owned()),
        );
    }
    Ok(names)
}

/// Removes the filters an earlier run left on `interface`'s clsact qdisc
/// (it was killed before it could): returns how many directions had one.
fn remove_stale(interface: &str) -> usize {
    [
        (TcAttachType::Ingress, INGRESS),
        (TcAttachType::Egress, EGRESS),
    ]
    .into_iter()
    .filter(|(at, name)| tc::qdisc_detach_program(interface, *at, name).is_ok())
    .count()
}

impl EbpfCapture {
    /// Loads the programs and attaches them to ingress and egress of each
    /// of `interfaces`, registering each interface's counters in
    /// `registry`.
    ///
    /// # Errors
    /// Built without the programs, missing privileges, a kernel that
    /// refuses them, an interface that does not exist.
    pub fn open(
        interfaces: &[String],
        config: &EbpfConfig,
        registry: &Registry,
        warn: &dyn Fn(&str),
    ) -> Result<EbpfCapture, EbpfError> {
        available()?;
        if config.flows == 0 || config.flows > MAX_FLOWS {
            return Err(EbpfError::Config(format!(
                "--ebpf-flows {}: expected 1 to {MAX_FLOWS}",
                config.flows
            )));
        }
        let mut found = Vec::new();
        for name in interfaces {
            found.push((name.clone(), ifindex(name)?));
        }
        let t = &config.timeouts;
        let idle = [
            t.tcp_idle_ns,
            t.udp_idle_ns,
            t.icmp_idle_ns,
            t.other_idle_ns,
            t.unestablished_idle_ns,
            t.tcp_end_linger_ns,
        ];
        let mut ports = [0u32; 2048];
        for &p in &config.udp_ports {
            ports[usize::from(p >> 5)] |= 1 << (p & 31);
        }
        let teredo = u8::from(config.teredo_anywhere);
        let four = |ports: &[u16]| {
            let mut a = [0u16; 4];
            for (slot, p) in a.iter_mut().zip(ports) {
                *slot = *p;
            }
            a
        };
        let (vxlan, geneve) = (four(&config.vxlan_ports), four(&config.geneve_ports));
        let mut ebpf = EbpfLoader::new()
            .override_global("fs_idle_ns", &idle, true)
            .override_global("fs_udp_ports", &ports, true)
            .override_global("fs_teredo_anywhere", &teredo, true)
            .override_global("fs_vxlan_ports", &vxlan, true)
            .override_global("fs_first_interface", &u8::from(config.first_interface), true)
            .override_global("fs_geneve_ports", &geneve, true)
            .map_max_entries("fs_flows", config.flows)
            .map_max_entries("fs_events", config.ring_bytes)
            .load(crate::OBJECT)
            .map_err(|e| {
                let line = one_line(&e);
                if line.contains("Operation not permitted") {
                    EbpfError::Load(format!(
                        "{line}: creating BPF maps needs CAP_BPF (CAP_SYS_ADMIN before Linux 5.8), or root"
                    ))
                } else {
                    EbpfError::Load(line)
                }
            })?;
        for name in [INGRESS, EGRESS] {
            let program: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| EbpfError::Load(format!("the object has no program {name}")))?
                .try_into()
                .map_err(|e: ProgramError| EbpfError::Load(one_line(&e)))?;
            program
                .load()
                .map_err(|e| load_error(name, e, &config.verifier_log))?;
        }
        // Before anything is attached: no packet is counted unfiltered.
        let filter_programs = match &config.filter {
            Some(filter) => install_filter(&mut ebpf, filter, &config.verifier_log)?,
            None => Vec::new(),
        };
        let tcx = aya::util::KernelVersion::current()
            .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0));
        let mut mode = config.attach.unwrap_or(if tcx {
            AttachMode::Tcx
        } else {
            AttachMode::Clsact
        });
        for (interface, _) in &found {
            attach(&mut ebpf, interface, &mut mode, warn)?;
        }
        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name)
                .ok_or_else(|| EbpfError::Load(format!("the object has no map {name}")))
        };
        let map_err = |map: &'static str| {
            move |e: aya::maps::MapError| EbpfError::Map {
                map,
                message: one_line(&e),
            }
        };
        let flows_map = take(&mut ebpf, "fs_flows")?;
        let flows_fd = match &flows_map {
            aya::maps::Map::HashMap(data) => data.fd().as_fd().try_clone_to_owned(),
            _ => return Err(EbpfError::Load("fs_flows is not a hash map".into())),
        }
        .map_err(|e| EbpfError::Map {
            map: "flow map",
            message: e.to_string(),
        })?;
        let flows = BpfHashMap::try_from(flows_map).map_err(map_err("flow map"))?;
        let events =
            RingBuf::try_from(take(&mut ebpf, "fs_events")?).map_err(map_err("ring buffer"))?;
        let stats =
            PerCpuArray::try_from(take(&mut ebpf, "fs_stats")?).map_err(map_err("counters"))?;
        let (_, mono_to_real) = clocks();
        let names = InterfaceNames::new(
            found
                .iter()
                .map(|(name, ifindex)| (*ifindex, name.clone()))
                .collect(),
        );
        Ok(EbpfCapture {
            ebpf,
            flows,
            flows_fd,
            events,
            stats,
            tracker: Tracker::default(),
            schedule: Schedule::default(),
            timeouts: config.timeouts,
            interfaces: found
                .into_iter()
                .map(|(name, ifindex)| Interface {
                    slot: registry.source(&name, SourceKind::Interface),
                    name,
                    ifindex,
                    bytes: 0,
                    read: 0,
                })
                .collect(),
            mode,
            scan_interval: config.scan_interval,
            next_scan: (!config.scan_interval.is_zero())
                .then(|| Instant::now() + config.scan_interval),
            full_read_pending: false,
            mono_to_real,
            _filter_programs: filter_programs,
            kernel: ProgramCounts::default(),
            programs: registry.programs(),
            keys: Vec::new(),
            values: Vec::new(),
            names,
            registry: registry.clone(),
            follow: None,
        })
    }

    /// Follows `selection`'s patterns from now on: interfaces that match,
    /// there now or appearing later, get the programs; those that go away
    /// are detached, their flows read and ended. Its named interfaces that
    /// come back get them again. `warn` and `note` say what happens.
    ///
    /// # Errors
    /// The link notifications cannot be followed, or attaching needs a
    /// privilege that is missing.
    pub fn follow(
        &mut self,
        selection: Selection,
        warn: Box<dyn Fn(&str) + Send>,
        note: Box<dyn Fn(&str) + Send>,
    ) -> Result<(), EbpfError> {
        let first = selection.patterns().next().unwrap_or_default().to_owned();
        // Subscribed before the list is read, so that no interface falls
        // between the two.
        let monitor = LinkMonitor::open().map_err(|e| {
            EbpfError::Config(format!(
                "-i {first:?}: cannot follow interfaces as they come and go (netlink): {e}"
            ))
        })?;
        self.follow = Some(Follow {
            selection,
            monitor,
            warn,
            note,
        });
        self.rescan()
    }

    /// Whether interface `name` is asked for, and by which pattern.
    fn wanted(&self, name: &str) -> Option<Option<String>> {
        let f = self.follow.as_ref()?;
        f.selection.wanted(name).map(|p| p.map(str::to_owned))
    }

    /// Gives interface `name` the programs if it is asked for and has not
    /// got them.
    fn appeared(&mut self, name: &str) -> Result<(), EbpfError> {
        let Some(pattern) = self.wanted(name) else {
            return Ok(());
        };
        if self.interfaces.iter().any(|i| i.name == name) {
            return Ok(());
        }
        let Some(f) = self.follow.as_ref() else {
            return Ok(());
        };
        let index = match ifindex(name) {
            Ok(i) => i,
            // Gone again already.
            Err(_) => return Ok(()),
        };
        match attach(&mut self.ebpf, name, &mut self.mode, &*f.warn) {
            Ok(()) => {}
            Err(e @ EbpfError::Load(_)) => return Err(e),
            Err(e) => {
                (f.warn)(&format!("not capturing on {name:?}: {e}"));
                return Ok(());
            }
        }
        self.interfaces.push(Interface {
            slot: self.registry.source(name, SourceKind::Interface),
            name: name.to_owned(),
            ifindex: index,
            bytes: 0,
            read: 0,
        });
        self.names.add(index, name);
        let why = match pattern {
            Some(p) => format!("it matches {p:?}"),
            None => "it is back".to_owned(),
        };
        (f.note)(&format!("capturing on {name} too: {why}"));
        Ok(())
    }

    /// Interface `at` went away: what the programs counted is read, its
    /// flows end, and it is forgotten (its counters summed into the
    /// registry's retired inputs).
    fn gone<I: Input>(&mut self, at: usize, input: &mut I) -> Result<(), EbpfError> {
        if self.scan(input, false)? {
            self.drain_events(input);
        }
        let interface = self.interfaces.remove(at);
        let _ = input.interface_gone(interface.ifindex);
        self.names.gone(interface.ifindex);
        interface.slot.publish(&SourceCounts {
            packets: interface.read,
            bytes: interface.bytes,
            kernel_packets: interface.read,
            ..SourceCounts::default()
        });
        self.registry.retire_source(&interface.slot);
        if let Some(f) = &self.follow {
            (f.note)(&format!(
                "capture on {:?} stopped: it went away; its flows ended",
                interface.name
            ));
        }
        Ok(())
    }

    /// Reads the list of interfaces: attaches what is asked for and not
    /// attached. (What is no longer listed is detached by the next poll.)
    fn rescan(&mut self) -> Result<(), EbpfError> {
        let Ok(mut list) = links::interfaces() else {
            return Ok(());
        };
        list.sort_by(|a, b| a.1.cmp(&b.1));
        for (_, name) in &list {
            self.appeared(name)?;
        }
        Ok(())
    }

    /// Follows the link notifications, if [`follow`](Self::follow) was
    /// called.
    fn follow_links<I: Input>(&mut self, input: &mut I) -> Result<(), EbpfError> {
        let Some(f) = self.follow.as_mut() else {
            return Ok(());
        };
        let events = f.monitor.events().unwrap_or_else(|_| vec![LinkEvent::Lost]);
        for event in events {
            match event {
                LinkEvent::Present { name, .. } => self.appeared(&name)?,
                LinkEvent::Removed { name, .. } => {
                    if let Some(at) = self.interfaces.iter().position(|i| i.name == name) {
                        self.gone(at, input)?;
                    }
                }
                LinkEvent::Lost => {
                    let present: Vec<String> = links::interfaces()
                        .map(|l| l.into_iter().map(|(_, n)| n).collect())
                        .unwrap_or_default();
                    while let Some(at) = self
                        .interfaces
                        .iter()
                        .position(|i| !present.contains(&i.name))
                    {
                        self.gone(at, input)?;
                    }
                    self.rescan()?;
                }
            }
        }
        Ok(())
    }

    /// Runs the ingress program on `frame`, `repeat` times in a row, in
    /// the kernel (`BPF_PROG_TEST_RUN`, as if the frame arrived on the
    /// loopback interface): the flow map counts it like a captured packet.
    /// Returns the kernel's mean time per run. For benchmarks of the
    /// programs themselves (`ebpf-bench --test-run`).
    ///
    /// # Errors
    /// The kernel refuses the run (a frame shorter than 14 bytes, a kernel
    /// without test runs for TC programs).
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<Duration, EbpfError> {
        use aya::programs::{TestRun, TestRunOptions};
        let program: &SchedClassifier = self
            .ebpf
            .program(INGRESS)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| EbpfError::Load(format!("the object has no program {INGRESS}")))?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat;
        let result = program
            .test_run(opts)
            .map_err(|e| EbpfError::Load(format!("test run: {}", one_line(&e))))?;
        Ok(result.duration)
    }

    /// The interfaces, comma-separated, and the patterns followed.
    pub fn interface_list(&self) -> String {
        let names: Vec<&str> = self.interfaces.iter().map(|i| i.name.as_str()).collect();
        let mut list = if names.is_empty() {
            "no interface yet".to_owned()
        } else {
            names.join(", ")
        };
        if let Some(f) = &self.follow {
            let patterns: Vec<&str> = f.selection.patterns().collect();
            list.push_str(&format!(
                ", and interfaces matching {} as they come",
                patterns.join(", ")
            ));
        }
        list
    }

    /// The interfaces' names by index, kept current as they come and go
    /// (shared).
    pub fn interface_names(&self) -> InterfaceNames {
        self.names.clone()
    }

    /// How the programs are attached.
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// Reads the programs' counters (summed over CPUs).
    ///
    /// # Errors
    /// The map cannot be read.
    pub fn read_counts(&mut self) -> Result<ProgramCounts, EbpfError> {
        let mut c = ProgramCounts {
            entries: self.schedule.len() as u64,
            collected: self.kernel.collected,
            reads: self.kernel.reads,
            full_reads: self.kernel.full_reads,
            ..ProgramCounts::default()
        };
        let per_cpu = self.stats.get(&0, 0).map_err(|e| EbpfError::Map {
            map: "counters",
            message: one_line(&e),
        })?;
        for i in 0..abi::STATS {
            let sum: u64 = per_cpu.iter().map(|cpu| cpu[i as usize]).sum();
            match i {
                abi::STAT_PACKETS => c.packets = sum,
                abi::STAT_COUNTED => c.counted = sum,
                abi::STAT_LOST => c.lost = sum,
                abi::STAT_DECAP => c.decapsulated = sum,
                abi::STAT_DUPLICATE => c.duplicates = sum,
                abi::STAT_NOTICE_LOST => c.notices_lost = sum,
                abi::STAT_SUPER => c.super_frames = sum,
                abi::STAT_SEGMENTS => c.segments = sum,
                _ => c.up[(i - abi::STAT_UP) as usize] = sum,
            }
        }
        // A lost notice leaves an entry unknown: the whole map is read.
        if c.notices_lost > self.kernel.notices_lost {
            self.full_read_pending = true;
        }
        self.kernel = c;
        Ok(c)
    }

    /// Hands every packet waiting in the ring buffer to `input`.
    fn drain_events<I: Input>(&mut self, input: &mut I) -> bool {
        let offset = self.mono_to_real;
        let header = size_of::<FsEvent>();
        while let Some(item) = self.events.next() {
            let Some(ev) = FsEvent::read(&item) else {
                continue;
            };
            let end = header + ev.cap_len as usize;
            if ev.notice != 0 {
                if let Some(at) = notice_due(&self.timeouts, &ev) {
                    self.schedule.by(ev.key, at);
                }
                continue;
            }
            let Some(data) = item.get(header..end) else {
                continue;
            };
            if let Some(i) = self.interfaces.iter_mut().find(|i| i.ifindex == ev.ifindex) {
                i.bytes += u64::from(ev.wire_len);
                i.read += 1;
            }
            // What the flow's entry counted came before this packet: hand
            // it on first, so that the engine sees the flow in order.
            // An entry made after the packet (its flow's previous entry
            // ended and was deleted) holds only later packets: they wait.
            if ev.keyed != 0
                && let Ok(flow) = self.flows.get(&ev.key, BPF_F_LOCK)
                && flow.first_ns <= ev.ts_ns
            {
                // Frozen (a new SYN on a closed flow's ports): read and
                // deleted right away. An entry whose notice was lost is
                // scheduled from here.
                if flow.frozen != 0 {
                    self.schedule.by(ev.key, 0);
                } else if !self.schedule.contains(&ev.key) {
                    self.schedule
                        .set(ev.key, next_due(&self.timeouts, &flow, ev.ts_ns));
                }
                if let Some(o) = self.tracker.observe(&ev.key, &flow, offset)
                    && input.flow(o).is_break()
                {
                    return false;
                }
            }
            let frame = Frame {
                ts_ns: ev.ts_ns.saturating_add_signed(offset),
                link_type: 1,
                data,
                wire_len: ev.wire_len,
                vlan: None,
                // Only packets a capture filter kept reach the programs
                // that send them up (and without their VLAN tag, which
                // the filter saw in place).
                prefiltered: true,
                ifindex: ev.ifindex,
                segmentation: (ev.gso_segs > 1 && ev.gso_size > 0).then(|| Segmentation {
                    // The kernel does not say which transport it segments;
                    // the decoder splits only TCP and UDP packets.
                    transport: segmented_transport(data),
                    segment_size: ev.gso_size,
                }),
            };
            if input.frame(&frame).is_break() {
                return false;
            }
        }
        true
    }

    /// Reads the entries that are due (at most READS_PER_POLL): hands on
    /// what changed, deletes the ones that ended, sets the others' next
    /// time.
    fn read_due<I: Input>(&mut self, input: &mut I) -> Result<bool, EbpfError> {
        const READS_PER_POLL: usize = 4096;
        let (now, mono_to_real) = clocks();
        self.mono_to_real = mono_to_real;
        for _ in 0..READS_PER_POLL {
            let Some(key) = self.schedule.pop_due(now) else {
                break;
            };
            self.kernel.reads += 1;
            let flow = match self.flows.get(&key, BPF_F_LOCK) {
                Ok(f) => f,
                Err(aya::maps::MapError::KeyNotFound) => {
                    self.tracker.forget(&key);
                    continue;
                }
                Err(e) => {
                    return Err(EbpfError::Map {
                        map: "flow map",
                        message: format!("reading an entry: {}", one_line(&e)),
                    });
                }
            };
            if let Some(o) = self.tracker.observe(&key, &flow, mono_to_real)
                && input.flow(o).is_break()
            {
                return Ok(false);
            }
            if ended(&flow, now, margin_ns()) {
                self.delete(&key)?;
            } else {
                self.schedule.set(key, next_due(&self.timeouts, &flow, now));
            }
        }
        Ok(true)
    }

    /// Deletes ended entry `key`, whose last counts were handed on.
    fn delete(&mut self, key: &FsKey) -> Result<(), EbpfError> {
        match self.flows.remove(key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {
                self.tracker.forget(key);
                self.schedule.remove(key);
                self.kernel.collected += 1;
                Ok(())
            }
            Err(e) => Err(EbpfError::Map {
                map: "flow map",
                message: format!("deleting an ended entry: {}", one_line(&e)),
            }),
        }
    }

    /// Reads every flow map entry: hands on what changed, deletes the
    /// entries that have ended (after handing on their last counts), and
    /// schedules any it did not know. With `last` (the capture ends), each
    /// entry's counts are handed on for the last time, and nothing is
    /// deleted or scheduled.
    fn scan<I: Input>(&mut self, input: &mut I, last: bool) -> Result<bool, EbpfError> {
        let (now, mono_to_real) = clocks();
        self.mono_to_real = mono_to_real;
        self.kernel.full_reads += 1;
        let margin = margin_ns();
        let mut token = [0u64; 2];
        let mut first = true;
        loop {
            let done = self.read_batch(&mut token, first)?;
            first = false;
            // Packets sent up before these snapshots were taken go first:
            // among them those of a flow before its entry was made. (One
            // sent up after a snapshot carries its key when its flow has an
            // entry, and is handed on after a fresh read of it; the older
            // snapshot then adds nothing.)
            if !self.drain_events(input) {
                return Ok(false);
            }
            let (keys, values) = (
                std::mem::take(&mut self.keys),
                std::mem::take(&mut self.values),
            );
            for (k, flow) in keys.iter().zip(&values) {
                let o = if last {
                    self.tracker.observe_last(k, flow, mono_to_real)
                } else {
                    self.tracker.observe(k, flow, mono_to_real)
                };
                if let Some(o) = o
                    && input.flow(o).is_break()
                {
                    return Ok(false);
                }
                if last {
                    continue;
                }
                if ended(flow, now, margin) {
                    self.delete(k)?;
                } else if !self.schedule.contains(k) {
                    self.schedule.set(*k, next_due(&self.timeouts, flow, now));
                }
            }
            // Kept for the next batch.
            (self.keys, self.values) = (keys, values);
            if done {
                return Ok(true);
            }
        }
    }

    /// Reads the next BATCH entries of the flow map into `keys` and
    /// `values` (from the start when `first`, else from `token`), each
    /// value copied under its entry's lock, in one system call
    /// (`BPF_MAP_LOOKUP_BATCH`; aya 0.14 has no batch operations). Returns
    /// whether the walk is done.
    fn read_batch(&mut self, token: &mut [u64; 2], first: bool) -> Result<bool, EbpfError> {
        const BATCH: usize = 4096;
        self.keys.clear();
        self.values.clear();
        self.keys.resize(BATCH, FsKey::default());
        self.values.resize(BATCH, FsFlow::default());
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token.as_ptr() as u64 },
            out_batch: token.as_mut_ptr() as u64,
            keys: self.keys.as_mut_ptr() as u64,
            values: self.values.as_mut_ptr() as u64,
            count: BATCH as u32,
            map_fd: self.flows_fd.as_raw_fd() as u32,
            elem_flags: BPF_F_LOCK,
            flags: 0,
        };
        // SAFETY: `attr` is the `batch` member of `union bpf_attr`
        // (linux/bpf.h), its size passed; `keys` and `values` have room for
        // `count` keys and values of the map's sizes (checked when the map
        // was opened) and `token` for the map's batch token (a u32 for hash
        // maps); the kernel writes only those.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>(),
            )
        };
        let got = attr.count as usize;
        self.keys.truncate(got);
        self.values.truncate(got);
        if rc == 0 {
            return Ok(false);
        }
        let e = io::Error::last_os_error();
        // ENOENT: the walk is done (the last batch may hold entries).
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(true);
        }
        Err(EbpfError::Map {
            map: "flow map",
            message: format!("reading it in batches: {e}"),
        })
    }

    /// Waits up to `timeout` for the ring buffer to have data.
    fn wait(&self, timeout: Duration) {
        let mut fds = [libc::pollfd {
            fd: self.events.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(100);
        // SAFETY: `fds` is a valid array of one pollfd for the call's
        // duration; poll only writes its `revents`.
        unsafe {
            libc::poll(fds.as_mut_ptr(), 1, ms);
        }
    }
}

/// When the entry a notice is about must be read at the latest.
fn notice_due(t: &Timeouts, ev: &FsEvent) -> Option<u64> {
    let after = match ev.notice {
        // Nothing read yet: its shortest possible timeout.
        abi::NOTICE_NEW => {
            let idle = t.idle_ns_of(ev.key.protocol);
            let end = idle.min(t.unestablished_idle_ns) + margin_ns() + 1;
            match t.active_ns {
                0 => end,
                active => end.min(active.saturating_sub(EARLY_NS)),
            }
        }
        abi::NOTICE_CLOSED => t.tcp_end_linger_ns + margin_ns() + 1,
        _ => return None,
    };
    Some(ev.ts_ns.saturating_add(after))
}

/// When entry `flow` must be read next, after a read at monotonic
/// time `now`: once it can have ended (its idle timeout or linger past,
/// by the margin that makes deleting it safe, [`ended`]), or just
/// before its next active-timeout boundary, whichever comes first.
fn next_due(t: &Timeouts, flow: &FsFlow, now: u64) -> u64 {
    if flow.frozen != 0 {
        return now;
    }
    let since = if flow.closed != 0 {
        flow.closed_ns
    } else {
        flow.last_ns
    };
    let end = since
        .saturating_add(flow.idle_ns)
        .saturating_add(margin_ns())
        .saturating_add(1);
    match t.active_ns {
        0 => end,
        active => {
            // Boundaries first + k * active (k >= 1), read EARLY_NS
            // before one: the next such read after `now`.
            let k = (now.saturating_add(EARLY_NS).saturating_sub(flow.first_ns) / active) + 1;
            let boundary = flow.first_ns.saturating_add(k.saturating_mul(active));
            end.min(boundary - EARLY_NS.min(boundary))
        }
    }
}

/// How long a poll waits for the ring buffer at most: the granularity of
/// the entries' due times.
const WAIT: Duration = Duration::from_millis(100);

/// A read before an active-timeout boundary comes this long before it, so
/// that the record cut there holds the packets counted up to it.
const EARLY_NS: u64 = 100_000_000;

/// [`MARGIN`] in nanoseconds.
fn margin_ns() -> u64 {
    u64::try_from(MARGIN.as_nanos()).unwrap_or(u64::MAX)
}

/// `BPF_F_LOCK`: copy an entry's value under its bpf_spin_lock.
const BPF_F_LOCK: u64 = 4;

/// `BPF_MAP_LOOKUP_BATCH` (linux/bpf.h `enum bpf_cmd`).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// The transport of an Ethernet frame's IP packet (6 or 17 when the kernel
/// can segment it), for a super-packet's [`Segmentation`].
fn segmented_transport(frame: &[u8]) -> u8 {
    let mut at = 12;
    let mut et = u16::from_be_bytes([
        frame.get(at).copied().unwrap_or(0),
        frame.get(at + 1).copied().unwrap_or(0),
    ]);
    while matches!(et, 0x8100 | 0x88a8) {
        at += 4;
        et = u16::from_be_bytes([
            frame.get(at).copied().unwrap_or(0),
            frame.get(at + 1).copied().unwrap_or(0),
        ]);
    }
    let ip = at + 2;
    let protocol = match et {
        0x0800 => frame.get(ip + 9).copied(),
        0x86dd => frame.get(ip + 6).copied(),
        _ => None,
    };
    protocol.filter(|p| matches!(p, 6 | 17)).unwrap_or(0)
}

impl CaptureSource for EbpfCapture {
    type Error = EbpfError;

    fn poll<I: Input>(&mut self, input: &mut I) -> Result<Poll, EbpfError> {
        self.follow_links(input)?;
        if !self.drain_events(input) {
            return Ok(Poll::Ready);
        }
        let now = Instant::now();
        if self.full_read_pending || self.next_scan.is_some_and(|at| now >= at) {
            self.full_read_pending = false;
            self.next_scan = self.next_scan.map(|_| now + self.scan_interval);
            if !self.scan(input, false)? {
                return Ok(Poll::Ready);
            }
            // The ring buffer first: a packet sent up before an entry
            // froze came before the packets counted in its successor.
            self.drain_events(input);
            return Ok(Poll::Ready);
        }
        if !self.read_due(input)? {
            return Ok(Poll::Ready);
        }
        let until_scan = self
            .next_scan
            .map_or(WAIT, |at| at.saturating_duration_since(now));
        self.wait(until_scan.min(WAIT));
        if !self.drain_events(input) {
            return Ok(Poll::Ready);
        }
        Ok(Poll::Idle)
    }

    fn clock(&self) -> Clock {
        Clock::Wall
    }

    fn report_delay(&self) -> Duration {
        // An entry is read after its timeout or linger by MARGIN, plus up
        // to one wait for the ring buffer: a second more leaves room for
        // a busy moment.
        MARGIN + WAIT + Duration::from_secs(1)
    }

    fn finish<I: Input>(&mut self, input: &mut I) -> Result<(), EbpfError> {
        // Everything counted so far, ended or not; the ring buffer before
        // and after, as in `poll`.
        if self.drain_events(input) && self.scan(input, true)? {
            self.drain_events(input);
        }
        self.read_counts()?;
        Ok(())
    }

    fn publish(&mut self) {
        // Per interface: what reached userspace as frames. Counted flows
        // are reported by the kernel counters (summary).
        if self.read_counts().is_ok() {
            self.programs.publish(&self.kernel);
        }
        for i in &self.interfaces {
            i.slot.publish(&SourceCounts {
                packets: i.read,
                bytes: i.bytes,
                kernel_packets: i.read,
                ..SourceCounts::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_programs_are_built_in_ci_and_for_root() {
        // Without clang the crate builds without its programs. In CI and as
        // root (README, "What the tests need") that is an install step's
        // fault and fails; elsewhere the eBPF tests say why and skip.
        let Err(e) = available() else { return };
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(!ci && !root, "{e}");
        eprintln!("SKIP: {e}");
    }

    #[test]
    fn kernel_memory_is_checked_against_a_quarter_of_what_is_available() {
        let gib = 1u64 << 30;
        assert_eq!(
            memory_within(1, 1 << 16, Some(gib)),
            Ok(ENTRY_BYTES + (1 << 16))
        );
        assert_eq!(
            memory_within(65_536, 8 << 20, None),
            Ok(65_536 * ENTRY_BYTES + (8 << 20))
        );
        assert_eq!(
            ENTRY_BYTES, 424,
            "the entry's layout changed: update README"
        );
        let e = memory_within(MAX_FLOWS, 1 << 20, Some(4 * gib)).unwrap_err();
        assert_eq!(
            e,
            "1697 MiB of kernel memory for the flow map and ring buffer, more than a quarter of \
             the 4096 MiB available"
        );
        assert!(memory_within(MAX_FLOWS, 1 << 20, Some(7 * gib)).is_ok());
    }

    #[test]
    fn a_super_packet_names_its_transport() {
        let mut frame = vec![0u8; 14 + 20];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14 + 9] = 6;
        assert_eq!(segmented_transport(&frame), 6);
        frame[14 + 9] = 1;
        assert_eq!(segmented_transport(&frame), 0);
        let mut tagged = vec![0u8; 18 + 40];
        tagged[12..14].copy_from_slice(&[0x81, 0x00]);
        tagged[16..18].copy_from_slice(&[0x86, 0xdd]);
        tagged[18 + 6] = 17;
        assert_eq!(segmented_transport(&tagged), 17);
        assert_eq!(segmented_transport(&[]), 0);
    }
}
