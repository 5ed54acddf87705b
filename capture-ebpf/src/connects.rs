//! Which process opened each outgoing TCP connection, from the kernel:
//! `bpf/connects.bpf.c` on the `sock:inet_sock_set_state` tracepoint
//! remembers the process of a socket when it starts connecting and hands
//! it over, keyed by local address and port, once the connection is
//! established. [`ConnectHook::take`] reads and empties that map; process
//! attribution (`host::processes`) adds what it read to what its `/proc`
//! scans saw, so that connections that open and close between two scans
//! are attributed too.
//!
//! Attaching a tracepoint needs CAP_BPF and CAP_PERFMON (or root) and
//! tracefs mounted (`/sys/kernel/tracing`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use aya::maps::HashMap as BpfHashMap;
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};

use crate::capture::{EbpfError, nix_clock};
use engine::error::one_line;

/// The compiled tracepoint program (empty when the build had no clang).
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/connects.bpf.o"));

/// `struct fs_connect_key` of `bpf/connects.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsConnectKey {
    /// AF_INET or AF_INET6.
    pub family: u16,
    /// Local port, host order.
    pub port: u16,
    /// Local address: 4 or 16 bytes, the rest zero.
    pub address: [u8; 16],
}

/// `struct fs_connect` of `bpf/connects.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsConnect {
    /// When it was established (CLOCK_MONOTONIC, ns).
    pub time_ns: u64,
    /// The connecting process (thread group id).
    pub pid: u32,
    /// Its `comm`, NUL-padded.
    pub comm: [u8; 16],
    /// Explicit padding.
    pub pad: u32,
}

// SAFETY: both are `repr(C)`, made of integers and arrays of integers with
// no holes (20 bytes aligned to 2; 32 bytes aligned to 8, the layout test
// checks), so any bit pattern is a valid value.
unsafe impl aya::Pod for FsConnectKey {}
// SAFETY: as above.
unsafe impl aya::Pod for FsConnect {}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// One connection read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Its local address.
    pub address: IpAddr,
    /// Its local port.
    pub port: u16,
    /// The process that opened it.
    pub pid: u32,
    /// That process's `comm`.
    pub comm: String,
    /// How long ago it was established.
    pub age: Duration,
}

/// The loaded and attached tracepoint; detached when dropped.
#[derive(Debug)]
pub struct ConnectHook {
    ebpf: Ebpf,
    mounted_tracefs: bool,
}

/// Where tracefs is mounted, or mounts it at `/sys/kernel/tracing` (aya
/// finds a tracepoint's id there); whether this call mounted it. Hosts
/// usually have it (systemd mounts it at boot), but `ip netns exec` gives
/// its command a fresh `/sys` without it.
fn ensure_tracefs() -> Result<bool, String> {
    let mounted = |p: &str| std::path::Path::new(p).join("events").is_dir();
    if mounted("/sys/kernel/tracing") || mounted("/sys/kernel/debug/tracing") {
        return Ok(false);
    }
    // SAFETY: every argument is a NUL-terminated string literal that lives
    // for the call, and tracefs takes no data.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "tracefs is not mounted and mounting it at /sys/kernel/tracing failed ({}; needs \
             CAP_SYS_ADMIN)",
            std::io::Error::last_os_error()
        ));
    }
    Ok(true)
}

impl ConnectHook {
    /// Loads the program and attaches it to `sock:inet_sock_set_state`.
    ///
    /// # Errors
    /// Built without it, or the kernel refuses to load or attach it.
    pub fn load() -> Result<ConnectHook, EbpfError> {
        if OBJECT.is_empty() {
            return Err(EbpfError::Unavailable(env!("FLOWSPAN_BPF_WHY")));
        }
        let mut ebpf = EbpfLoader::new()
            .load(OBJECT)
            .map_err(|e| EbpfError::Load(format!("the connect tracepoint: {}", one_line(&e))))?;
        let program: &mut TracePoint = ebpf
            .program_mut("connect_state")
            .ok_or_else(|| EbpfError::Load("the object has no program connect_state".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| EbpfError::Load(one_line(&e)))?;
        program
            .load()
            .map_err(|e| EbpfError::Load(format!("the connect tracepoint: {}", one_line(&e))))?;
        let mounted_tracefs = ensure_tracefs().map_err(EbpfError::Load)?;
        program.attach("sock", "inet_sock_set_state").map_err(|e| {
            let line = one_line(&e);
            let hint = if line.contains("tracefs") {
                " (mount it: mount -t tracefs nodev /sys/kernel/tracing)"
            } else {
                ""
            };
            EbpfError::Load(format!(
                "attaching the connect tracepoint sock:inet_sock_set_state: {line}{hint}"
            ))
        })?;
        Ok(ConnectHook {
            ebpf,
            mounted_tracefs,
        })
    }

    /// Whether loading it mounted tracefs (at `/sys/kernel/tracing`).
    pub fn mounted_tracefs(&self) -> bool {
        self.mounted_tracefs
    }

    /// The connections established since the last call (the map is
    /// emptied as it is read).
    ///
    /// # Errors
    /// The map cannot be read.
    pub fn take(&mut self) -> Result<Vec<Connect>, EbpfError> {
        let bad = |e: aya::maps::MapError| EbpfError::Map {
            map: "connects",
            message: one_line(&e),
        };
        let map = self.ebpf.map_mut("connects").ok_or(EbpfError::Map {
            map: "connects",
            message: "not in the object".into(),
        })?;
        let mut map: BpfHashMap<_, FsConnectKey, FsConnect> =
            BpfHashMap::try_from(map).map_err(bad)?;
        let now = nix_clock(libc::CLOCK_MONOTONIC);
        let mut out = Vec::new();
        let keys: Vec<FsConnectKey> = map.keys().filter_map(Result::ok).collect();
        for key in keys {
            let Ok(v) = map.get(&key, 0) else { continue };
            let _ = map.remove(&key);
            let address = match key.family {
                AF_INET => IpAddr::V4(Ipv4Addr::new(
                    key.address[0],
                    key.address[1],
                    key.address[2],
                    key.address[3],
                )),
                AF_INET6 => IpAddr::V6(Ipv6Addr::from(key.address)),
                _ => continue,
            };
            let len = v.comm.iter().position(|b| *b == 0).unwrap_or(v.comm.len());
            out.push(Connect {
                address,
                port: key.port,
                pid: v.pid,
                comm: String::from_utf8_lossy(&v.comm[..len]).into_owned(),
                age: Duration::from_nanos(now.saturating_sub(v.time_ns)),
            });
        }
        Ok(out)
    }
}
