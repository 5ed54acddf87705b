//! A veth pair in a network namespace of its own, for the tests and
//! benchmarks of live capture: frames sent into one end arrive on the
//! other, and nothing else is on the wire (IPv6 is off in the namespace, so
//! the kernel sends no neighbour or router solicitations). Needs root and
//! `ip` (iproute2).

use std::process::Command;

/// A namespace holding a veth pair `a` – `b`, both up; deleted with the
/// pair on drop.
#[derive(Debug)]
pub struct VethNamespace {
    /// The namespace's name (for `ip netns exec`).
    pub name: String,
    /// One end.
    pub a: String,
    /// The other end.
    pub b: String,
}

/// Runs `ip` with `args`; whether it succeeded.
pub fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

impl VethNamespace {
    /// Creates the namespace and pair, named after `tag` and the process
    /// id. `Err` says why it cannot be done here (not root, no `ip`), for a
    /// test to print when it skips.
    ///
    /// # Panics
    /// A step failed although the process is root and has `ip`.
    #[allow(unsafe_code)]
    pub fn create(tag: &str) -> Result<VethNamespace, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root to create a network namespace and veth pair".into());
        }
        if !ip(&["-V"]) {
            return Err("the `ip` command (iproute2) is missing".into());
        }
        let id = std::process::id();
        let ns = VethNamespace {
            name: format!("fs-{tag}-{id}"),
            a: format!("fsa{tag}{id}"),
            b: format!("fsb{tag}{id}"),
        };
        assert!(ns.a.len() <= 15, "interface names fit IFNAMSIZ: {}", ns.a);
        assert!(ip(&["netns", "add", &ns.name]), "ip netns add {}", ns.name);
        let n = ns.name.as_str();
        let ipv6_off = Command::new("ip")
            .args(["netns", "exec", n, "sh", "-c"])
            .arg(
                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && \
                 echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
            )
            .status()
            .is_ok_and(|s| s.success());
        assert!(ipv6_off, "turning IPv6 off in {n}");
        assert!(ip(&[
            "-n", n, "link", "add", &ns.a, "type", "veth", "peer", "name", &ns.b
        ]));
        assert!(ip(&["-n", n, "link", "set", &ns.a, "up"]));
        assert!(ip(&["-n", n, "link", "set", &ns.b, "up"]));
        Ok(ns)
    }

    /// Moves the calling thread (only) into the namespace.
    ///
    /// # Panics
    /// The namespace cannot be entered.
    pub fn enter(&self) {
        VethNamespace::enter_named(&self.name);
    }

    /// Moves the calling thread (only) into the namespace called `name`
    /// (for a thread that does not hold the `VethNamespace`).
    ///
    /// # Panics
    /// The namespace cannot be entered.
    #[allow(unsafe_code)]
    pub fn enter_named(name: &str) {
        use std::os::fd::AsRawFd;
        let path = format!("/var/run/netns/{name}");
        let file = std::fs::File::open(&path).expect("namespace file");
        // SAFETY: a valid namespace descriptor; setns changes only the
        // calling thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for VethNamespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair in it.
        ip(&["netns", "del", &self.name]);
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
    let (src, dst, sport, dport) = if reply {
        ([10, 9, 0, 2], [10, 9, 0, 1], 53u16, 40000 + flow)
    } else {
        ([10, 9, 0, 1], [10, 9, 0, 2], 40000 + flow, 53u16)
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
