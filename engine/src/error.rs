//! Decode errors: small, `Copy`, and specific enough to count by reason.

use std::fmt;

/// The protocol layer at which decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Layer {
    Ethernet,
    Vlan,
    Mpls,
    Pppoe,
    Ppp,
    LinuxSll,
    LinuxSll2,
    Null,
    Ipv4,
    Ipv6,
    Ipv6Ext,
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmpv6,
    Gre,
    Erspan,
    Vxlan,
    Geneve,
    Gtp,
    Ieee80211,
}

impl Layer {
    /// Lower-case name used in counter reasons and messages.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Ethernet => "ethernet",
            Layer::Vlan => "vlan",
            Layer::Mpls => "mpls",
            Layer::Pppoe => "pppoe",
            Layer::Ppp => "ppp",
            Layer::LinuxSll => "linux_sll",
            Layer::LinuxSll2 => "linux_sll2",
            Layer::Null => "null",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Ipv6Ext => "ipv6_ext",
            Layer::Tcp => "tcp",
            Layer::Udp => "udp",
            Layer::Sctp => "sctp",
            Layer::Icmp => "icmp",
            Layer::Icmpv6 => "icmpv6",
            Layer::Gre => "gre",
            Layer::Erspan => "erspan",
            Layer::Vxlan => "vxlan",
            Layer::Geneve => "geneve",
            Layer::Gtp => "gtp",
            Layer::Ieee80211 => "ieee80211",
        }
    }
}

/// What was wrong at that layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeErrorKind {
    /// Fewer bytes were captured than the header needs.
    Truncated {
        /// Bytes the header needs.
        need: u16,
        /// Bytes that were left.
        have: u16,
    },
    /// The IP version nibble does not match the layer.
    BadVersion,
    /// A header length field is smaller than the fixed header.
    BadHeaderLength,
    /// The IPv4 total length is smaller than its own header.
    BadTotalLength,
    /// A tunnel header with a version or flags it cannot have.
    BadTunnelHeader,
}

/// Where and why decoding of a frame stopped.
///
/// `offset` is the byte offset in the frame where the failing header starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DecodeError {
    /// Layer whose header could not be read.
    pub layer: Layer,
    /// Offset of that header in the frame.
    pub offset: u16,
    /// The problem.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    pub(crate) fn truncated(layer: Layer, offset: usize, need: usize, have: usize) -> Self {
        DecodeError {
            layer,
            offset: clamp16(offset),
            kind: DecodeErrorKind::Truncated {
                need: clamp16(need),
                have: clamp16(have),
            },
        }
    }

    pub(crate) fn new(layer: Layer, offset: usize, kind: DecodeErrorKind) -> Self {
        DecodeError {
            layer,
            offset: clamp16(offset),
            kind,
        }
    }

    /// A short, bounded reason string for counters, e.g. `ipv4_truncated`.
    /// Every string [`reason`](Self::reason) returns, in a fixed order:
    /// counters of malformed frames are arrays indexed like it.
    pub const REASONS: [&'static str; 33] = [
        "ethernet_truncated",
        "vlan_truncated",
        "mpls_truncated",
        "pppoe_truncated",
        "ppp_truncated",
        "linux_sll_truncated",
        "linux_sll2_truncated",
        "null_truncated",
        "ipv4_truncated",
        "ipv4_bad_version",
        "ipv4_bad_header_length",
        "ipv4_bad_total_length",
        "ipv4_bad_header",
        "ipv6_bad_version",
        "ipv6_truncated",
        "ipv6_ext_truncated",
        "tcp_bad_header_length",
        "tcp_truncated",
        "udp_truncated",
        "sctp_truncated",
        "icmp_truncated",
        "icmpv6_truncated",
        "gre_bad_header",
        "gre_truncated",
        "erspan_bad_header",
        "erspan_truncated",
        "vxlan_bad_header",
        "vxlan_truncated",
        "geneve_bad_header",
        "geneve_truncated",
        "gtp_bad_header",
        "gtp_truncated",
        "ieee80211_truncated",
    ];

    /// The position of [`reason`](Self::reason) in [`REASONS`](Self::REASONS).
    pub fn reason_index(&self) -> usize {
        let reason = self.reason();
        Self::REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(Self::REASONS.len() - 1)
    }

    /// A short, bounded reason string for counters.
    pub fn reason(&self) -> &'static str {
        use DecodeErrorKind::*;
        use Layer::*;
        match (self.layer, self.kind) {
            (Ethernet, _) => "ethernet_truncated",
            (Vlan, _) => "vlan_truncated",
            (Mpls, _) => "mpls_truncated",
            (Pppoe, _) => "pppoe_truncated",
            (Ppp, _) => "ppp_truncated",
            (LinuxSll, _) => "linux_sll_truncated",
            (LinuxSll2, _) => "linux_sll2_truncated",
            (Null, _) => "null_truncated",
            (Ipv4, Truncated { .. }) => "ipv4_truncated",
            (Ipv4, BadVersion) => "ipv4_bad_version",
            (Ipv4, BadHeaderLength) => "ipv4_bad_header_length",
            (Ipv4, BadTotalLength) => "ipv4_bad_total_length",
            (Ipv4, BadTunnelHeader) => "ipv4_bad_header",
            (Ipv6, BadVersion) => "ipv6_bad_version",
            (Ipv6, _) => "ipv6_truncated",
            (Ipv6Ext, _) => "ipv6_ext_truncated",
            (Tcp, BadHeaderLength) => "tcp_bad_header_length",
            (Tcp, _) => "tcp_truncated",
            (Udp, _) => "udp_truncated",
            (Sctp, _) => "sctp_truncated",
            (Icmp, _) => "icmp_truncated",
            (Icmpv6, _) => "icmpv6_truncated",
            (Gre, BadTunnelHeader) => "gre_bad_header",
            (Gre, _) => "gre_truncated",
            (Erspan, BadTunnelHeader) => "erspan_bad_header",
            (Erspan, _) => "erspan_truncated",
            (Vxlan, BadTunnelHeader) => "vxlan_bad_header",
            (Vxlan, _) => "vxlan_truncated",
            (Geneve, BadTunnelHeader) => "geneve_bad_header",
            (Geneve, _) => "geneve_truncated",
            (Gtp, BadTunnelHeader) => "gtp_bad_header",
            (Gtp, _) => "gtp_truncated",
            (Ieee80211, _) => "ieee80211_truncated",
        }
    }
}

fn clamp16(v: usize) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layer = self.layer.name();
        match self.kind {
            DecodeErrorKind::Truncated { need, have } => write!(
                f,
                "truncated {layer} header at byte {} (need {need} bytes, {have} left)",
                self.offset
            ),
            DecodeErrorKind::BadVersion => {
                write!(
                    f,
                    "{layer} header at byte {} has the wrong IP version",
                    self.offset
                )
            }
            DecodeErrorKind::BadHeaderLength => write!(
                f,
                "{layer} header at byte {} has a header length below the minimum",
                self.offset
            ),
            DecodeErrorKind::BadTotalLength => write!(
                f,
                "{layer} header at byte {} has a total length below its header length",
                self.offset
            ),
            DecodeErrorKind::BadTunnelHeader => write!(
                f,
                "{layer} header at byte {} has a version or flags that protocol does not have",
                self.offset
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// An error and its causes on one line, for messages: each cause's text
/// once (errors often repeat their source's), and of a text over several
/// lines (a parser quoting the input), the first.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let first_line = |e: &dyn std::error::Error| {
        let text = e.to_string();
        text.lines().next().unwrap_or("").trim_end().to_owned()
    };
    let mut s = first_line(e);
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = first_line(c);
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Text(&'static str, Option<Box<Text>>);

    impl fmt::Display for Text {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Text {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1
                .as_deref()
                .map(|t| t as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn an_error_chain_is_one_line_with_each_cause_once() {
        let e = Text(
            "reading config: connection refused",
            Some(Box::new(Text(
                "connection refused",
                Some(Box::new(Text(
                    "line 1 column 11: unclosed '['\n --> <input>:1:11\n  |",
                    None,
                ))),
            ))),
        );
        assert_eq!(
            one_line(&e),
            "reading config: connection refused: line 1 column 11: unclosed '['"
        );
    }

    #[test]
    fn display_names_layer_offset_and_sizes() {
        let e = DecodeError::truncated(Layer::Tcp, 34, 20, 9);
        assert_eq!(
            e.to_string(),
            "truncated tcp header at byte 34 (need 20 bytes, 9 left)"
        );
        assert_eq!(e.reason(), "tcp_truncated");
    }

    #[test]
    fn every_reason_is_listed_once_for_the_counter_arrays() {
        use Layer::*;
        let layers = [
            Ethernet, Vlan, Mpls, Pppoe, Ppp, LinuxSll, LinuxSll2, Null, Ipv4, Ipv6, Ipv6Ext, Tcp,
            Udp, Sctp, Icmp, Icmpv6, Gre, Erspan, Vxlan, Geneve, Gtp, Ieee80211,
        ];
        let kinds = [
            DecodeErrorKind::Truncated { need: 1, have: 0 },
            DecodeErrorKind::BadVersion,
            DecodeErrorKind::BadHeaderLength,
            DecodeErrorKind::BadTotalLength,
            DecodeErrorKind::BadTunnelHeader,
        ];
        let mut seen = std::collections::HashSet::new();
        for layer in layers {
            for kind in kinds {
                let e = DecodeError {
                    layer,
                    offset: 0,
                    kind,
                };
                let i = e.reason_index();
                assert_eq!(DecodeError::REASONS[i], e.reason(), "{layer:?} {kind:?}");
                seen.insert(i);
            }
        }
        assert_eq!(seen.len(), DecodeError::REASONS.len(), "no unused reason");
    }
}
