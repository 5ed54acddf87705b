//! Standard names: IANA protocol keywords, DSCP, ECN, ICMP types and codes,
//! TCP flags.
//!
//! Names are lower case. Multi-word IANA names (ICMP types and codes) are
//! written in snake_case, with "(Deprecated)" and similar notes dropped, so
//! that they are stable, query-friendly tokens (`destination_unreachable`,
//! `port_unreachable`). Values without a registered name return `None` and the
//! corresponding `*.name` attribute is left out.

/// Lower-case IANA protocol keyword for `network.transport`; numbers without
/// a keyword in this table are rendered in decimal by [`transport_name`].
pub fn protocol_keyword(protocol: u8) -> Option<&'static str> {
    Some(match protocol {
        0 => "hopopt",
        1 => "icmp",
        2 => "igmp",
        3 => "ggp",
        4 => "ipv4",
        5 => "st",
        6 => "tcp",
        8 => "egp",
        9 => "igp",
        17 => "udp",
        27 => "rdp",
        29 => "iso-tp4",
        33 => "dccp",
        41 => "ipv6",
        43 => "ipv6-route",
        44 => "ipv6-frag",
        46 => "rsvp",
        47 => "gre",
        50 => "esp",
        51 => "ah",
        58 => "ipv6-icmp",
        59 => "ipv6-nonxt",
        60 => "ipv6-opts",
        88 => "eigrp",
        89 => "ospfigp",
        94 => "ipip",
        97 => "etherip",
        98 => "encap",
        103 => "pim",
        108 => "ipcomp",
        112 => "vrrp",
        115 => "l2tp",
        124 => "isis over ipv4",
        132 => "sctp",
        135 => "mobility header",
        136 => "udplite",
        137 => "mpls-in-ip",
        139 => "hip",
        140 => "shim6",
        143 => "ethernet",
        _ => return None,
    })
}

/// The `network.type` value of an address: `ipv4` or `ipv6`.
pub fn network_type(addr: std::net::IpAddr) -> &'static str {
    if addr.is_ipv4() { "ipv4" } else { "ipv6" }
}

/// The `network.transport` value: the IANA keyword, or the protocol number
/// in decimal when the number has no keyword here.
pub fn transport_name(protocol: u8) -> std::borrow::Cow<'static, str> {
    match protocol_keyword(protocol) {
        Some(k) => std::borrow::Cow::Borrowed(k),
        None => std::borrow::Cow::Owned(protocol.to_string()),
    }
}

/// Lower-case DSCP name (RFC 2474, 2597, 3246, 5865, 8622).
pub fn dscp_name(dscp: u8) -> Option<&'static str> {
    Some(match dscp {
        0 => "df",
        1 => "le",
        8 => "cs1",
        10 => "af11",
        12 => "af12",
        14 => "af13",
        16 => "cs2",
        18 => "af21",
        20 => "af22",
        22 => "af23",
        24 => "cs3",
        26 => "af31",
        28 => "af32",
        30 => "af33",
        32 => "cs4",
        34 => "af41",
        36 => "af42",
        38 => "af43",
        40 => "cs5",
        44 => "va",
        46 => "ef",
        48 => "cs6",
        56 => "cs7",
        _ => return None,
    })
}

/// Lower-case ECN codepoint name (RFC 3168).
pub fn ecn_name(ecn: u8) -> &'static str {
    match ecn & 3 {
        0 => "not-ect",
        1 => "ect(1)",
        2 => "ect(0)",
        _ => "ce",
    }
}

/// IANA ICMP (protocol 1) or ICMPv6 (protocol 58) type name.
pub fn icmp_type_name(protocol: u8, icmp_type: u8) -> Option<&'static str> {
    if protocol == 58 {
        icmpv6_type_name(icmp_type)
    } else {
        icmpv4_type_name(icmp_type)
    }
}

/// IANA ICMP (protocol 1) or ICMPv6 (protocol 58) code name for a type.
pub fn icmp_code_name(protocol: u8, icmp_type: u8, code: u8) -> Option<&'static str> {
    if protocol == 58 {
        icmpv6_code_name(icmp_type, code)
    } else {
        icmpv4_code_name(icmp_type, code)
    }
}

fn icmpv4_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        0 => "echo_reply",
        3 => "destination_unreachable",
        4 => "source_quench",
        5 => "redirect",
        8 => "echo",
        9 => "router_advertisement",
        10 => "router_solicitation",
        11 => "time_exceeded",
        12 => "parameter_problem",
        13 => "timestamp",
        14 => "timestamp_reply",
        15 => "information_request",
        16 => "information_reply",
        17 => "address_mask_request",
        18 => "address_mask_reply",
        30 => "traceroute",
        40 => "photuris",
        42 => "extended_echo_request",
        43 => "extended_echo_reply",
        _ => return None,
    })
}

fn icmpv4_code_name(t: u8, c: u8) -> Option<&'static str> {
    Some(match (t, c) {
        (3, 0) => "net_unreachable",
        (3, 1) => "host_unreachable",
        (3, 2) => "protocol_unreachable",
        (3, 3) => "port_unreachable",
        (3, 4) => "fragmentation_needed",
        (3, 5) => "source_route_failed",
        (3, 6) => "destination_network_unknown",
        (3, 7) => "destination_host_unknown",
        (3, 8) => "source_host_isolated",
        (3, 9) => "network_administratively_prohibited",
        (3, 10) => "host_administratively_prohibited",
        (3, 11) => "network_unreachable_for_tos",
        (3, 12) => "host_unreachable_for_tos",
        (3, 13) => "communication_administratively_prohibited",
        (3, 14) => "host_precedence_violation",
        (3, 15) => "precedence_cutoff_in_effect",
        (5, 0) => "redirect_for_network",
        (5, 1) => "redirect_for_host",
        (5, 2) => "redirect_for_tos_and_network",
        (5, 3) => "redirect_for_tos_and_host",
        (9, 0) => "normal_router_advertisement",
        (9, 16) => "does_not_route_common_traffic",
        (11, 0) => "ttl_exceeded_in_transit",
        (11, 1) => "fragment_reassembly_time_exceeded",
        (12, 0) => "pointer_indicates_the_error",
        (12, 1) => "missing_a_required_option",
        (12, 2) => "bad_length",
        (0 | 4 | 8 | 10 | 13 | 14 | 15 | 16 | 17 | 18, 0) => "no_code",
        _ => return None,
    })
}

fn icmpv6_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        1 => "destination_unreachable",
        2 => "packet_too_big",
        3 => "time_exceeded",
        4 => "parameter_problem",
        128 => "echo_request",
        129 => "echo_reply",
        130 => "multicast_listener_query",
        131 => "multicast_listener_report",
        132 => "multicast_listener_done",
        133 => "router_solicitation",
        134 => "router_advertisement",
        135 => "neighbor_solicitation",
        136 => "neighbor_advertisement",
        137 => "redirect_message",
        138 => "router_renumbering",
        139 => "icmp_node_information_query",
        140 => "icmp_node_information_response",
        141 => "inverse_neighbor_discovery_solicitation_message",
        142 => "inverse_neighbor_discovery_advertisement_message",
        143 => "version_2_multicast_listener_report",
        144 => "home_agent_address_discovery_request_message",
        145 => "home_agent_address_discovery_reply_message",
        146 => "mobile_prefix_solicitation",
        147 => "mobile_prefix_advertisement",
        148 => "certification_path_solicitation_message",
        149 => "certification_path_advertisement_message",
        151 => "multicast_router_advertisement",
        152 => "multicast_router_solicitation",
        153 => "multicast_router_termination",
        155 => "rpl_control_message",
        160 => "extended_echo_request",
        161 => "extended_echo_reply",
        _ => return None,
    })
}

fn icmpv6_code_name(t: u8, c: u8) -> Option<&'static str> {
    Some(match (t, c) {
        (1, 0) => "no_route_to_destination",
        (1, 1) => "communication_with_destination_administratively_prohibited",
        (1, 2) => "beyond_scope_of_source_address",
        (1, 3) => "address_unreachable",
        (1, 4) => "port_unreachable",
        (1, 5) => "source_address_failed_ingress_egress_policy",
        (1, 6) => "reject_route_to_destination",
        (1, 7) => "error_in_source_routing_header",
        (1, 8) => "headers_too_long",
        (3, 0) => "hop_limit_exceeded_in_transit",
        (3, 1) => "fragment_reassembly_time_exceeded",
        (4, 0) => "erroneous_header_field_encountered",
        (4, 1) => "unrecognized_next_header_type_encountered",
        (4, 2) => "unrecognized_ipv6_option_encountered",
        (4, 3) => "ipv6_first_fragment_has_incomplete_ipv6_header_chain",
        (138, 0) => "router_renumbering_command",
        (138, 1) => "router_renumbering_result",
        (138, 255) => "sequence_number_reset",
        (139, 0) => "data_contains_an_ipv6_address",
        (139, 1) => "data_contains_a_name_or_is_empty",
        (139, 2) => "data_contains_an_ipv4_address",
        (140, 0) => "successful_reply",
        (140, 1) => "responder_refuses_to_supply_the_answer",
        (140, 2) => "qtype_unknown_to_the_responder",
        (2 | 128..=137 | 141..=153 | 155 | 160 | 161, 0) => "no_code",
        _ => return None,
    })
}

/// TCP flag names by bit, lowest first (FIN = bit 0 … CWR = bit 7, NS = bit 8).
pub const TCP_FLAG_NAMES: [&str; 9] =
    ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS"];

/// The names of the flags set in `bits`, lowest bit first.
pub fn tcp_flag_tags(bits: u16) -> impl Iterator<Item = &'static str> {
    TCP_FLAG_NAMES
        .iter()
        .enumerate()
        .filter(move |(i, _)| bits & (1 << i) != 0)
        .map(|(_, n)| *n)
}

/// [`tcp_flag_tags`] as one shared list per combination of the nine
/// flags (made once), so that a span can carry it without allocating.
pub fn tcp_flag_tag_list(bits: u16) -> &'static [&'static str] {
    static LISTS: std::sync::OnceLock<Vec<Vec<&'static str>>> = std::sync::OnceLock::new();
    let lists = LISTS.get_or_init(|| {
        (0..1u16 << TCP_FLAG_NAMES.len())
            .map(|b| tcp_flag_tags(b).collect())
            .collect()
    });
    &lists[usize::from(bits) & (lists.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_bit_order() {
        assert_eq!(tcp_flag_tags(18).collect::<Vec<_>>(), ["SYN", "ACK"]);
        assert_eq!(
            tcp_flag_tags(0x111).collect::<Vec<_>>(),
            ["FIN", "ACK", "NS"]
        );
        for bits in 0..=u16::MAX {
            let all: Vec<_> = tcp_flag_tags(bits).collect();
            assert_eq!(tcp_flag_tag_list(bits), all.as_slice(), "{bits:#x}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(transport_name(58), "ipv6-icmp");
        assert_eq!(transport_name(253), "253");
        assert_eq!(dscp_name(46), Some("ef"));
        assert_eq!(ecn_name(3), "ce");
        assert_eq!(icmp_type_name(1, 8), Some("echo"));
        assert_eq!(icmp_code_name(1, 3, 3), Some("port_unreachable"));
        assert_eq!(icmp_type_name(58, 128), Some("echo_request"));
        assert_eq!(icmp_code_name(58, 128, 0), Some("no_code"));
        assert_eq!(icmp_type_name(1, 200), None);
    }
}
