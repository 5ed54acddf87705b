//! Flow-metering settings: timeouts, table size, Community ID seed, local networks.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

const SEC: u64 = 1_000_000_000;

/// Timeouts, in nanoseconds of capture time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Idle timeout of TCP flows.
    pub tcp_idle_ns: u64,
    /// Idle timeout of UDP flows.
    pub udp_idle_ns: u64,
    /// Idle timeout of ICMP and ICMPv6 flows.
    pub icmp_idle_ns: u64,
    /// Idle timeout of every other protocol (SCTP included).
    pub other_idle_ns: u64,
    /// Active timeout: a flow emits a record every this long; 0 disables.
    pub active_ns: u64,
    /// How long a TCP flow that saw FIN from both sides, or RST, stays open
    /// for the final ACKs before it ends with `end_of_flow_detected`.
    pub tcp_end_linger_ns: u64,
    /// Idle timeout of flows that have not got going: TCP flows whose
    /// handshake has not completed (or, picked up midstream, that have not
    /// been seen from both sides) and flows of any protocol with one packet
    /// so far. A protocol's own idle timeout applies when it is shorter.
    /// Unanswered SYNs from a flood or a scan then leave the table as soon
    /// as a connection attempt would have given up.
    pub unestablished_idle_ns: u64,
    /// How long the transport ports of a fragmented IPv4 datagram are
    /// remembered for its later fragments.
    pub fragment_ns: u64,
    /// The same for IPv6 (RFC 8200, section 4.5: 60 s).
    pub fragment_v6_ns: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_idle_ns: 300 * SEC,
            udp_idle_ns: 60 * SEC,
            icmp_idle_ns: 30 * SEC,
            other_idle_ns: 60 * SEC,
            active_ns: 60 * SEC,
            tcp_end_linger_ns: 2 * SEC,
            // Linux conntrack's SYN_SENT timeout: a connect() that retries
            // its SYN (1, 2, 4 ... 64 s apart) stays one flow.
            unestablished_idle_ns: 120 * SEC,
            // RFC 791's upper bound for reassembly is 15 s; Linux keeps 30 s.
            fragment_ns: 30 * SEC,
            fragment_v6_ns: 60 * SEC,
        }
    }
}

impl Timeouts {
    /// Sets every protocol's idle timeout to the same value (the timeout
    /// of flows that have not got going stays, and applies if shorter).
    pub fn set_all_idle(&mut self, ns: u64) {
        self.tcp_idle_ns = ns;
        self.udp_idle_ns = ns;
        self.icmp_idle_ns = ns;
        self.other_idle_ns = ns;
    }

    /// The idle timeout of a flow of IP protocol `protocol` that has got
    /// going (SCTP and every protocol but TCP, UDP and ICMP share one).
    pub fn idle_ns_of(&self, protocol: u8) -> u64 {
        match protocol {
            6 => self.tcp_idle_ns,
            17 => self.udp_idle_ns,
            1 | 58 => self.icmp_idle_ns,
            _ => self.other_idle_ns,
        }
    }
}

/// An IP network in CIDR notation, e.g. `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in this network (IPv4 never matches an IPv6 network).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(n: &[u8], a: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if n[..full] != a[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (n[full] & mask) == (a[full] & mask)
}

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpNetError {
    /// The address part is not an IP address.
    #[error("{0:?} is not an IP address (expected e.g. 10.0.0.0/8 or 2001:db8::/32)")]
    Address(String),
    /// The prefix is not a number or too long for the address family.
    #[error("prefix {prefix:?} is not a number from 0 to {max}")]
    Prefix {
        /// What was given.
        prefix: String,
        /// The family's maximum.
        max: u8,
    },
    /// Bits below the prefix are set: probably a host address where a
    /// network was meant.
    #[error("{given} has host bits set (expected the network address {network})")]
    HostBits {
        /// What was given.
        given: String,
        /// The network it lies in.
        network: String,
    },
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| IpNetError::Address(addr.to_string()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix =
            match prefix {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|v| *v <= max).ok_or_else(|| {
                    IpNetError::Prefix {
                        prefix: p.to_string(),
                        max,
                    }
                })?,
            };
        let network = IpNet { addr, prefix }.network();
        if network != addr {
            return Err(IpNetError::HostBits {
                given: s.to_string(),
                network: IpNet {
                    addr: network,
                    prefix,
                }
                .to_string(),
            });
        }
        Ok(IpNet { addr, prefix })
    }
}

impl IpNet {
    /// The network address: `addr` with the bits below the prefix cleared.
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The most bytes one open flow takes in a table, the slack of the table's
/// growth included, when it has no tunnel or IPsec state (a flow that has
/// takes up to 700 more; README, "Tunnels"). A test checks it. A memory
/// budget for flows is divided by it: [`FlowConfig::flows_for_memory`].
pub const FLOW_BYTES: u64 = 300;

/// Fragmented datagrams a table remembers at once by default: about 2 MiB
/// (Linux gives a network namespace's reassembly 4 MiB).
pub const DEFAULT_MAX_FRAGMENTS: usize = 16_384;

/// Everything a [`FlowTable`](crate::FlowTable) needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowConfig {
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Maximum number of open flows in one table; 0 means unlimited. When a
    /// new flow would exceed it, a flow is ended with `lack_of_resources`:
    /// the least recently seen of those that have not got going (see
    /// [`Timeouts::unestablished_idle_ns`]), or if there are none, the least
    /// recently seen of all.
    pub max_flows: usize,
    /// Maximum number of fragmented datagrams whose ports one table
    /// remembers at once; 0 means unlimited. When it is full, expired
    /// entries are dropped, and if none has expired, a new datagram's ports
    /// are not remembered (counted: its later fragments count as without
    /// their first).
    pub max_fragments: usize,
    /// Community ID seed.
    pub community_id_seed: u16,
    /// The observing host's own networks (for span kind SERVER).
    pub local_nets: Vec<IpNet>,
    /// What a flow seen on several interfaces becomes (live capture on more
    /// than one).
    pub interfaces: InterfaceFlows,
}

/// What a flow whose packets cross several captured interfaces (a pod's
/// veth and the node's uplink) becomes. Capture files carry no interface
/// (0): one flow either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InterfaceFlows {
    /// One flow, and so one record, per interface: each counts what
    /// crossed that interface, and says which (`network.interface.*`).
    #[default]
    Separate,
    /// One flow in total: the interface a flow's first packet was seen on
    /// keeps it; its packets seen on any other interface are counted as
    /// duplicates and otherwise left out (so nothing is counted twice).
    First,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            timeouts: Timeouts::default(),
            max_flows: 0,
            max_fragments: DEFAULT_MAX_FRAGMENTS,
            community_id_seed: 0,
            local_nets: Vec::new(),
            interfaces: InterfaceFlows::Separate,
        }
    }
}

impl FlowConfig {
    /// The flow limit ([`max_flows`](Self::max_flows), over all tables)
    /// that keeps flow state within `bytes`: at least 1.
    pub fn flows_for_memory(bytes: u64) -> usize {
        usize::try_from(bytes / FLOW_BYTES)
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// Whether `ip` belongs to the observing host.
    pub fn is_local(&self, ip: IpAddr) -> bool {
        self.local_nets.iter().any(|n| n.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_and_contains() {
        let n: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        let n: IpNet = "2001:db8::/33".parse().unwrap();
        assert!(n.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!n.contains("2001:db8:8000::1".parse().unwrap()));
        let host: IpNet = "192.0.2.7".parse().unwrap();
        assert!(host.contains("192.0.2.7".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("0.0.0.0/0".parse::<IpNet>().is_ok());
        assert!("::/0".parse::<IpNet>().is_ok());
        assert!("nonsense/8".parse::<IpNet>().is_err());
    }

    /// Issue 16: `--local-net 10.0.0.1/8` was accepted silently.
    #[test]
    fn regression_16_host_bits_below_the_prefix_are_refused() {
        assert_eq!(
            "10.0.0.1/8".parse::<IpNet>().unwrap_err().to_string(),
            "10.0.0.1/8 has host bits set (expected the network address 10.0.0.0/8)"
        );
        assert_eq!(
            "2001:db8::1/64".parse::<IpNet>().unwrap_err().to_string(),
            "2001:db8::1/64 has host bits set (expected the network address 2001:db8::/64)"
        );
    }
}
