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

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

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
    /// super-frames ([`Packet::gso`]).
    pub gso_header: bool,
}

impl RingConfig {
    /// Checks a block size: a multiple of the page size (4096), at least
    /// 1 MiB so that GSO/GRO super-frames (up to 64 KiB) always fit.
    ///
    /// # Errors
    /// What a usable size is, to show after the offending value.
    pub fn check_block_size(bytes: u32) -> Result<(), String> {
        if bytes >= 1 << 20 && bytes.is_multiple_of(4096) {
            Ok(())
        } else {
            Err("expected a multiple of 4096 of at least 1 MiB (1048576)".into())
        }
    }
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
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;

/// The length of `struct tpacket3_hdr`, after which (aligned to 16) comes
/// the `struct sockaddr_ll`.
const TPACKET3_HDR_LEN: usize = 48;

pub(crate) fn sys_err(call: &'static str, interface: &str) -> RingError {
    RingError::Sys {
        call,
        interface: interface.to_owned(),
        source: io::Error::last_os_error(),
    }
}

/// `PACKET_FANOUT_CBPF`: members are chosen by a classic BPF program.
const PACKET_FANOUT_CBPF: u32 = 6;
/// `PACKET_FANOUT_DATA`: sets a fanout group's program.
const PACKET_FANOUT_DATA: i32 = 22;

/// One classic BPF instruction (`struct sock_filter`).
const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

// Classic BPF opcodes and the kernel's ancillary offsets.
const LD_H_ABS: u16 = 0x28;
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const TAX: u16 = 0x07;
const XOR_X: u16 = 0xac;
const RSH_K: u16 = 0x74;
const RET_A: u16 = 0x16;
const RET_K: u16 = 0x06;
const JA: u16 = 0x05;
/// `SKF_AD_OFF + SKF_AD_PROTOCOL`: the frame's EtherType (after any VLAN
/// tag the kernel took off).
const AD_PROTOCOL: u32 = 0xffff_f000;
/// `SKF_NET_OFF`: loads relative to the network header.
const NET: u32 = 0xfff0_0000;

/// The fanout program: the XOR of the source and destination address
/// words (IPv4: one each, IPv6: four each), folded so that the low bits
/// depend on all of them; the kernel takes the result modulo the group's
/// size. XOR is symmetric, so both directions land on one ring. Anything
/// else (ARP, a frame whose second VLAN tag is still on) goes to the first
/// ring.
pub const FANOUT_BY_ADDRESSES: [libc::sock_filter; 38] = {
    let mut p = [bpf(RET_K, 0, 0, 0); 38];
    p[0] = bpf(LD_H_ABS, 0, 0, AD_PROTOCOL);
    p[1] = bpf(JEQ_K, 0, 5, 0x0800); // IPv4, else to 7
    p[2] = bpf(LD_W_ABS, 0, 0, NET + 12);
    p[3] = bpf(TAX, 0, 0, 0);
    p[4] = bpf(LD_W_ABS, 0, 0, NET + 16);
    p[5] = bpf(XOR_X, 0, 0, 0);
    p[6] = bpf(JA, 0, 0, FOLD as u32 - 7);
    p[7] = bpf(JEQ_K, 0, (RET_ZERO - 8) as u8, 0x86dd); // IPv6, else 0
    p[8] = bpf(LD_W_ABS, 0, 0, NET + 8);
    p[9] = bpf(TAX, 0, 0, 0);
    // Words 12..40 of the header: A ^= word; X = A; the last without TAX.
    let mut i = 10;
    let mut offset = 12;
    while offset < 40 {
        p[i] = bpf(LD_W_ABS, 0, 0, NET + offset);
        p[i + 1] = bpf(XOR_X, 0, 0, 0);
        i += 2;
        if offset < 36 {
            p[i] = bpf(TAX, 0, 0, 0);
            i += 1;
        }
        offset += 4;
    }
    assert!(i == FOLD);
    p[FOLD] = bpf(TAX, 0, 0, 0);
    p[FOLD + 1] = bpf(RSH_K, 0, 0, 16);
    p[FOLD + 2] = bpf(XOR_X, 0, 0, 0);
    p[FOLD + 3] = bpf(TAX, 0, 0, 0);
    p[FOLD + 4] = bpf(RSH_K, 0, 0, 8);
    p[FOLD + 5] = bpf(XOR_X, 0, 0, 0);
    p[FOLD + 6] = bpf(RET_A, 0, 0, 0);
    p[RET_ZERO] = bpf(RET_K, 0, 0, 0);
    p
};
/// Where [`FANOUT_BY_ADDRESSES`] folds the XOR.
const FOLD: usize = 30;
/// Where it returns 0.
const RET_ZERO: usize = 37;

/// Types the kernel may fill with any bytes: plain integers and structs of
/// them, as socket options return.
pub(crate) trait OptionValue: Copy {}
impl OptionValue for libc::c_int {}
impl OptionValue for libc::tpacket_stats_v3 {}
impl<const N: usize> OptionValue for [u8; N] {}

/// Reads socket option `name` at `level` into `value`; returns how many
/// bytes the kernel wrote.
#[allow(unsafe_code)]
pub(crate) fn get_option<T: OptionValue>(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    value: &mut T,
) -> io::Result<usize> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is valid for writes of `len` bytes, and every byte
    // pattern is a valid `T` (`OptionValue`); `len` is updated in place.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *mut T).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(len as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[allow(unsafe_code)]
pub(crate) fn set_option<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size given, which the
    // kernel only reads.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A new AF_PACKET raw socket for `protocol` (network byte order; 0
/// receives nothing), and the index of `interface`.
#[allow(unsafe_code)]
pub(crate) fn packet_socket(interface: &str, protocol: u16) -> Result<(OwnedFd, u32), RingError> {
    let name =
        CString::new(interface).map_err(|_| RingError::UnknownInterface(interface.to_owned()))?;
    // SAFETY: `name` is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(RingError::UnknownInterface(interface.to_owned()));
    }
    // SAFETY: plain system call; the result is checked.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(protocol),
        )
    };
    if raw < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => RingError::NoPrivilege {
                interface: interface.to_owned(),
            },
            _ => RingError::Sys {
                call: "socket(AF_PACKET)",
                interface: interface.to_owned(),
                source: e,
            },
        });
    }
    // SAFETY: `raw` is a new descriptor that nothing else owns.
    Ok((unsafe { OwnedFd::from_raw_fd(raw) }, ifindex))
}

/// Binds a packet socket to one interface and protocol.
#[allow(unsafe_code)]
pub(crate) fn bind_socket(
    fd: &OwnedFd,
    ifindex: u32,
    protocol: u16,
    interface: &str,
) -> Result<(), RingError> {
    // SAFETY: an all-zero sockaddr_ll is valid; the fields are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is a valid sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(sys_err("bind", interface))
    }
}

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
        let (fd, ifindex) = packet_socket(interface, protocol)?;
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
        let b = self.bytes;
        Packets {
            block: b,
            left: u32_at(b, BLOCK_NUM_PKTS).unwrap_or(0),
            offset: u32_at(b, BLOCK_FIRST_PKT).unwrap_or(0) as usize,
            gso_header: self.gso_header,
        }
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

/// How a packet reached the interface (`sll_pkttype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Addressed to this host.
    Host,
    /// Broadcast.
    Broadcast,
    /// Multicast.
    Multicast,
    /// Addressed to another host (promiscuous mode).
    OtherHost,
    /// Sent by this host.
    Outgoing,
    /// Any other value.
    Other(u8),
}

impl PacketType {
    fn from_raw(v: u8) -> PacketType {
        match v {
            libc::PACKET_HOST => PacketType::Host,
            libc::PACKET_BROADCAST => PacketType::Broadcast,
            libc::PACKET_MULTICAST => PacketType::Multicast,
            libc::PACKET_OTHERHOST => PacketType::OtherHost,
            libc::PACKET_OUTGOING => PacketType::Outgoing,
            other => PacketType::Other(other),
        }
    }
}

/// One captured packet, borrowed from its block.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The frame as captured, from its link-layer header (an 802.1Q tag the
    /// NIC or driver removed is in `vlan`, not here).
    pub data: &'a [u8],
    /// The frame's length on the wire (more than `data` if truncated).
    pub wire_len: u32,
    /// The VLAN tag the kernel removed, as (TPID, TCI).
    pub vlan: Option<(u16, u16)>,
    /// Direction and addressing.
    pub packet_type: PacketType,
    /// The interface it was captured on.
    pub ifindex: u32,
    /// `tp_status` (e.g. `TP_STATUS_CSUMNOTREADY`).
    pub status: u32,
    /// The interface's hardware type (`sll_hatype`, an `ARPHRD_*` value).
    pub hatype: u16,
    /// For a GSO/GRO super-frame, its segmentation (with
    /// [`RingConfig::gso_header`]); `None` for a frame as on the wire.
    pub gso: Option<Gso>,
}

impl Packet<'_> {
    /// The pcap link type (`LINKTYPE_*`) of `data`: Ethernet for Ethernet
    /// and loopback interfaces (and veth), raw IP for interfaces without a
    /// link-layer header (tun, WireGuard), 0 for anything else, which the
    /// decoder counts as an unsupported link type.
    pub fn link_type(&self) -> u32 {
        match self.hatype {
            libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK => 1,
            libc::ARPHRD_NONE => 101,
            _ => 0,
        }
    }
}

/// The packets of a [`Block`].
#[derive(Debug)]
pub struct Packets<'a> {
    block: &'a [u8],
    left: u32,
    offset: usize,
    gso_header: bool,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

impl<'a> Iterator for Packets<'a> {
    type Item = Packet<'a>;

    fn next(&mut self) -> Option<Packet<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let packet = parse_packet(self.block, self.offset, self.gso_header);
        let next = u32_at(self.block, self.offset).unwrap_or(0) as usize;
        if packet.is_none() || next == 0 {
            // A malformed header (which the kernel does not write) ends the
            // block rather than reading past it.
            self.left = 0;
        }
        self.offset += next;
        packet
    }
}

/// Parses the `tpacket3_hdr` and `sockaddr_ll` at `at`, and the
/// `virtio_net_hdr` just before the frame if `gso_header`, bounds-checked.
fn parse_packet(b: &[u8], at: usize, gso_header: bool) -> Option<Packet<'_>> {
    let h = b.get(at..)?;
    let sec = u64::from(u32_at(h, 4)?);
    let nsec = u64::from(u32_at(h, 8)?);
    let snaplen = u32_at(h, 12)? as usize;
    let wire_len = u32_at(h, 16)?;
    let status = u32_at(h, 20)?;
    let mac = usize::from(u16_at(h, 24)?);
    let vlan_tci = u32_at(h, 32)?;
    let vlan_tpid = u16_at(h, 36)?;
    // struct sockaddr_ll follows the header, aligned to 16.
    let ll = TPACKET3_HDR_LEN.next_multiple_of(16);
    let ifindex = u32_at(h, ll + 4)?;
    let hatype = u16_at(h, ll + 8)?;
    let pkttype = *h.get(ll + 10)?;
    let data = h.get(mac..mac.checked_add(snaplen)?)?;
    let vlan = (status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
        let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
            vlan_tpid
        } else {
            0x8100
        };
        (tpid, vlan_tci as u16)
    });
    // struct virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start,
    // csum_offset; in host byte order (the kernel writes it little-endian
    // on little-endian hosts and native otherwise).
    let gso = if gso_header {
        let v = h.get(mac.checked_sub(VIRTIO_NET_HDR_LEN)?..mac)?;
        let kind = v[1] & !VIRTIO_NET_HDR_GSO_ECN;
        let size = u16::from_ne_bytes([v[4], v[5]]);
        (kind != VIRTIO_NET_HDR_GSO_NONE).then_some(Gso {
            kind: match kind {
                VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_TCPV6 => GsoKind::Tcp,
                VIRTIO_NET_HDR_GSO_UDP_L4 => GsoKind::Udp,
                other => GsoKind::Other(other),
            },
            segment_size: size,
        })
    } else {
        None
    };
    Some(Packet {
        ts_ns: sec * 1_000_000_000 + nsec,
        data,
        wire_len,
        vlan,
        packet_type: PacketType::from_raw(pkttype),
        ifindex,
        status,
        hatype,
        gso,
    })
}

const VIRTIO_NET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// What the kernel says of a GSO/GRO super-frame: one frame standing for
/// several on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// Which transport is segmented.
    pub kind: GsoKind,
    /// Payload bytes per segment (the MSS for TCP).
    pub segment_size: u16,
}

/// The transport a [`Gso`] super-frame segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoKind {
    /// TCP over IPv4 or IPv6.
    Tcp,
    /// UDP (`UDP_SEGMENT`, UDP GRO).
    Udp,
    /// Another `VIRTIO_NET_HDR_GSO_*` type.
    Other(u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block as the kernel lays it out, with the given frames.
    fn block(frames: &[(&[u8], u8, Option<u16>)]) -> Vec<u8> {
        let mut b = vec![0u8; 1 << 16];
        let first = 48usize;
        b[BLOCK_NUM_PKTS..BLOCK_NUM_PKTS + 4].copy_from_slice(&(frames.len() as u32).to_ne_bytes());
        b[BLOCK_FIRST_PKT..BLOCK_FIRST_PKT + 4].copy_from_slice(&(first as u32).to_ne_bytes());
        let mut at = first;
        for (i, (data, pkttype, vlan)) in frames.iter().enumerate() {
            let mac = 80usize;
            let len = (mac + data.len()).next_multiple_of(16);
            let next = if i + 1 == frames.len() { 0 } else { len as u32 };
            let h = &mut b[at..];
            h[0..4].copy_from_slice(&next.to_ne_bytes());
            h[4..8].copy_from_slice(&(1_700_000_000u32 + i as u32).to_ne_bytes());
            h[8..12].copy_from_slice(&5u32.to_ne_bytes());
            h[12..16].copy_from_slice(&(data.len() as u32).to_ne_bytes());
            h[16..20].copy_from_slice(&(data.len() as u32 + 4).to_ne_bytes());
            let status = if vlan.is_some() {
                libc::TP_STATUS_VLAN_VALID
            } else {
                0
            };
            h[20..24].copy_from_slice(&status.to_ne_bytes());
            h[24..26].copy_from_slice(&(mac as u16).to_ne_bytes());
            h[32..36].copy_from_slice(&u32::from(vlan.unwrap_or(0)).to_ne_bytes());
            h[48 + 4..48 + 8].copy_from_slice(&7u32.to_ne_bytes());
            h[48 + 8..48 + 10].copy_from_slice(&libc::ARPHRD_ETHER.to_ne_bytes());
            h[48 + 10] = *pkttype;
            h[mac..mac + data.len()].copy_from_slice(data);
            at += len;
        }
        b
    }

    /// Runs the fanout program the way the kernel would on a frame of
    /// EtherType `protocol` whose network header is `net`.
    fn run_fanout(protocol: u16, net: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        loop {
            let i = FANOUT_BY_ADDRESSES[pc];
            pc += 1;
            match i.code {
                LD_H_ABS => {
                    assert_eq!(i.k, AD_PROTOCOL);
                    a = u32::from(protocol);
                }
                LD_W_ABS => {
                    let at = (i.k - NET) as usize;
                    a = u32::from_be_bytes(net[at..at + 4].try_into().unwrap());
                }
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                JA => pc += i.k as usize,
                TAX => x = a,
                XOR_X => a ^= x,
                RSH_K => a >>= i.k,
                RET_A => return a,
                RET_K => return i.k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_fanout_program_hashes_both_addresses_symmetrically() {
        let v4 = |src: [u8; 4], dst: [u8; 4]| {
            let mut h = vec![0x45u8; 20];
            h[12..16].copy_from_slice(&src);
            h[16..20].copy_from_slice(&dst);
            run_fanout(0x0800, &h)
        };
        let v6 = |src: u128, dst: u128| {
            let mut h = vec![0x60u8; 40];
            h[8..24].copy_from_slice(&src.to_be_bytes());
            h[24..40].copy_from_slice(&dst.to_be_bytes());
            run_fanout(0x86dd, &h)
        };
        assert_eq!(
            v4([10, 0, 0, 1], [10, 0, 0, 2]),
            v4([10, 0, 0, 2], [10, 0, 0, 1])
        );
        assert_eq!(v6(1, 0xfe80 << 112), v6(0xfe80 << 112, 1));
        // Every address word matters, and pairs spread over two rings.
        for word in 0..8 {
            let src = 1u128 << (word * 16);
            assert_ne!(v6(0, src) % 2, v6(0, 0) % 2, "word {word}");
        }
        let on_ring_1 = (0..=255u8)
            .filter(|h| v4([10, 0, 0, *h], [10, 0, 1, 1]) % 2 == 1)
            .count();
        assert!(
            (96..=160).contains(&on_ring_1),
            "{on_ring_1} of 256 on ring 1"
        );
        assert_eq!(run_fanout(0x0806, &[0; 28]), 0, "ARP to the first ring");
    }

    #[test]
    fn the_virtio_header_before_a_frame_gives_its_segmentation() {
        let mut b = block(&[(&[9; 60], libc::PACKET_HOST, None)]);
        // The first packet's header is at 48, its frame at 48 + 80; the
        // virtio_net_hdr takes the 10 bytes before the frame.
        let v = 48 + 80 - 10;
        b[v + 1] = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN;
        b[v + 4..v + 6].copy_from_slice(&1448u16.to_ne_bytes());
        let packets = |b: &[u8], gso_header| {
            Packets {
                block: b,
                left: 1,
                offset: 48,
                gso_header,
            }
            .map(|p| p.gso)
            .collect::<Vec<_>>()
        };
        let tcp = Gso {
            kind: GsoKind::Tcp,
            segment_size: 1448,
        };
        assert_eq!(packets(&b, true), [Some(tcp)]);
        assert_eq!(packets(&b, false), [None], "no header asked for");
        b[v + 1] = VIRTIO_NET_HDR_GSO_NONE;
        assert_eq!(packets(&b, true), [None], "a frame as on the wire");
        b[v + 1] = 3; // VIRTIO_NET_HDR_GSO_UDP (UFO)
        assert_eq!(
            packets(&b, true)[0].map(|g| g.kind),
            Some(GsoKind::Other(3))
        );
    }

    #[test]
    fn parses_a_kernel_laid_out_block() {
        let b = block(&[
            (&[1, 2, 3], libc::PACKET_HOST, None),
            (&[4; 100], libc::PACKET_OUTGOING, Some(0x2064)),
        ]);
        let packets: Vec<Packet<'_>> = Packets {
            block: &b,
            left: 2,
            offset: 48,
            gso_header: false,
        }
        .collect();
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0].data, &[1, 2, 3]);
        assert_eq!(packets[0].ts_ns, 1_700_000_000_000_000_005);
        assert_eq!(packets[0].wire_len, 7);
        assert_eq!(packets[0].packet_type, PacketType::Host);
        assert_eq!(packets[0].vlan, None);
        assert_eq!(packets[0].ifindex, 7);
        assert_eq!(packets[0].link_type(), 1);
        assert_eq!(packets[1].data, &[4; 100][..]);
        assert_eq!(packets[1].packet_type, PacketType::Outgoing);
        assert_eq!(packets[1].vlan, Some((0x8100, 0x2064)));
    }

    #[test]
    fn a_header_pointing_outside_the_block_ends_it() {
        let mut b = block(&[(&[1, 2, 3], libc::PACKET_HOST, None)]);
        // snaplen beyond the block.
        b[48 + 12..48 + 16].copy_from_slice(&u32::MAX.to_ne_bytes());
        let mut p = Packets {
            block: &b,
            left: 5,
            offset: 48,
            gso_header: false,
        };
        assert!(p.next().is_none());
        assert!(p.next().is_none());
    }
}
