//! Raw frames out of an interface, through a packet socket.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::RingError;
use crate::sys::{bind_socket, packet_socket, set_option, sys_err};

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
        // Straight to the driver: a test sender has no use for queueing
        // disciplines, and skipping them is faster.
        let on: libc::c_int = 1;
        set_option(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &on)
            .map_err(|_| sys_err("setsockopt(PACKET_QDISC_BYPASS)", interface))?;
        Ok(PacketSender { fd })
    }

    /// Sends `frames` with as few system calls as possible (`sendmmsg`, up
    /// to 64 frames each), waiting for room as [`send`](Self::send) does.
    ///
    /// # Errors
    /// As [`send`](Self::send); frames before the refused one were sent.
    #[allow(unsafe_code)]
    pub fn send_all(&self, frames: &[Vec<u8>]) -> io::Result<()> {
        const BATCH: usize = 64;
        for chunk in frames.chunks(BATCH) {
            let mut iovecs: Vec<libc::iovec> = chunk
                .iter()
                .map(|f| libc::iovec {
                    iov_base: f.as_ptr().cast_mut().cast(),
                    iov_len: f.len(),
                })
                .collect();
            let mut messages: Vec<libc::mmsghdr> = iovecs
                .iter()
                // SAFETY: an all-zero mmsghdr is a valid empty message.
                .map(|_| unsafe { std::mem::zeroed() })
                .collect();
            for (m, iov) in messages.iter_mut().zip(iovecs.iter_mut()) {
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
            }
            let mut done = 0;
            while done < messages.len() {
                let rest = &mut messages[done..];
                // SAFETY: every message points at one iovec, which points at
                // a frame; frames, iovecs and messages outlive the call, and
                // the kernel only reads the frames.
                let n = unsafe {
                    libc::sendmmsg(self.fd.as_raw_fd(), rest.as_mut_ptr(), rest.len() as u32, 0)
                };
                if n > 0 {
                    done += n as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::ENOBUFS | libc::EAGAIN) => std::thread::yield_now(),
                    _ => return Err(e),
                }
            }
        }
        Ok(())
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
