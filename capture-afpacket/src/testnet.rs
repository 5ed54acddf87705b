//! A veth pair joining two network namespaces of its own, for the tests and
//! benchmarks of live capture: frames sent into end `a` (namespace `left`)
//! arrive on end `b` (namespace `right`), and nothing else is on the wire
//! (IPv6 is off in both namespaces, so the kernel sends no neighbour or
//! router solicitations). Offloads are off unless asked for, so that every
//! frame on the wire is one packet to the capture. Needs root, `ip`
//! (iproute2) and, for the offloads, `ethtool`.

use std::process::Command;

/// Says why a test cannot run here and lets it skip. In CI (`CI` set and
/// not `false`), and when the tests run as root (who can install anything
/// they need), a missing tool or data set is an install step's fault: the
/// test fails instead, so that a skip never passes for a success.
///
/// # Panics
/// In CI, or as root.
#[allow(unsafe_code)]
pub fn skip(why: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(!ci, "CI must run this test, but {why}");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        !root,
        "a test run as root must run this test, but {why} (see README, \"What the tests need\")"
    );
    eprintln!("SKIP: {why}; the test did not run");
}

/// An engine process that is killed (SIGKILL) and reaped if it is dropped
/// while still running: a test that fails midway then leaves no engine
/// capturing, and loading the machine, after it. Derefs to the
/// [`Child`](std::process::Child).
#[derive(Debug)]
pub struct EngineChild(pub std::process::Child);

impl std::ops::Deref for EngineChild {
    type Target = std::process::Child;

    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for EngineChild {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for EngineChild {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// An `engine` started by [`start_engine_in`].
#[derive(Debug)]
pub struct StartedEngine {
    /// The engine process (`ip netns exec` execs it: its pid is the
    /// engine's).
    pub child: EngineChild,
    /// Its stderr lines after the first one, as they come.
    pub lines: std::sync::mpsc::Receiver<String>,
    /// All of its stderr (the first line included), once it exits.
    pub stderr: std::thread::JoinHandle<String>,
    /// Its first stderr line that is not a warning (`engine: capturing on
    /// …` when it started).
    pub first: String,
}

/// Starts `engine ARGS` inside namespace `ns`, stdout to /dev/null and
/// stderr read line by line on a thread of its own; waits up to 20 s for
/// its first line that is not a warning.
///
/// # Errors
/// The engine cannot be started, or says nothing within 20 s.
pub fn start_engine_in(
    ns: &str,
    engine: &std::path::Path,
    args: &[&str],
) -> Result<StartedEngine, String> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(engine)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", engine.display()))?;
    let err = child.stderr.take().ok_or("no stderr pipe")?;
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // Warnings may come first (the reader keeps them for the caller).
    let first = loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .map_err(|_| format!("{} said nothing within 20 s", engine.display()))?;
        if !line.starts_with("engine: warning: ") {
            break line;
        }
    };
    Ok(StartedEngine {
        child: EngineChild(child),
        lines,
        stderr,
        first,
    })
}

/// How [`VethPair::create_with`] sets up the pair.
#[derive(Debug, Clone, Copy, Default)]
pub struct Setup {
    /// Leave the kernel's segmentation and checksum offloads on (veth has
    /// TSO/GSO on by default), so that TCP sends super-frames.
    pub offloads: bool,
    /// Give `a` the address [`LEFT_IP`] and `b` [`RIGHT_IP`] (a /24), so
    /// that sockets in the two namespaces can talk.
    pub addresses: bool,
}

/// The address of end `a` with [`Setup::addresses`].
pub const LEFT_IP: &str = "10.77.0.1";
/// The address of end `b` with [`Setup::addresses`].
pub const RIGHT_IP: &str = "10.77.0.2";

/// Two namespaces `left` and `right` joined by the veth pair `a` – `b`, both
/// ends up; the namespaces (and so the pair) are deleted on drop.
#[derive(Debug)]
pub struct VethPair {
    /// The namespace holding `a` (for `ip netns exec`).
    pub left: String,
    /// The namespace holding `b`.
    pub right: String,
    /// The end in `left`.
    pub a: String,
    /// The end in `right`.
    pub b: String,
}

/// Runs `ip` with `args`; whether it succeeded.
pub fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `sh -c script` inside namespace `ns`; whether it succeeded.
fn ns_sh(ns: &str, script: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", script])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl VethPair {
    /// [`VethPair::create_with`] with offloads off and no addresses.
    ///
    /// # Errors
    /// See [`VethPair::create_with`].
    pub fn create(tag: &str) -> Result<VethPair, String> {
        VethPair::create_with(tag, Setup::default())
    }

    /// [`create_with`](Self::create_with) for a test: `None`, with a
    /// message, where the test cannot run here. In CI (`CI` set and not
    /// `false`) a missing privilege or tool is the install step's fault,
    /// so it fails the test instead of skipping it.
    ///
    /// # Panics
    /// In CI, when the pair cannot be made; anywhere, when a step fails.
    pub fn for_test(tag: &str, setup: Setup) -> Option<VethPair> {
        match VethPair::create_with(tag, setup) {
            Ok(pair) => Some(pair),
            Err(why) => {
                skip(&why);
                None
            }
        }
    }

    /// Creates the namespaces and the pair, named after `tag` and the
    /// process id. `Err` says why it cannot be done here (not root, no `ip`
    /// or `ethtool`), for a test to print when it skips.
    ///
    /// # Panics
    /// A step failed although the process is root and has the tools.
    #[allow(unsafe_code)]
    pub fn create_with(tag: &str, setup: Setup) -> Result<VethPair, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root to create network namespaces and a veth pair".into());
        }
        if !ip(&["-V"]) {
            return Err("the `ip` command (iproute2) is missing".into());
        }
        let has_ethtool = Command::new("ethtool")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !setup.offloads && !has_ethtool {
            return Err("the `ethtool` command is missing (needed to turn offloads off)".into());
        }
        let id = std::process::id();
        let pair = VethPair {
            left: format!("fs-{tag}-{id}-l"),
            right: format!("fs-{tag}-{id}-r"),
            a: format!("fsa{tag}{id}"),
            b: format!("fsb{tag}{id}"),
        };
        assert!(
            pair.a.len() <= 15,
            "interface names fit IFNAMSIZ: {}",
            pair.a
        );
        for ns in [&pair.left, &pair.right] {
            assert!(ip(&["netns", "add", ns]), "ip netns add {ns}");
            assert!(
                ns_sh(
                    ns,
                    "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && \
                     echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 && \
                     ip link set lo up"
                ),
                "turning IPv6 off in {ns}"
            );
        }
        let (l, r) = (pair.left.as_str(), pair.right.as_str());
        assert!(ip(&[
            "-n", l, "link", "add", &pair.a, "type", "veth", "peer", "name", &pair.b, "netns", r
        ]));
        for (ns, dev, addr) in [(l, &pair.a, LEFT_IP), (r, &pair.b, RIGHT_IP)] {
            if !setup.offloads {
                assert!(
                    ns_sh(
                        ns,
                        &format!("ethtool -K {dev} rx off tx off sg off tso off gso off gro off")
                    ),
                    "ethtool -K {dev}: turning offloads off"
                );
            }
            if setup.addresses {
                assert!(ip(&[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    dev
                ]));
            }
            assert!(ip(&["-n", ns, "link", "set", dev, "up"]));
        }
        Ok(pair)
    }

    /// Moves the calling thread (only) into `left`, where `a` is.
    ///
    /// # Panics
    /// The namespace cannot be entered.
    pub fn enter_left(&self) {
        enter_namespace(&self.left);
    }

    /// Moves the calling thread (only) into `right`, where `b` is.
    ///
    /// # Panics
    /// The namespace cannot be entered.
    pub fn enter_right(&self) {
        enter_namespace(&self.right);
    }
}

/// Moves the calling thread (only) into the network namespace called `name`
/// (for a thread that does not hold the [`VethPair`]). Sockets opened before
/// stay in the namespace they were opened in.
///
/// # Panics
/// The namespace cannot be entered.
#[allow(unsafe_code)]
pub fn enter_namespace(name: &str) {
    use std::os::fd::AsRawFd;
    let path = format!("/var/run/netns/{name}");
    let file = std::fs::File::open(&path).expect("namespace file");
    // SAFETY: a valid namespace descriptor; setns changes only the calling
    // thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the
        // pair.
        ip(&["netns", "del", &self.left]);
        ip(&["netns", "del", &self.right]);
    }
}

/// Source MAC of [`udp_frame`]'s frames (locally administered).
pub const SRC_MAC: [u8; 6] = [0x02, 0xf5, 0, 0, 0, 1];
/// Destination MAC of [`udp_frame`]'s frames.
pub const DST_MAC: [u8; 6] = [0x02, 0xf5, 0, 0, 0, 2];

/// An Ethernet/IPv4/UDP frame of flow `flow` (10.9.0.1:40000+flow to
/// 10.9.0.2:53, or the reply), with an optional 802.1Q tag and 18 bytes of
/// zero payload; the checksums are left 0.
pub fn udp_frame(flow: u16, reply: bool, vlan: Option<u16>) -> Vec<u8> {
    udp_frame_from([10, 9, 0, 1], flow, reply, vlan)
}

/// [`udp_frame`] with the client at `client` instead of 10.9.0.1.
pub fn udp_frame_from(client: [u8; 4], flow: u16, reply: bool, vlan: Option<u16>) -> Vec<u8> {
    let server = [10, 9, 0, 2];
    let (src, dst, sport, dport) = if reply {
        (server, client, 53u16, 40000 + flow)
    } else {
        (client, server, 40000 + flow, 53u16)
    };
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    if let Some(tci) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let payload = [0u8; 18];
    let total = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0]);
    let l = f.len();
    f[l - 10..l - 8].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&payload);
    f
}

/// The 16-bit ones' complement sum of `bytes` (the IP and ICMP checksum).
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet/IPv4/ICMP echo request from `src` to `dst` with identifier
/// `id`, with valid checksums, so that the receiving host answers it.
pub fn icmp_echo_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&1u16.to_be_bytes()); // sequence
    icmp.extend_from_slice(&[0x5a; 32]);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(14 + ip.len() + icmp.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}

/// The MAC address of interface `dev` in namespace `ns`.
///
/// # Panics
/// `ip` cannot tell it.
pub fn mac_of(ns: &str, dev: &str) -> [u8; 6] {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", dev])
        .output()
        .expect("running ip link show");
    let text = String::from_utf8_lossy(&out.stdout);
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no link/ether in {text:?}"));
    let mut bytes = [0u8; 6];
    for (b, hex) in bytes.iter_mut().zip(mac.split(':')) {
        *b = u8::from_str_radix(hex, 16).expect("hex MAC");
    }
    bytes
}

/// TCP payload bytes `stream` has sent so far, retransmissions included
/// (`tcpi_bytes_sent` of `TCP_INFO`, Linux 4.19 and later).
///
/// # Panics
/// The kernel does not report it.
pub fn tcp_bytes_sent(stream: &std::net::TcpStream) -> u64 {
    use std::os::fd::AsFd;
    /// `tcpi_bytes_sent`'s offset in `struct tcp_info`.
    const BYTES_SENT: usize = 200;
    let mut info = [0u8; 256];
    let len = crate::sys::get_option(stream.as_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, &mut info)
        .unwrap_or_else(|e| panic!("TCP_INFO: {e}"));
    assert!(len >= BYTES_SENT + 8, "tcp_info of {len} bytes");
    let mut b = [0u8; 8];
    b.copy_from_slice(&info[BYTES_SENT..BYTES_SENT + 8]);
    u64::from_ne_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_bytes_sent_counts_what_was_written() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().expect("accept");
        client.write_all(&[1; 1000]).expect("write");
        let mut got = [0u8; 1000];
        server.read_exact(&mut got).expect("read");
        assert_eq!(tcp_bytes_sent(&client), 1000);
        assert_eq!(tcp_bytes_sent(&server), 0);
    }

    #[test]
    fn an_engine_child_dropped_while_running_is_killed_and_reaped() {
        let child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = child.id().to_string();
        let start = std::time::Instant::now();
        drop(EngineChild(child));
        // Killed, not waited for until it exits by itself.
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        // Reaped, so no process has that pid any more (pids are not reused
        // this fast).
        assert!(!std::path::Path::new("/proc").join(&pid).exists(), "{pid}");
    }

    #[test]
    fn checksums_of_the_echo_frame_verify() {
        let f = icmp_echo_frame(SRC_MAC, DST_MAC, [10, 0, 0, 1], [10, 0, 0, 2], 7);
        assert_eq!(checksum(&f[14..34]), 0, "IP header");
        assert_eq!(checksum(&f[34..]), 0, "ICMP message");
        assert_eq!(checksum(&[0xff]), !0xff00);
    }
}
