//! Raw frames out of an interface, through a packet socket.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::RingError;
use crate::ring::{bind_socket, packet_socket};

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
    pub fn open(interface: &str) -> Result<PacketSender, RingError> {
        // Protocol 0: this socket receives nothing.
        let (fd, ifindex) = packet_socket(interface, 0)?;
        bind_socket(&fd, ifindex, 0, interface)?;
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
