//! What the observing host is: its own addresses and the sockets it listens
//! on, as learnt from the kernel during live capture. A flow table uses it to
//! tell flows the host answers (span kind SERVER) from flows it opens
//! (CLIENT); see the README's span kind rules.
//!
//! The capture side replaces the snapshot while running
//! ([`Swap::set`](crate::snapshot::Swap::set)); workers pick the new one up
//! between batches ([`Swap::changed`](crate::snapshot::Swap::changed)), so
//! the per-packet path takes no lock.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::flow::config::IpNet;

/// A socket listening for new peers: a TCP socket in LISTEN state, or a
/// UDP (or UDP-Lite, SCTP) socket bound to a local port and not connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Listener {
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP, 136 UDP-Lite).
    pub protocol: u8,
    /// The address it is bound to; an unspecified address (`0.0.0.0`,
    /// `::`) listens on every local address.
    pub address: IpAddr,
    /// The port it is bound to.
    pub port: u16,
}

/// One snapshot of the host: its addresses and listening sockets.
#[derive(Debug, Clone, Default)]
pub struct HostSockets {
    addresses: HashSet<IpAddr>,
    networks: Vec<IpNet>,
    listeners: HashSet<(u8, IpAddr, u16)>,
    /// Ports with a listener on `0.0.0.0`, per protocol: it answers on
    /// every local IPv4 address.
    wildcard_v4: HashSet<(u8, u16)>,
    /// Ports with a listener on `::`: it answers on every local IPv6
    /// address and, being dual-stack unless set IPv6-only (which is not
    /// told apart here), on every IPv4 address too.
    wildcard_v6: HashSet<(u8, u16)>,
}

impl HostSockets {
    /// A snapshot of `addresses` and `listeners`; `networks` are taken as
    /// local too (`--local-net`).
    pub fn new(
        addresses: impl IntoIterator<Item = IpAddr>,
        networks: &[IpNet],
        listeners: impl IntoIterator<Item = Listener>,
    ) -> HostSockets {
        let mut host = HostSockets {
            addresses: addresses.into_iter().map(canonical).collect(),
            networks: networks.to_vec(),
            ..HostSockets::default()
        };
        for l in listeners {
            let address = canonical(l.address);
            if address == ANY_V4 {
                host.wildcard_v4.insert((l.protocol, l.port));
            } else if address == ANY_V6 {
                host.wildcard_v6.insert((l.protocol, l.port));
            } else {
                host.listeners.insert((l.protocol, address, l.port));
            }
        }
        host
    }

    /// Whether `ip` is one of the host's addresses (or in a `--local-net`).
    pub fn is_local(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.addresses.contains(&ip) || self.networks.iter().any(|n| n.contains(ip))
    }

    /// Whether a local socket listens on `ip`:`port` for `protocol`.
    pub fn listens(&self, protocol: u8, ip: IpAddr, port: u16) -> bool {
        let ip = canonical(ip);
        let key = (protocol, port);
        let wildcard =
            self.wildcard_v6.contains(&key) || (ip.is_ipv4() && self.wildcard_v4.contains(&key));
        self.listeners.contains(&(protocol, ip, port)) || (wildcard && self.is_local(ip))
    }

    /// This snapshot with `earlier`'s addresses and listening sockets added:
    /// what the host had at either time. Live capture meters a packet up to
    /// a tenth of a second after it was captured (packets wait in batches),
    /// so a listener that closed just after its peer connected must still be
    /// known when the connection's first packet is metered; the refresher
    /// keeps each snapshot's sockets for one more refresh period this way.
    pub fn with_earlier(mut self, earlier: &HostSockets) -> HostSockets {
        self.addresses.extend(&earlier.addresses);
        self.listeners.extend(&earlier.listeners);
        self.wildcard_v4.extend(&earlier.wildcard_v4);
        self.wildcard_v6.extend(&earlier.wildcard_v6);
        self
    }

    /// Number of addresses and of listening sockets known.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.addresses.len(),
            self.listeners.len() + self.wildcard_v4.len() + self.wildcard_v6.len(),
        )
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, how a dual-stack socket
/// shows an IPv4 peer) as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The wildcard addresses, for building [`Listener`]s.
pub const ANY_V4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// See [`ANY_V4`].
pub const ANY_V6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// The current [`HostSockets`] snapshot, shared between the thread that
/// refreshes it and the workers that read it.
pub type HostView = crate::snapshot::Swap<HostSockets>;

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn listeners_on_an_address_or_on_every_address() {
        let host = HostSockets::new(
            [ip("10.0.0.1"), ip("10.0.0.2"), ip("fd00::1")],
            &[],
            [
                Listener {
                    protocol: 6,
                    address: ip("10.0.0.1"),
                    port: 80,
                },
                Listener {
                    protocol: 6,
                    address: ANY_V6,
                    port: 22,
                },
                Listener {
                    protocol: 17,
                    address: ip("::ffff:10.0.0.2"),
                    port: 53,
                },
                Listener {
                    protocol: 17,
                    address: ANY_V4,
                    port: 123,
                },
            ],
        );
        assert!(host.listens(6, ip("10.0.0.1"), 80));
        assert!(!host.listens(6, ip("10.0.0.2"), 80), "bound to .1 only");
        assert!(!host.listens(17, ip("10.0.0.1"), 80), "TCP only");
        assert!(host.listens(6, ip("10.0.0.2"), 22));
        assert!(host.listens(6, ip("fd00::1"), 22));
        assert!(!host.listens(6, ip("192.0.2.1"), 22), "not a local address");
        assert!(host.listens(17, ip("10.0.0.2"), 53), "mapped address");
        assert!(host.listens(17, ip("10.0.0.1"), 123));
        assert!(
            !host.listens(17, ip("fd00::1"), 123),
            "0.0.0.0 is IPv4 only"
        );
        assert!(host.is_local(ip("::ffff:10.0.0.1")));
        assert!(!host.is_local(ip("10.0.0.3")));
        assert_eq!(host.counts(), (3, 4));
    }

    #[test]
    fn local_networks_count_as_local_addresses() {
        let net: IpNet = "10.9.0.0/16".parse().unwrap();
        let host = HostSockets::new([], &[net], []);
        assert!(host.is_local(ip("10.9.3.4")));
        assert!(!host.is_local(ip("10.8.3.4")));
    }

    #[test]
    fn a_snapshot_with_an_earlier_one_has_what_either_had() {
        let listener = |port| Listener {
            protocol: 6,
            address: ip("10.0.0.1"),
            port,
        };
        let any = |port| Listener {
            protocol: 17,
            address: ANY_V4,
            port,
        };
        let earlier = HostSockets::new([ip("10.0.0.1")], &[], [listener(80), any(53)]);
        let now = HostSockets::new([ip("10.0.0.2")], &[], [listener(443), any(123)]);
        let both = now.clone().with_earlier(&earlier);
        for (port, proto) in [(80, 6), (443, 6), (53, 17), (123, 17)] {
            assert!(both.listens(proto, ip("10.0.0.1"), port), "{proto}/{port}");
        }
        assert!(both.is_local(ip("10.0.0.1")) && both.is_local(ip("10.0.0.2")));
        assert!(
            !now.listens(6, ip("10.0.0.1"), 80),
            "now alone has closed it"
        );
        assert_eq!(both.counts(), (2, 4));
    }

    #[test]
    fn a_new_snapshot_is_seen_once() {
        let view = HostView::new(HostSockets::default());
        let mut seen = 0;
        assert!(view.changed(&mut seen).is_some(), "the first one");
        assert!(view.changed(&mut seen).is_none());
        view.set(HostSockets::new([ip("10.0.0.1")], &[], []));
        let next = view.changed(&mut seen).expect("the new one");
        assert!(next.is_local(ip("10.0.0.1")));
        assert!(view.changed(&mut seen).is_none());
    }
}
