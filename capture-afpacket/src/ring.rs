//! One AF_PACKET socket with a TPACKET_V3 receive ring.
//!
//! The kernel fills fixed-size blocks of a ring shared with this process
//! (`mmap`), each holding many packets, and marks a block as the user's when
//! it is full or its timeout expired. [`Ring::next_block`] lends out the
//! next such block; dropping the [`Block`] hands it back to the kernel. The
//! packets are parsed from the block with bounds checks, in safe code: the
//! only `unsafe` is the socket set-up, the mapping, and the block status
//! word, which the kernel and this process hand back and forth.
//!
//! Set-up follows the order the kernel requires: `socket` →
//! `PACKET_VERSION` → (`PACKET_VNET_HDR`) → `PACKET_RX_RING` → `mmap` →
//! `bind` → `PACKET_FANOUT` (a fanout group can only be joined by a bound
//! socket) → `PACKET_FANOUT_DATA` (the group's program).
//!
//! A fanout group splits traffic by a classic BPF program of ours
//! ([`FANOUT_BY_ADDRESSES`]) rather than the kernel's flow hash: the kernel
//! hashes ports too, so the later fragments of a datagram (which have none)
//! could land on another ring than the first, and be read out of order.
//! Hashing the two addresses alone keeps everything between two hosts on
//! one ring, in arrival order, both directions together.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::fanout::{FANOUT_BY_ADDRESSES, PACKET_FANOUT_CBPF, PACKET_FANOUT_DATA};
use crate::packet::Packets;
use crate::sys::{bind_socket, get_option, packet_socket, set_option, sys_err};

/// Sizes of a ring, and the fanout group it joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per block: a multiple of the page size, at least 1 MiB so that
    /// GSO/GRO super-frames (up to 64 KiB) always fit.
    pub block_size: u32,
    /// Blocks in the ring.
    pub block_count: u32,
    /// A partly filled block is handed over after this long.
    pub block_timeout: Duration,
    /// Fanout group to join: sockets of one group on one interface share
    /// its packets by [`FANOUT_BY_ADDRESSES`], everything between two hosts
    /// on the same socket. `None` captures everything on this socket.
    pub fanout_group: Option<u16>,
    /// Ask the kernel for a `virtio_net_hdr` before each frame
    /// (`PACKET_VNET_HDR`), which gives the segment size of GSO/GRO
    /// super-frames ([`Packet::gso`](crate::Packet::gso)).
    pub gso_header: bool,
    /// A capture filter, applied in the kernel (`SO_ATTACH_FILTER`, set
    /// before the socket is bound, so that nothing it leaves out is ever
    /// queued): packets it leaves out never reach the ring, and are not in
    /// the ring's statistics. Frames whose VLAN tag the kernel took out
    /// pass whole, for userspace to filter with the tag back in place.
    pub filter: Option<engine::bpf::FrameFilter>,
}

impl RingConfig {
    /// Checks a block size: a multiple of the page size (4096), at least
    /// 1 MiB so that GSO/GRO super-frames (up to 64 KiB) always fit.
    ///
    /// # Errors
    /// What a usable size is, to show after the offending value.
    pub fn check_block_size(bytes: u32) -> Result<(), String> {
        if (1 << 20..=MAX_BLOCK_SIZE).contains(&bytes) && bytes.is_multiple_of(4096) {
            Ok(())
        } else {
            Err(format!(
                "expected a multiple of 4096 from 1 MiB (1048576) to {} MiB ({MAX_BLOCK_SIZE})",
                MAX_BLOCK_SIZE >> 20
            ))
        }
    }
}

/// Largest ring block: 64 MiB, far above what a super-frame needs.
pub const MAX_BLOCK_SIZE: u32 = 64 << 20;

/// Most kernel memory all rings together may take, whatever the machine:
/// ring memory is locked kernel memory that no memory cgroup charges, so a
/// mistaken flag could otherwise exhaust the host (it has, through the
/// OOM killer).
pub const MAX_RING_MEMORY: u64 = 4 << 30;

/// Checks the kernel memory that `rings` rings of `block_count` blocks of
/// `block_size` bytes take before any is opened: at most
/// [`MAX_RING_MEMORY`], and at most a quarter of the memory the kernel
/// says is available (`MemAvailable` in `/proc/meminfo`, when it can be
/// read). Returns the total.
///
/// # Errors
/// The total and the limit it passes, as a sentence to follow the flags
/// that set it.
pub fn check_ring_memory(block_size: u32, block_count: u32, rings: usize) -> Result<u64, String> {
    let total = u64::from(block_size)
        .saturating_mul(u64::from(block_count))
        .saturating_mul(rings as u64);
    let available = mem_available();
    let limit = available.map_or(MAX_RING_MEMORY, |a| MAX_RING_MEMORY.min(a / 4));
    if total <= limit {
        return Ok(total);
    }
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    Err(match available {
        Some(a) if a / 4 < MAX_RING_MEMORY => format!(
            "{:.1} GiB of kernel ring memory, more than a quarter of the {:.1} GiB available ({:.1} GiB)",
            gib(total),
            gib(a),
            gib(limit)
        ),
        _ => format!(
            "{:.1} GiB of kernel ring memory, more than the limit of {:.1} GiB",
            gib(total),
            gib(limit)
        ),
    })
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn mem_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

impl Default for RingConfig {
    /// 2 MiB blocks, 32 of them (64 MiB per ring), 10 ms block timeout, no
    /// fanout, GSO header on.
    fn default() -> Self {
        RingConfig {
            block_size: 2 << 20,
            block_count: 32,
            block_timeout: Duration::from_millis(10),
            fanout_group: None,
            gso_header: true,
            filter: None,
        }
    }
}

/// Why a ring could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// No interface has this name.
    #[error("interface {0:?} does not exist")]
    UnknownInterface(String),
    /// Opening a packet socket was refused.
    #[error(
        "opening a packet socket on {interface:?} was refused: live capture needs CAP_NET_RAW (run as root or grant it with `setcap cap_net_raw+ep`)"
    )]
    NoPrivilege {
        /// The interface asked for.
        interface: String,
    },
    /// The ring's sizes are not usable.
    #[error("bad ring size: {0}")]
    BadConfig(String),
    /// A system call failed.
    #[error("{call} on {interface:?} failed: {source}")]
    Sys {
        /// What was being done.
        call: &'static str,
        /// The interface asked for.
        interface: String,
        /// The error.
        source: io::Error,
    },
}

/// Kernel counters of a socket since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Packets the kernel passed to the socket (including dropped ones).
    pub packets: u64,
    /// Packets dropped because the ring was full.
    pub drops: u64,
    /// Times the ring froze (every block was the user's).
    pub freezes: u64,
}

/// An AF_PACKET socket with a TPACKET_V3 receive ring.
#[derive(Debug)]
pub struct Ring {
    fd: OwnedFd,
    map: NonNull<u8>,
    map_len: usize,
    block_size: usize,
    block_count: usize,
    /// The block to look at next.
    current: usize,
    interface: String,
    ifindex: u32,
    stats: RingStats,
    /// Frames are preceded by a `virtio_net_hdr`.
    gso_header: bool,
}

// SAFETY: the mapping belongs to this `Ring` alone (it is unmapped on drop
// and never shared), so moving the ring to another thread moves sole access
// to it; the kernel side synchronises through the block status words.
#[allow(unsafe_code)]
unsafe impl Send for Ring {}

/// The header of a TPACKET_V3 block (`struct tpacket_block_desc`), read by
/// offset: version, offset_to_priv, then `tpacket_hdr_v1`.
pub(crate) const BLOCK_STATUS: usize = 8;
pub(crate) const BLOCK_NUM_PKTS: usize = 12;
pub(crate) const BLOCK_FIRST_PKT: usize = 16;

/// The length of `struct tpacket3_hdr`, after which (aligned to 16) comes
/// the `struct sockaddr_ll`.
pub(crate) const TPACKET3_HDR_LEN: usize = 48;

impl Ring {
    /// Opens a socket on `interface` with a ring as `config` says.
    ///
    /// # Errors
    /// The interface does not exist, the process lacks CAP_NET_RAW, the
    /// sizes are unusable, or a system call failed (named in the error).
    #[allow(unsafe_code)]
    pub fn open(interface: &str, config: &RingConfig) -> Result<Ring, RingError> {
        if let Err(expected) = RingConfig::check_block_size(config.block_size) {
            return Err(RingError::BadConfig(format!(
                "block size {} ({expected})",
                config.block_size
            )));
        }
        if config.block_count == 0 {
            return Err(RingError::BadConfig("0 blocks".into()));
        }
        let map_len = usize::try_from(u64::from(config.block_size) * u64::from(config.block_count))
            .map_err(|_| RingError::BadConfig("ring larger than the address space".into()))?;
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // Protocol 0: the socket receives nothing until it is bound to the
        // interface (with ETH_P_ALL), so no other interface's packets, and
        // none the filter would leave out, get in first.
        let (fd, ifindex) = packet_socket(interface, 0)?;
        if let Some(filter) = &config.filter {
            let link_type = crate::packet::link_type_of(hardware_type(&fd, interface)?);
            let program = crate::fanout::socket_filter(filter.program(link_type))
                .map_err(RingError::BadConfig)?;
            let fprog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_ptr().cast_mut(),
            };
            // The kernel copies the program during the call.
            set_option(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
                .map_err(|_| sys_err("setsockopt(SO_ATTACH_FILTER)", interface))?;
        }
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        set_option(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version)
            .map_err(|_| sys_err("setsockopt(PACKET_VERSION)", interface))?;
        if config.gso_header {
            // Must come before the ring exists.
            let on: libc::c_int = 1;
            set_option(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &on)
                .map_err(|_| sys_err("setsockopt(PACKET_VNET_HDR)", interface))?;
        }
        let frame_size = 2048u32;
        let req = libc::tpacket_req3 {
            tp_block_size: config.block_size,
            tp_block_nr: config.block_count,
            tp_frame_size: frame_size,
            tp_frame_nr: config.block_size / frame_size * config.block_count,
            tp_retire_blk_tov: u32::try_from(config.block_timeout.as_millis())
                .unwrap_or(u32::MAX)
                .max(1),
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        set_option(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
            .map_err(|_| sys_err("setsockopt(PACKET_RX_RING)", interface))?;
        // SAFETY: maps the ring the kernel just allocated for this socket,
        // at a fresh address; the result is checked.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(sys_err("mmap of the ring", interface));
        }
        let Some(map) = NonNull::new(map.cast::<u8>()) else {
            return Err(sys_err("mmap of the ring", interface));
        };
        let ring = Ring {
            fd,
            map,
            map_len,
            block_size: config.block_size as usize,
            block_count: config.block_count as usize,
            current: 0,
            interface: interface.to_owned(),
            ifindex,
            stats: RingStats::default(),
            gso_header: config.gso_header,
        };
        bind_socket(&ring.fd, ifindex, protocol, interface)?;
        if let Some(group) = config.fanout_group {
            let arg: u32 = u32::from(group) | (PACKET_FANOUT_CBPF << 16);
            set_option(&ring.fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)
                .map_err(|_| sys_err("setsockopt(PACKET_FANOUT)", interface))?;
            let program = libc::sock_fprog {
                len: FANOUT_BY_ADDRESSES.len() as u16,
                filter: FANOUT_BY_ADDRESSES.as_ptr().cast_mut(),
            };
            // The kernel copies the program during the call.
            set_option(&ring.fd, libc::SOL_PACKET, PACKET_FANOUT_DATA, &program)
                .map_err(|_| sys_err("setsockopt(PACKET_FANOUT_DATA)", interface))?;
        }
        Ok(ring)
    }

    /// The interface's name as given.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The interface's index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The status word of block `i`, shared with the kernel.
    #[allow(unsafe_code)]
    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: block `i` lies inside the mapping (i < block_count), its
        // status word is 4-aligned (blocks start at page multiples, the word
        // at offset 8), and it lives as long as `self`. The kernel accesses
        // it only atomically with respect to this protocol: it sets
        // TP_STATUS_USER with release semantics after filling the block and
        // reads TP_STATUS_KERNEL after we store it.
        unsafe {
            AtomicU32::from_ptr(
                self.map
                    .as_ptr()
                    .add(i * self.block_size + BLOCK_STATUS)
                    .cast::<u32>(),
            )
        }
    }

    /// The next block the kernel has handed over, if any (without waiting).
    #[allow(unsafe_code)]
    pub fn next_block(&mut self) -> Option<Block<'_>> {
        let i = self.current;
        if self.status(i).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the block is ours until we store TP_STATUS_KERNEL (in
        // `Block::drop`): the kernel does not write it meanwhile, so a
        // shared slice over it is sound for the `Block`'s lifetime, which
        // borrows `self` mutably. The status word inside it is only touched
        // again, atomically, after the slice is gone.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add(i * self.block_size).cast_const(),
                self.block_size,
            )
        };
        Some(Block {
            bytes,
            gso_header: self.gso_header,
            ring_status: self.status(i) as *const AtomicU32,
            current: &mut self.current,
            block_count: self.block_count,
        })
    }

    /// Waits until a block is ready or `timeout` passes; `true` if a block
    /// is ready.
    ///
    /// # Errors
    /// `poll` failed (not counting interruptions by signals, which return
    /// `false`), or the socket reported an error (its interface went down or
    /// away).
    pub fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        match wait_any(std::slice::from_ref(self), timeout)? {
            Some((_, Some(e))) => Err(e),
            Some((_, None)) => Ok(true),
            None => Ok(false),
        }
    }

    fn socket_error(&self) -> io::Error {
        let mut err: libc::c_int = 0;
        match get_option(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR, &mut err) {
            Ok(_) if err != 0 => io::Error::from_raw_os_error(err),
            _ => io::Error::other("socket error"),
        }
    }

    /// The kernel's counters since the socket was opened. (The kernel resets
    /// them on each read; the ring keeps the sums.)
    ///
    /// # Errors
    /// `getsockopt(PACKET_STATISTICS)` failed.
    pub fn stats(&mut self) -> io::Result<RingStats> {
        let mut s = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        get_option(
            self.fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut s,
        )?;
        self.stats.packets += u64::from(s.tp_packets);
        self.stats.drops += u64::from(s.tp_drops);
        self.stats.freezes += u64::from(s.tp_freeze_q_cnt);
        Ok(self.stats)
    }
}

/// Waits until one of `rings` has a block ready or `timeout` passes; returns
/// the index of a ready ring, if any. A ring whose socket reports an error
/// (its interface went down or away) is returned with the error, so that the
/// caller can drop it and go on with the others.
///
/// # Errors
/// `poll` itself failed (not counting interruptions by signals).
#[allow(unsafe_code)]
pub fn wait_any(
    rings: &[Ring],
    timeout: Duration,
) -> io::Result<Option<(usize, Option<io::Error>)>> {
    let ready = |rings: &[Ring]| {
        rings
            .iter()
            .position(|r| r.status(r.current).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0)
    };
    if let Some(i) = ready(rings) {
        return Ok(Some((i, None)));
    }
    let mut fds: Vec<libc::pollfd> = rings
        .iter()
        .map(|r| libc::pollfd {
            fd: r.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        })
        .collect();
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `fds` holds `fds.len()` valid pollfd entries.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(None)
        } else {
            Err(e)
        };
    }
    if let Some(i) = fds.iter().position(|p| p.revents & libc::POLLERR != 0) {
        return Ok(Some((i, Some(rings[i].socket_error()))));
    }
    Ok(ready(rings).map(|i| (i, None)))
}

impl Drop for Ring {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`; no `Block`
        // borrows it any more (they borrow `self`).
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.map_len);
        }
    }
}

/// A block of packets lent by the kernel; dropping it hands it back.
#[derive(Debug)]
pub struct Block<'a> {
    bytes: &'a [u8],
    gso_header: bool,
    ring_status: *const AtomicU32,
    current: &'a mut usize,
    block_count: usize,
}

impl Block<'_> {
    /// The packets in the block, in capture order.
    pub fn packets(&self) -> Packets<'_> {
        Packets::new(self.bytes, self.gso_header)
    }
}

impl Drop for Block<'_> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: `ring_status` points into the ring, which outlives this
        // block (it is borrowed for 'a); see `Ring::status`.
        let status = unsafe { &*self.ring_status };
        status.store(libc::TP_STATUS_KERNEL, Ordering::Release);
        *self.current = (*self.current + 1) % self.block_count;
    }
}

/// The hardware type (`ARPHRD_*`) of `interface`, from `SIOCGIFHWADDR` on
/// the packet socket.
#[allow(unsafe_code)]
fn hardware_type(fd: &OwnedFd, interface: &str) -> Result<u16, RingError> {
    // SAFETY: an all-zero ifreq is valid; the name is set below.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req
        .ifr_name
        .iter_mut()
        .zip(interface.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads the name and writes the hardware address
    // into `req`, which lives across the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &raw mut req) };
    if rc != 0 {
        return Err(sys_err("ioctl(SIOCGIFHWADDR)", interface));
    }
    // SAFETY: the call succeeded, so the union holds the hardware address.
    Ok(unsafe { req.ifr_ifru.ifru_hwaddr.sa_family })
}
