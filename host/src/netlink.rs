//! What the host is, asked of the kernel over netlink: its addresses
//! (`RTM_GETADDR` on `NETLINK_ROUTE`) and its listening sockets (`sock_diag`
//! on `NETLINK_SOCK_DIAG`: TCP sockets in LISTEN state, UDP sockets bound
//! to a port and not connected). Both are one dump request each; the
//! answers are parsed in safe code with bounds checks. The network
//! namespace is the calling thread's; [`in_namespace`] runs a query in
//! another's.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A socket waiting for new peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListeningSocket {
    /// IP protocol number: 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    /// The bound address; unspecified (`0.0.0.0`, `::`) for every address.
    pub address: IpAddr,
    /// The bound port.
    pub port: u16,
}

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const TCP_LISTEN: u32 = 10;
const TCP_CLOSE: u32 = 7;
/// `struct inet_diag_msg`: family, state, timer, retrans, then the 48-byte
/// `inet_diag_sockid` (sport, dport, src[16], dst[16], if, cookie[2]),
/// expires, rqueue, wqueue, uid, inode.
const INET_DIAG_MSG_LEN: usize = 72;

/// The host's own addresses, of every interface, IPv4 and IPv6.
///
/// # Errors
/// The netlink socket cannot be opened or the dump fails.
pub fn local_addresses() -> io::Result<Vec<IpAddr>> {
    // struct ifaddrmsg: family (AF_UNSPEC: both), prefixlen, flags, scope,
    // index.
    let request = [0u8; 8];
    let mut addresses = Vec::new();
    dump(libc::NETLINK_ROUTE, RTM_GETADDR, &request, |kind, body| {
        if kind != RTM_NEWADDR || body.len() < 8 {
            return;
        }
        let family = i32::from(body[0]);
        let (mut local, mut address) = (None, None);
        for (kind, value) in attributes(&body[8..]) {
            match kind {
                IFA_LOCAL => local = ip_of(family, value),
                IFA_ADDRESS => address = ip_of(family, value),
                _ => {}
            }
        }
        // IFA_LOCAL is the interface's own address where the two differ
        // (point-to-point links); IPv6 sends only IFA_ADDRESS.
        if let Some(ip) = local.or(address) {
            addresses.push(ip);
        }
    })?;
    Ok(addresses)
}

/// TCP sockets in LISTEN state and UDP sockets bound to a port and not
/// connected, IPv4 and IPv6.
///
/// # Errors
/// The netlink socket cannot be opened or a dump fails.
pub fn listening_sockets() -> io::Result<Vec<ListeningSocket>> {
    let mut sockets = Vec::new();
    let tcp = (libc::IPPROTO_TCP as u8, 1u32 << TCP_LISTEN);
    let udp = (libc::IPPROTO_UDP as u8, 1u32 << TCP_CLOSE);
    inet_sockets(&[tcp, udp], |protocol, address, port, _| {
        sockets.push(ListeningSocket {
            protocol,
            address,
            port,
        });
    })?;
    sockets.sort_unstable_by_key(|s| (s.protocol, s.address, s.port));
    sockets.dedup();
    Ok(sockets)
}

/// Dumps, for IPv4 and IPv6, the sockets of each `(protocol, state mask)`
/// with sock_diag; calls `each` with the protocol, local address, port and
/// inode of every one bound to a port.
fn inet_sockets(kinds: &[(u8, u32)], mut each: impl FnMut(u8, IpAddr, u16, u32)) -> io::Result<()> {
    for family in [libc::AF_INET, libc::AF_INET6] {
        for &(protocol, states) in kinds {
            // struct inet_diag_req_v2: family, protocol, ext, pad, states,
            // then an all-zero inet_diag_sockid (no filter).
            let mut request = [0u8; 56];
            request[0] = family as u8;
            request[1] = protocol;
            request[4..8].copy_from_slice(&states.to_ne_bytes());
            dump(
                libc::NETLINK_SOCK_DIAG,
                SOCK_DIAG_BY_FAMILY,
                &request,
                |kind, body| {
                    if kind != SOCK_DIAG_BY_FAMILY || body.len() < INET_DIAG_MSG_LEN {
                        return;
                    }
                    let port = u16::from_be_bytes([body[4], body[5]]);
                    let inode = u32::from_ne_bytes([body[68], body[69], body[70], body[71]]);
                    if let (Some(address), true) =
                        (ip_of(i32::from(body[0]), &body[8..24]), port != 0)
                    {
                        each(protocol, address, port, inode);
                    }
                },
            )?;
        }
    }
    Ok(())
}

/// A TCP or UDP socket of the calling thread's network namespace, with
/// the inode that names it in `/proc/PID/fd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketEntry {
    /// IP protocol number: 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    /// The local address; unspecified for every address of the namespace.
    pub address: IpAddr,
    /// The local port.
    pub port: u16,
    /// The socket's inode (0 for a TCP socket in TIME_WAIT, which no
    /// process holds any more).
    pub inode: u32,
}

/// Every TCP socket (all states) and UDP socket bound to a port, IPv4 and
/// IPv6, with their inodes.
///
/// # Errors
/// The netlink socket cannot be opened or a dump fails.
pub fn sockets() -> io::Result<Vec<SocketEntry>> {
    let mut sockets = Vec::new();
    let every_state = u32::MAX;
    let kinds = [
        (libc::IPPROTO_TCP as u8, every_state),
        (libc::IPPROTO_UDP as u8, every_state),
    ];
    inet_sockets(&kinds, |protocol, address, port, inode| {
        if inode != 0 {
            sockets.push(SocketEntry {
                protocol,
                address,
                port,
                inode,
            });
        }
    })?;
    Ok(sockets)
}

/// Runs `f` on a thread of its own that has joined the network namespace
/// `ns` (a `/proc/PID/ns/net` file); what it returns. Needs CAP_SYS_ADMIN.
///
/// # Errors
/// The namespace cannot be opened or joined, or the thread cannot start.
pub fn in_namespace<T: Send + 'static>(
    ns: &std::path::Path,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let file = std::fs::File::open(ns)?;
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            join_namespace(&file)?;
            f()
        })?
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

#[allow(unsafe_code)]
fn join_namespace(file: &std::fs::File) -> io::Result<()> {
    // SAFETY: setns takes a descriptor we hold open for the call; it
    // changes the network namespace of the calling thread only (a thread of
    // its own, which ends after its one task).
    let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An address of `family` from the first bytes of `bytes`.
fn ip_of(family: i32, bytes: &[u8]) -> Option<IpAddr> {
    match family {
        libc::AF_INET => {
            let b: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        libc::AF_INET6 => {
            let b: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The route attributes (`struct rtattr`: length, type, value, padded to 4
/// bytes) in `bytes`, as (type, value); stops at the first malformed one.
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes(bytes.get(0..2)?.try_into().ok()?));
        let kind = u16::from_ne_bytes(bytes.get(2..4)?.try_into().ok()?);
        let value = bytes.get(4..len)?;
        bytes = bytes.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some((kind, value))
    })
}

/// Sends one dump request (`NLM_F_REQUEST | NLM_F_DUMP`) of `kind` with
/// `payload` on a new netlink socket of `protocol`, and calls `each` with
/// every answer's type and body until the kernel says it is done.
fn dump(
    protocol: i32,
    kind: u16,
    payload: &[u8],
    mut each: impl FnMut(u16, &[u8]),
) -> io::Result<()> {
    let socket = open(protocol)?;
    let mut request = Vec::with_capacity(NLMSG_HDRLEN + payload.len());
    let len = (NLMSG_HDRLEN + payload.len()) as u32;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    request.extend_from_slice(&len.to_ne_bytes());
    request.extend_from_slice(&kind.to_ne_bytes());
    request.extend_from_slice(&flags.to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    request.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    request.extend_from_slice(payload);
    send(&socket, &request)?;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = receive(&socket, &mut buffer)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink socket closed before the dump ended",
            ));
        }
        let mut rest = &buffer[..n];
        while rest.len() >= NLMSG_HDRLEN {
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            if len < NLMSG_HDRLEN || len > rest.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("netlink message of {len} bytes with {} left", rest.len()),
                ));
            }
            let body = &rest[NLMSG_HDRLEN..len];
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code = body
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                }
                _ => each(kind, body),
            }
            rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        }
    }
}

#[allow(unsafe_code)]
fn open(protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; a non-negative result is a new
    // descriptor that nothing else owns.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[allow(unsafe_code)]
fn send(socket: &OwnedFd, message: &[u8]) -> io::Result<()> {
    // SAFETY: `message` is valid for reads of its length for the call; an
    // unconnected netlink socket sends to the kernel.
    let n = unsafe {
        libc::send(
            socket.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[allow(unsafe_code)]
fn receive(socket: &OwnedFd, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buffer` is valid for writes of its length for the call.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_attributes_are_split_and_padding_skipped() {
        // IFA_ADDRESS 10.0.0.1, then a 5-byte attribute padded to 8, then
        // IFA_LOCAL 10.0.0.2, then a truncated one.
        let mut bytes = vec![8, 0, 1, 0, 10, 0, 0, 1];
        bytes.extend_from_slice(&[5, 0, 9, 0, 0xaa, 0, 0, 0]);
        bytes.extend_from_slice(&[8, 0, 2, 0, 10, 0, 0, 2]);
        bytes.extend_from_slice(&[12, 0, 1, 0, 1]);
        let got: Vec<(u16, Vec<u8>)> = attributes(&bytes).map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(
            got,
            [
                (1, vec![10, 0, 0, 1]),
                (9, vec![0xaa]),
                (2, vec![10, 0, 0, 2])
            ]
        );
        assert_eq!(
            attributes(&[3, 0, 1, 0]).count(),
            0,
            "shorter than its header"
        );
    }

    #[test]
    fn loopback_is_a_local_address() {
        // Every network namespace has lo, and with it 127.0.0.1 once it is
        // up; the test process's namespace has it up on any usual host.
        let addresses = local_addresses().expect("RTM_GETADDR dump");
        let lo_up = std::fs::read_to_string("/sys/class/net/lo/operstate")
            .is_ok_and(|s| s.trim() != "down");
        if lo_up {
            assert!(
                addresses.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
                "{addresses:?}"
            );
        }
    }

    #[test]
    fn a_tcp_listener_and_a_bound_udp_socket_are_found_and_a_client_is_not() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let connected = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        connected
            .connect(udp.local_addr().unwrap())
            .expect("connect");
        let sockets = listening_sockets().expect("sock_diag dump");
        let has = |protocol: u8, addr: std::net::SocketAddr| {
            sockets.contains(&ListeningSocket {
                protocol,
                address: addr.ip(),
                port: addr.port(),
            })
        };
        assert!(has(6, tcp.local_addr().unwrap()), "{sockets:?}");
        assert!(has(17, udp.local_addr().unwrap()), "{sockets:?}");
        assert!(
            !has(17, connected.local_addr().unwrap()),
            "a connected UDP socket is not listening"
        );
    }
}
