//! Interfaces that come and go: the kernel's link notifications
//! (`RTMGRP_LINK` on a netlink route socket), read without blocking, and
//! the list of interfaces there now, for captures that follow `-i`
//! patterns.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Whether an `-i` value is a glob pattern rather than a name.
pub fn is_pattern(value: &str) -> bool {
    value.contains(['*', '?', '['])
}

/// The interfaces `-i` asks for: names, and glob patterns that pick
/// interfaces as they come.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Interfaces given by name.
    pub named: Vec<String>,
    /// Interfaces given by pattern, as given and compiled.
    patterns: Vec<(String, glob::Pattern)>,
}

impl Selection {
    /// Splits `-i` values into names and patterns.
    ///
    /// # Errors
    /// A pattern is malformed: `-i "PATTERN": not a glob pattern: …`.
    pub fn new(values: &[String]) -> Result<Selection, String> {
        let mut selection = Selection::default();
        for v in values {
            if is_pattern(v) {
                let g = glob::Pattern::new(v)
                    .map_err(|e| format!("-i {v:?}: not a glob pattern: {e}"))?;
                selection.patterns.push((v.clone(), g));
            } else {
                selection.named.push(v.clone());
            }
        }
        Ok(selection)
    }

    /// Whether there are patterns to follow.
    pub fn follows(&self) -> bool {
        !self.patterns.is_empty()
    }

    /// The patterns as given.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|(p, _)| p.as_str())
    }

    /// Whether interface `name` is asked for: `Some(None)` by name,
    /// `Some(Some(pattern))` by the first pattern that matches it.
    pub fn wanted(&self, name: &str) -> Option<Option<&str>> {
        if self.named.iter().any(|n| n == name) {
            return Some(None);
        }
        self.patterns
            .iter()
            .find(|(_, g)| g.matches(name))
            .map(|(p, _)| Some(p.as_str()))
    }
}

/// A change to the host's interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Interface `index` exists (new, or its state changed).
    Present {
        /// Its index.
        index: u32,
        /// Its name.
        name: String,
    },
    /// Interface `index` was deleted.
    Removed {
        /// Its index.
        index: u32,
        /// Its name.
        name: String,
    },
    /// Notifications were lost (the socket's buffer overflowed): the list
    /// of interfaces must be read again.
    Lost,
}

/// A netlink socket subscribed to link notifications, in the network
/// namespace of the thread that opened it.
#[derive(Debug)]
pub struct LinkMonitor {
    fd: OwnedFd,
    buf: Vec<u8>,
}

const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const IFLA_IFNAME: u16 = 3;
const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;

impl LinkMonitor {
    /// Subscribes to link notifications.
    ///
    /// # Errors
    /// The netlink socket cannot be opened or bound.
    #[allow(unsafe_code)]
    pub fn open() -> io::Result<LinkMonitor> {
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and nothing else owns
        // it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_nl is valid; the fields are set next.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = RTMGRP_LINK;
        // SAFETY: `addr` is a valid sockaddr_nl of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(LinkMonitor {
            fd,
            buf: vec![0; 64 << 10],
        })
    }

    /// The notifications that arrived since the last call, without
    /// waiting.
    ///
    /// # Errors
    /// Reading the socket failed (other than for lost notifications,
    /// which come back as [`LinkEvent::Lost`]).
    #[allow(unsafe_code)]
    pub fn events(&mut self) -> io::Result<Vec<LinkEvent>> {
        let mut events = Vec::new();
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(events),
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => {
                        events.push(LinkEvent::Lost);
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            parse(&self.buf[..n as usize], &mut events);
        }
    }
}

/// Appends the link events of one netlink datagram to `out`; messages that
/// are not link messages, or are cut short, are skipped.
fn parse(mut data: &[u8], out: &mut Vec<LinkEvent>) {
    let u16_at = |b: &[u8], at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    while data.len() >= NLMSG_HDR {
        let len = u32_at(data, 0) as usize;
        if len < NLMSG_HDR || len > data.len() {
            return;
        }
        let kind = u16_at(data, 4);
        let msg = &data[NLMSG_HDR..len];
        if matches!(kind, RTM_NEWLINK | RTM_DELLINK) && msg.len() >= IFINFOMSG {
            let index = u32_at(msg, 4);
            let mut attrs = &msg[IFINFOMSG..];
            let mut name = None;
            while attrs.len() >= 4 {
                let alen = usize::from(u16_at(attrs, 0));
                if alen < 4 || alen > attrs.len() {
                    break;
                }
                if u16_at(attrs, 2) == IFLA_IFNAME {
                    let value = &attrs[4..alen];
                    let value = value.split(|b| *b == 0).next().unwrap_or_default();
                    name = Some(String::from_utf8_lossy(value).into_owned());
                }
                attrs = &attrs[(alen + 3) & !3..];
            }
            if let Some(name) = name {
                out.push(if kind == RTM_NEWLINK {
                    LinkEvent::Present { index, name }
                } else {
                    LinkEvent::Removed { index, name }
                });
            }
        }
        let next = (len + 3) & !3;
        if next >= data.len() {
            return;
        }
        data = &data[next..];
    }
}

/// The interfaces there now, as `(index, name)`.
///
/// # Errors
/// The list cannot be read.
#[allow(unsafe_code)]
pub fn interfaces() -> io::Result<Vec<(u32, String)>> {
    // SAFETY: if_nameindex takes no arguments; the list it returns is read
    // up to its zero entry and freed once.
    let list = unsafe { libc::if_nameindex() };
    if list.is_null() {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut at = list;
    // SAFETY: the list ends with an entry whose index is 0; each name is a
    // NUL-terminated string valid until the list is freed.
    unsafe {
        while (*at).if_index != 0 && !(*at).if_name.is_null() {
            let name = CStr::from_ptr((*at).if_name).to_string_lossy().into_owned();
            out.push(((*at).if_index, name));
            at = at.add(1);
        }
        libc::if_freenameindex(list);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link message as the kernel writes it: header, ifinfomsg, then an
    /// IFLA_IFNAME attribute and another (IFLA_MTU).
    fn message(kind: u16, index: u32, name: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        let name_len = 4 + name.len() + 1;
        attrs.extend_from_slice(&(name_len as u16).to_ne_bytes());
        attrs.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        attrs.extend_from_slice(name.as_bytes());
        attrs.push(0);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        attrs.extend_from_slice(&8u16.to_ne_bytes());
        attrs.extend_from_slice(&4u16.to_ne_bytes());
        attrs.extend_from_slice(&1500u32.to_ne_bytes());
        let mut info = vec![0u8; IFINFOMSG];
        info[4..8].copy_from_slice(&index.to_ne_bytes());
        let len = NLMSG_HDR + info.len() + attrs.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&info);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn link_messages_become_events_and_others_are_skipped() {
        let mut datagram = message(RTM_NEWLINK, 7, "veth1a");
        datagram.extend(message(20, 1, "not-a-link"));
        datagram.extend(message(RTM_DELLINK, 3, "eth1"));
        let mut events = Vec::new();
        parse(&datagram, &mut events);
        assert_eq!(
            events,
            [
                LinkEvent::Present {
                    index: 7,
                    name: "veth1a".into()
                },
                LinkEvent::Removed {
                    index: 3,
                    name: "eth1".into()
                },
            ]
        );
        // Cut anywhere: never a panic, never an event from the cut part.
        for cut in 0..datagram.len() {
            let mut some = Vec::new();
            parse(&datagram[..cut], &mut some);
            assert!(some.len() <= 2);
        }
    }

    #[test]
    fn names_and_patterns_pick_interfaces() {
        let s =
            Selection::new(&["eth0".into(), "veth*".into(), "cali[0-9]*".into()]).expect("valid");
        assert!(s.follows());
        assert_eq!(s.wanted("eth0"), Some(None));
        assert_eq!(s.wanted("veth1a2b"), Some(Some("veth*")));
        assert_eq!(s.wanted("cali7"), Some(Some("cali[0-9]*")));
        assert_eq!(s.wanted("eth1"), None);
        assert_eq!(s.wanted("calix"), None);
        let e = Selection::new(&["veth[".into()]).expect_err("malformed");
        assert!(e.starts_with("-i \"veth[\": not a glob pattern"), "{e}");
        assert!(!Selection::new(&["eth0".into()]).expect("valid").follows());
    }

    #[test]
    fn the_loopback_interface_is_listed() {
        let list = interfaces().expect("if_nameindex");
        assert!(list.iter().any(|(_, n)| n == "lo"), "{list:?}");
    }
}
