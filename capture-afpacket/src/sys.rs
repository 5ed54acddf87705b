//! The system calls of a packet socket, in one place: creating and binding
//! it, and reading and setting its options. Each `unsafe` block says why it
//! is sound; errors name the call and the interface.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::RingError;

pub(crate) fn sys_err(call: &'static str, interface: &str) -> RingError {
    RingError::Sys {
        call,
        interface: interface.to_owned(),
        source: io::Error::last_os_error(),
    }
}

/// Types the kernel may fill with any bytes: plain integers and structs of
/// them, as socket options return.
pub(crate) trait OptionValue: Copy {}
impl OptionValue for libc::c_int {}
impl OptionValue for libc::tpacket_stats_v3 {}
impl OptionValue for libc::sock_fprog {}
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
