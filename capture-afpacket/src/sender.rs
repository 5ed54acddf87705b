//! Raw frames out of an interface, through a packet socket.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::RingError;

/// Writes whole link-layer frames to one interface.
#[derive(Debug)]
pub struct PacketSender {
    fd: OwnedFd,
}

impl PacketSender {
    /// A sender on `interface`.
    ///
    /// # Errors
    /// As [`Ring::open`](crate::Ring::open): unknown interface, no
    /// CAP_NET_RAW, or a failed system call.
    #[allow(unsafe_code)]
    pub fn open(interface: &str) -> Result<PacketSender, RingError> {
        let name = CString::new(interface)
            .map_err(|_| RingError::UnknownInterface(interface.to_owned()))?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(RingError::UnknownInterface(interface.to_owned()));
        }
        // Protocol 0: this socket receives nothing.
        // SAFETY: plain system call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
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
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_ll is valid; the fields are set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a valid sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(RingError::Sys {
                call: "bind",
                interface: interface.to_owned(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(PacketSender { fd })
    }

    /// Sends one frame (from its Ethernet header), waiting for room in the
    /// socket's send buffer.
    ///
    /// # Errors
    /// The kernel refused the frame (too long for the interface's MTU,
    /// interface down, …).
    #[allow(unsafe_code)]
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: `frame` is valid for reads of its length.
            let n =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS | libc::EAGAIN) => std::thread::yield_now(),
                _ => return Err(e),
            }
        }
    }
}
