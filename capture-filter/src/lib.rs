//! Capture filters in tcpdump's syntax (`tcp port 443`, `vlan and host
//! 10.0.0.1`), compiled to classic BPF by libpcap, as tcpdump does.
//!
//! libpcap is loaded at run time ([`Libpcap::load`]), only when a filter
//! is given: the engine builds and runs without it, and a filter on a
//! machine without it fails with one line naming the Debian package. What
//! is taken from libpcap is the compiler alone; the programs run in
//! userspace on [`engine::bpf`]'s interpreter and in the kernel as socket
//! filters.
//!
//! Why libpcap and not a compiler of our own: the oracle for what an
//! expression means is tcpdump, and tcpdump is libpcap's compiler. Its
//! grammar has about a hundred primitives, each with link-type-dependent
//! code (VLAN and MPLS offsets, IPv6 extension headers, `tcp[tcpflags]`);
//! a second compiler would differ from it somewhere, and nobody would
//! notice until a filter kept the wrong traffic.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod sys;

use engine::LinkType;
use engine::bpf::{FrameFilter, Insn, Program, ProgramError};

pub use sys::{LIBRARY_NAMES, Libpcap, PATH_VARIABLE};

/// The link types a filter is compiled for: every one the decoder reads.
pub const LINK_TYPES: [LinkType; 13] = [
    LinkType::NULL,
    LinkType::ETHERNET,
    LinkType::PPP,
    LinkType::RAW_12,
    LinkType::RAW_14,
    LinkType::PPP_HDLC,
    LinkType::RAW,
    LinkType::C_HDLC,
    LinkType::LOOP,
    LinkType::LINUX_SLL,
    LinkType::IPV4,
    LinkType::IPV6,
    LinkType::LINUX_SLL2,
];

/// Why a filter could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// libpcap is not installed (or not loadable).
    #[error(
        "capture filters need libpcap at run time, and it could not be loaded ({reason}); install Debian's libpcap0.8 package (apt-get install libpcap0.8)"
    )]
    NoLibpcap {
        /// What the dynamic loader said.
        reason: String,
    },
    /// libpcap refused the expression.
    #[error("filter {expression:?}: {message}")]
    Syntax {
        /// The expression.
        expression: String,
        /// libpcap's message.
        message: String,
    },
    /// libpcap compiled a program that is not valid classic BPF.
    #[error("filter {expression:?}: libpcap produced a program this engine cannot run: {source}")]
    Program {
        /// The expression.
        expression: String,
        /// What is wrong with it.
        #[source]
        source: ProgramError,
    },
}

impl Libpcap {
    /// Compiles `expression` for frames of `link_type`, optimised, as
    /// tcpdump does.
    ///
    /// # Errors
    /// libpcap refused it (its message), or produced a program that does
    /// not check out.
    pub fn compile_for(
        &self,
        expression: &str,
        link_type: LinkType,
    ) -> Result<Program, FilterError> {
        let insns: Vec<Insn> =
            self.compile(expression, link_type.0)
                .map_err(|message| FilterError::Syntax {
                    expression: expression.to_owned(),
                    message,
                })?;
        Program::new(insns).map_err(|source| FilterError::Program {
            expression: expression.to_owned(),
            source,
        })
    }

    /// Compiles `expression` for every link type the decoder reads. It
    /// must compile for Ethernet, or the error is libpcap's; a link type it
    /// does not apply to (e.g. `ether host …` on raw IP) gets no program,
    /// and its frames never match.
    ///
    /// # Errors
    /// The expression does not compile for Ethernet.
    pub fn frame_filter(&self, expression: &str) -> Result<FrameFilter, FilterError> {
        self.compile_for(expression, LinkType::ETHERNET)?;
        let programs = LINK_TYPES
            .iter()
            .map(|t| (t.0, self.compile_for(expression, *t).ok()))
            .collect();
        Ok(FrameFilter::new(expression, programs))
    }
}

/// Loads libpcap and compiles `expression` for every link type the decoder
/// reads ([`Libpcap::frame_filter`]).
///
/// # Errors
/// libpcap is missing, or refused the expression.
pub fn compile(expression: &str) -> Result<FrameFilter, FilterError> {
    Libpcap::load()?.frame_filter(expression)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame: Ethernet, IPv4, TCP from port `sport` to `dport`.
    fn tcp_frame(sport: u16, dport: u16, vlan: Option<u16>) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if let Some(id) = vlan {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&id.to_be_bytes());
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip.extend_from_slice(&sport.to_be_bytes());
        ip.extend_from_slice(&dport.to_be_bytes());
        ip.extend_from_slice(&[0; 16]);
        f.extend_from_slice(&ip);
        f
    }

    /// libpcap, or `None` after the project's skip message (which fails in
    /// CI and as root, where a missing library is a broken install).
    fn libpcap() -> Option<&'static Libpcap> {
        match Libpcap::load() {
            Ok(l) => Some(l),
            Err(e) => {
                capture_afpacket::testnet::skip(&e.to_string());
                None
            }
        }
    }

    #[test]
    fn expressions_compile_and_match_as_tcpdump_reads_them() {
        let Some(l) = libpcap() else { return };
        let f = l.frame_filter("tcp dst port 443").unwrap();
        let yes = tcp_frame(40000, 443, None);
        let no = tcp_frame(443, 40000, None);
        assert!(f.matches(1, &yes, yes.len() as u32));
        assert!(!f.matches(1, &no, no.len() as u32));
        // As in tcpdump, a tagged frame needs `vlan` first.
        let tagged = tcp_frame(40000, 443, Some(7));
        assert!(!f.matches(1, &tagged, tagged.len() as u32));
        let v = l.frame_filter("vlan 7 and tcp dst port 443").unwrap();
        assert!(v.matches(1, &tagged, tagged.len() as u32));
        // Raw IP: the same expression, compiled for that link type.
        assert!(f.matches(101, &yes[14..], 40));
        assert!(f.matches(12, &yes[14..], 40));
    }

    #[test]
    fn a_bad_expression_is_libpcaps_message() {
        let Some(l) = libpcap() else { return };
        let e = l.frame_filter("tcp port 443 and").unwrap_err().to_string();
        assert!(e.starts_with("filter \"tcp port 443 and\": "), "{e}");
        assert!(e.contains("syntax error"), "{e}");
        let e = l.frame_filter("port 99999").unwrap_err().to_string();
        assert!(e.contains("99999"), "{e}");
    }

    #[test]
    fn an_expression_for_one_link_layer_leaves_the_others_unmatched() {
        let Some(l) = libpcap() else { return };
        let f = l.frame_filter("ether host 02:00:00:00:00:01").unwrap();
        assert!(f.program(1).is_some());
        assert!(f.program(101).is_none());
        assert!(!f.matches(101, &tcp_frame(1, 2, None)[14..], 40));
    }
}
