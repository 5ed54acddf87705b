//! Which process owns each TCP and UDP socket of the host, in every network
//! namespace (pods' included): `process.pid`, `process.executable.name` and
//! the container it runs in, for the flows whose socket is on this host.
//!
//! A scan reads `/proc`: each process's network namespace and the socket
//! inodes among its open files. Then, in each namespace (joined by a thread
//! of its own, which needs CAP_SYS_ADMIN), sock_diag lists the sockets with
//! their local address, port and inode, and `RTM_GETADDR` the namespace's
//! addresses (a socket bound to `0.0.0.0` or `::` is on each of them). A
//! socket's process is the lowest pid that holds it; its name is
//! `/proc/PID/comm`; its container, the 64-hex-digit id that ends its
//! cgroup path, if any.
//!
//! [`ProcessRefresher`] scans every period and lays the sockets it has seen
//! in the last [`REMEMBER`] over the directory below it (the cluster's),
//! each socket's endpoint carrying both: a connection that closed is still
//! attributed when its record is made, a few seconds later. A connection
//! that opens and closes between two scans is not seen at all.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engine::enrich::{
    AttributeName, AttributeValue, Directory, Endpoint, EndpointAttribute, EnrichmentView,
};

use crate::netlink;

/// How long a socket no scan sees any more stays in the directory: longer
/// than a TCP flow's close linger and a record's way to the worker.
pub const REMEMBER: Duration = Duration::from_secs(10);

/// The most sockets remembered: a new socket is not remembered while the
/// table holds this many (counted in [`ProcessStats::not_remembered`]).
pub const MAX_SOCKETS: usize = 1 << 20;

/// `process.pid`: the span's, from whichever endpoint is a local socket
/// (the source's when both are).
const PID: AttributeName = AttributeName::sided("process.pid", "process.pid");
/// `process.executable.name`, likewise.
const EXECUTABLE: AttributeName =
    AttributeName::sided("process.executable.name", "process.executable.name");

/// The process holding a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its pid (in the host's pid namespace).
    pub pid: u32,
    /// Its executable's name (`/proc/PID/comm`).
    pub name: Arc<str>,
    /// The container it runs in (the id ending its cgroup path).
    pub container: Option<Arc<str>>,
}

/// A connection some other source saw opened (the eBPF backend's connect
/// tracepoint), with the process that opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// IP protocol number.
    pub protocol: u8,
    /// Its local address.
    pub address: IpAddr,
    /// Its local port.
    pub port: u16,
    /// The process.
    pub pid: u32,
    /// Its executable's name.
    pub name: String,
    /// How long ago it was seen.
    pub age: Duration,
}

/// Reads the connections opened since it was last called.
pub type Connects = Box<dyn FnMut() -> Vec<Connected> + Send + 'static>;

/// What one scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Sockets and their owners: protocol, local address (concrete), port.
    pub sockets: Vec<((u8, IpAddr, u16), Owner)>,
    /// Processes read.
    pub processes: usize,
    /// Network namespaces found.
    pub namespaces: usize,
    /// Namespaces that could not be joined or asked, and the first error.
    pub unreachable: Vec<(u64, String)>,
}

/// `net:[4026531840]` → 4026531840.
fn bracketed(link: &Path, prefix: &str) -> Option<u64> {
    let text = link.to_str()?;
    text.strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The container id ending a cgroup path (`…/cri-containerd-<id>.scope`,
/// `…/docker/<id>`, `…/<id>`): 64 hex digits.
fn container_of(cgroup: &str) -> Option<&str> {
    let last = cgroup.lines().next_back()?.rsplit('/').next()?;
    let last = last.strip_suffix(".scope").unwrap_or(last);
    let id = last.rsplit(['-', ':']).next()?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// Scans `/proc` (at `proc`) and every network namespace of its processes.
pub fn scan(proc: &Path) -> Scan {
    let mut out = Scan::default();
    let mut pids: Vec<u32> = std::fs::read_dir(proc)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    // A namespace's first process, and each socket inode's.
    let mut namespaces: BTreeMap<u64, u32> = BTreeMap::new();
    let mut holders: HashMap<u32, u32> = HashMap::new();
    for &pid in &pids {
        let dir = proc.join(pid.to_string());
        let Some(ns) = std::fs::read_link(dir.join("ns/net"))
            .ok()
            .and_then(|l| bracketed(&l, "net:"))
        else {
            continue; // gone, or a kernel thread
        };
        out.processes += 1;
        namespaces.entry(ns).or_insert(pid);
        let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Some(inode) = std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| bracketed(&l, "socket:"))
                .and_then(|i| u32::try_from(i).ok())
            {
                holders.entry(inode).or_insert(pid);
            }
        }
    }
    out.namespaces = namespaces.len();
    let mut owners: HashMap<u32, Option<Owner>> = HashMap::new();
    let mut owner = |pid: u32| -> Option<Owner> {
        owners
            .entry(pid)
            .or_insert_with(|| {
                let dir = proc.join(pid.to_string());
                let name = std::fs::read_to_string(dir.join("comm")).ok()?;
                let cgroup = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
                Some(Owner {
                    pid,
                    name: name.trim_end().into(),
                    container: container_of(&cgroup).map(Into::into),
                })
            })
            .clone()
    };
    for (ns, pid) in namespaces {
        let path = proc.join(pid.to_string()).join("ns/net");
        let asked = netlink::in_namespace(&path, || {
            Ok((netlink::sockets()?, netlink::local_addresses()?))
        });
        let (sockets, addresses) = match asked {
            Ok(found) => found,
            Err(e) => {
                out.unreachable.push((ns, e.to_string()));
                continue;
            }
        };
        for s in sockets {
            let Some(o) = holders.get(&s.inode).and_then(|pid| owner(*pid)) else {
                continue;
            };
            if s.address.is_unspecified() {
                // Bound to every address; `::` takes IPv4 too unless
                // IPV6_V6ONLY, which sock_diag does not say: both.
                for a in &addresses {
                    if s.address.is_ipv6() || a.is_ipv4() {
                        out.sockets.push(((s.protocol, *a, s.port), o.clone()));
                    }
                }
            } else {
                out.sockets.push(((s.protocol, s.address, s.port), o));
            }
        }
    }
    out
}

/// Sockets seen, and when last.
#[derive(Debug)]
struct Remembered {
    sockets: HashMap<(u8, IpAddr, u16), (Owner, Instant)>,
    /// [`MAX_SOCKETS`] (smaller in tests).
    limit: usize,
    /// New sockets not remembered because the table was full.
    not_remembered: u64,
}

impl Default for Remembered {
    fn default() -> Remembered {
        Remembered {
            sockets: HashMap::new(),
            limit: MAX_SOCKETS,
            not_remembered: 0,
        }
    }
}

impl Remembered {
    /// Remembers `key` as `owner`'s, seen at `seen`, if it is known or the
    /// table has room (checked before anything is added).
    fn remember(&mut self, key: (u8, IpAddr, u16), owner: Owner, seen: Instant) {
        use std::collections::hash_map::Entry;
        let full = self.sockets.len() >= self.limit;
        match self.sockets.entry(key) {
            Entry::Occupied(mut e) => {
                e.insert((owner, seen));
            }
            Entry::Vacant(e) if !full => {
                e.insert((owner, seen));
            }
            Entry::Vacant(_) => self.not_remembered += 1,
        }
    }

    fn update(&mut self, scan: &Scan, now: Instant) {
        self.forget(now);
        for (key, o) in &scan.sockets {
            // The lowest pid holding it wins within a scan; a later scan
            // replaces an earlier one's owner (a port used again).
            if let Some((old, seen)) = self.sockets.get(key)
                && *seen == now
                && old.pid <= o.pid
            {
                continue;
            }
            self.remember(*key, o.clone(), now);
        }
    }

    /// Adds connections another source saw, each as of when it was seen;
    /// a scan's newer sight of the same socket stays.
    fn connected(&mut self, proc: &Path, connects: Vec<Connected>, now: Instant) {
        self.forget(now);
        for c in connects {
            let seen = now.checked_sub(c.age).unwrap_or(now);
            if now.duration_since(seen) > REMEMBER {
                continue;
            }
            let key = (c.protocol, c.address, c.port);
            if self.sockets.get(&key).is_some_and(|(_, s)| *s >= seen) {
                continue;
            }
            // The container, while the process is still there to ask.
            let cgroup = std::fs::read_to_string(proc.join(c.pid.to_string()).join("cgroup"))
                .unwrap_or_default();
            let owner = Owner {
                pid: c.pid,
                name: c.name.into(),
                container: container_of(&cgroup).map(Into::into),
            };
            self.remember(key, owner, seen);
        }
    }

    /// Forgets sockets not seen for [`REMEMBER`].
    fn forget(&mut self, now: Instant) {
        self.sockets
            .retain(|_, (_, seen)| now.duration_since(*seen) <= REMEMBER);
    }

    /// The sockets laid over `below`: each endpoint has what `below` says
    /// about the socket and the process.
    fn directory(&self, below: Option<&Arc<Directory>>, container: AttributeName) -> Directory {
        let mut d = Directory::new();
        let mut keys: Vec<_> = self.sockets.keys().copied().collect();
        keys.sort_unstable();
        for key @ (protocol, address, port) in keys {
            let (o, _) = &self.sockets[&key];
            let mut e = below
                .and_then(|b| b.lookup(protocol, address, port))
                .map_or_else(Endpoint::default, |e| (*e).clone());
            e.attributes.push(EndpointAttribute {
                name: PID,
                value: AttributeValue::Int(i64::from(o.pid)),
            });
            e.attributes.push(EndpointAttribute {
                name: EXECUTABLE,
                value: AttributeValue::Str(Arc::clone(&o.name)),
            });
            if let Some(id) = &o.container
                && !e.attributes.iter().any(|a| a.name == container)
            {
                e.attributes.push(EndpointAttribute {
                    name: container,
                    value: AttributeValue::Str(Arc::clone(id)),
                });
            }
            d.insert_socket(protocol, address, port, Arc::new(e));
        }
        match below {
            Some(b) => d.over(Arc::clone(b)),
            None => d,
        }
    }
}

/// What the process scans found, for the summary.
#[derive(Debug, Default)]
pub struct ProcessStats {
    /// Scans made.
    pub scans: AtomicU64,
    /// Sockets in the last directory.
    pub sockets: AtomicU64,
    /// Processes and namespaces in the last scan.
    pub processes: AtomicU64,
    /// Network namespaces in the last scan.
    pub namespaces: AtomicU64,
    /// Namespaces the last scan could not ask.
    pub unreachable: AtomicU64,
    /// Microseconds the last scan took.
    pub scan_us: AtomicU64,
    /// Connections the connect hook reported.
    pub connects: AtomicU64,
    /// New sockets not remembered because [`MAX_SOCKETS`] were.
    pub not_remembered: AtomicU64,
    /// When the last scan ended, in milliseconds since the Unix epoch (0:
    /// never).
    pub scanned_unix_ms: AtomicU64,
}

impl ProcessStats {
    /// One line for the summary.
    pub fn summary(&self) -> String {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "processes: {} sockets known of {} processes in {} network namespaces ({} not readable); {} scans, the last {:.1} ms; {} connections from the connect hook; {} sockets not remembered (table full)",
            n(&self.sockets),
            n(&self.processes),
            n(&self.namespaces),
            n(&self.unreachable),
            n(&self.scans),
            n(&self.scan_us) as f64 / 1e3,
            n(&self.connects),
            n(&self.not_remembered)
        )
    }
}

/// Keeps an [`EnrichmentView`] of the host's sockets, over another view's
/// directory (the cluster's), current from a thread of its own.
#[derive(Debug)]
pub struct ProcessRefresher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<ProcessStats>,
}

/// A warning sink, called from the refresher's thread.
pub type Warn = Box<dyn Fn(String) + Send + 'static>;

impl ProcessRefresher {
    /// Scans once (so that the first records are attributed), publishes
    /// into `out`, and goes on every `period`, and whenever `below`
    /// changes. Each time it also adds what `connects` read.
    ///
    /// # Errors
    /// The thread cannot start.
    pub fn start(
        proc: PathBuf,
        period: Duration,
        below: Option<EnrichmentView>,
        out: EnrichmentView,
        mut connects: Option<Connects>,
        warn: Warn,
    ) -> io::Result<ProcessRefresher> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ProcessStats::default());
        let container =
            AttributeName::new("container.name").map_err(|e| io::Error::other(e.to_string()))?;
        let (ready, first_published) = std::sync::mpsc::channel::<()>();
        let thread = {
            let (stop, stats) = (Arc::clone(&stop), Arc::clone(&stats));
            std::thread::Builder::new()
                .name("processes".into())
                .spawn(move || {
                    let mut remembered = Remembered::default();
                    let mut seen = 0;
                    let mut below_now = below.as_ref().map(|b| {
                        b.changed(&mut seen);
                        b.get()
                    });
                    let mut warned = false;
                    let mut signal = Some(ready);
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let s = scan(&proc);
                        let now = Instant::now();
                        remembered.update(&s, now);
                        if let Some(read) = connects.as_mut() {
                            let c = read();
                            stats.connects.fetch_add(c.len() as u64, Ordering::Relaxed);
                            remembered.connected(&proc, c, now);
                        }
                        stats.scans.fetch_add(1, Ordering::Relaxed);
                        stats.processes.store(s.processes as u64, Ordering::Relaxed);
                        stats.namespaces.store(s.namespaces as u64, Ordering::Relaxed);
                        stats.unreachable.store(s.unreachable.len() as u64, Ordering::Relaxed);
                        stats.scan_us.store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                        stats.scanned_unix_ms.store(
                            std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_millis() as u64),
                            Ordering::Relaxed,
                        );
                        if !warned && let Some((_, e)) = s.unreachable.first() {
                            warned = true;
                            warn(format!(
                                "cannot read the sockets of {} of {} network namespaces ({e}; \
                                 joining one needs CAP_SYS_ADMIN): flows of their processes get no process.* attributes",
                                s.unreachable.len(),
                                s.namespaces
                            ));
                        }
                        stats
                            .not_remembered
                            .store(remembered.not_remembered, Ordering::Relaxed);
                        let publish = |below: Option<&Arc<Directory>>| {
                            let d = remembered.directory(below, container);
                            stats.sockets.store(d.len() as u64, Ordering::Relaxed);
                            out.set(d);
                        };
                        publish(below_now.as_ref());
                        if let Some(ready) = signal.take() {
                            let _ = ready.send(());
                        }
                        // Until the next scan: a new directory below is
                        // laid under the sockets at once.
                        let next = Instant::now() + period;
                        while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(50));
                            if let Some(b) = below.as_ref().and_then(|b| b.changed(&mut seen)) {
                                below_now = Some(b);
                                publish(below_now.as_ref());
                            }
                        }
                    }
                })?
        };
        // The first directory (or the thread's end).
        let _ = first_published.recv();
        Ok(ProcessRefresher {
            stop,
            thread: Some(thread),
            stats,
        })
    }

    /// What the scans found so far (shared, for a metrics endpoint).
    pub fn stats(&self) -> &Arc<ProcessStats> {
        &self.stats
    }
}

impl Drop for ProcessRefresher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_end_cgroup_paths() {
        let id = "4f9c2a1b".repeat(8);
        for path in [
            format!("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope"),
            format!("0::/system.slice/docker-{id}.scope"),
            format!("12:pids:/docker/{id}\n0::/docker/{id}"),
            format!("0::/kubepods/besteffort/pod1/{id}"),
        ] {
            assert_eq!(container_of(&path), Some(id.as_str()), "{path}");
        }
        for path in ["0::/user.slice/session-3.scope", "0::/", ""] {
            assert_eq!(container_of(path), None, "{path}");
        }
    }

    #[test]
    fn links_name_their_inode() {
        assert_eq!(
            bracketed(Path::new("socket:[12345]"), "socket:"),
            Some(12345)
        );
        assert_eq!(
            bracketed(Path::new("net:[4026531840]"), "net:"),
            Some(4_026_531_840)
        );
        assert_eq!(bracketed(Path::new("pipe:[7]"), "socket:"), None);
        assert_eq!(bracketed(Path::new("/dev/null"), "socket:"), None);
    }

    #[test]
    fn a_full_table_keeps_what_it_has_and_counts_what_it_refuses() {
        let owner = |pid| Owner {
            pid,
            name: "p".into(),
            container: None,
        };
        let key = |port| (6u8, IpAddr::from([10, 0, 0, 1]), port);
        let mut r = Remembered {
            limit: 2,
            ..Remembered::default()
        };
        let now = Instant::now();
        let scan = Scan {
            sockets: vec![
                (key(1), owner(9)),
                (key(2), owner(8)),
                (key(3), owner(7)),
                (key(1), owner(5)),
            ],
            ..Scan::default()
        };
        r.update(&scan, now);
        assert_eq!(r.sockets.len(), 2);
        assert_eq!(r.not_remembered, 1, "port 3 refused");
        assert_eq!(r.sockets[&key(1)].0.pid, 5, "the lowest pid of a scan");
        // Known sockets are still updated when full; forgotten ones make room.
        let later = now + REMEMBER + Duration::from_secs(1);
        let scan = Scan {
            sockets: vec![(key(3), owner(4))],
            ..Scan::default()
        };
        r.update(&scan, later);
        assert_eq!(r.sockets.len(), 1);
        assert_eq!(r.sockets[&key(3)].0.pid, 4);
    }

    /// A socket this test opens is found with this process's pid and name.
    #[test]
    fn a_listening_socket_of_this_process_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let s = scan(Path::new("/proc"));
        let me = std::process::id();
        let found = s
            .sockets
            .iter()
            .find(|((p, a, po), _)| *p == 6 && a.is_loopback() && *po == port);
        let ((_, _, _), owner) = found.expect("our listening socket");
        assert_eq!(owner.pid, me);
        let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
        assert_eq!(&*owner.name, comm.trim_end());
    }
}
