//! IPv6 fixed header (RFC 8200, section 3) and the extension headers the
//! decoder walks: the generic options/routing layout (section 4.3 ff.) and
//! the fragment header (section 4.5).

use std::net::Ipv6Addr;

use super::{Field, be16, be32, check};
use crate::error::DecodeErrorKind;

/// Byte ranges of the fixed header's fields.
pub mod field {
    use super::Field;
    /// Version (4 bits), traffic class (8), flow label (20).
    pub const VER_TC_FLOW: Field = 0..4;
    /// Payload length (what follows the fixed header).
    pub const LENGTH: Field = 4..6;
    /// Next header.
    pub const NXT_HDR: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address.
    pub const SRC_ADDR: Field = 8..24;
    /// Destination address.
    pub const DST_ADDR: Field = 24..40;
    /// The fixed header's length.
    pub const HEADER_LEN: usize = 40;
}

view! {
    /// A view of an IPv6 fixed header.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the buffer holds the 40-byte fixed header.
    ///
    /// # Errors
    /// `Truncated` (fewer than 40 bytes), `BadVersion` (not 6).
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), DecodeErrorKind> {
        check(self.buffer.as_ref(), field::HEADER_LEN)?;
        if self.version() != 6 {
            return Err(DecodeErrorKind::BadVersion);
        }
        Ok(())
    }

    /// Version: 6.
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic class: DSCP << 2 | ECN.
    #[inline(always)]
    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    /// Flow label (20 bits).
    #[inline(always)]
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW.start) & 0x000f_ffff
    }

    /// Payload length (0 in jumbograms and GSO super-frames).
    #[inline(always)]
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Next header: the first extension header's type or the transport.
    #[inline(always)]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Hop limit.
    #[inline(always)]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline(always)]
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    #[inline(always)]
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }
}

view! {
    /// A view of an extension header with the common layout: next header, then
    /// its length in 8-byte units not counting the first 8 (hop-by-hop options,
    /// routing, destination options, mobility, HIP, shim6).
    ExtHeader
}

impl<T: AsRef<[u8]>> ExtHeader<T> {
    /// Checks that the buffer holds the whole extension header.
    ///
    /// # Errors
    /// `Truncated`: fewer than 2 bytes, or fewer than its length says.
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), DecodeErrorKind> {
        check(self.buffer.as_ref(), 2)?;
        check(self.buffer.as_ref(), self.header_len())
    }

    /// Next header.
    #[inline(always)]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// The header's length in bytes.
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[1]) + 1) * 8
    }
}

view! {
    /// A view of the 8-byte fragment header.
    FragmentHeader
}

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    /// Its length.
    pub const LEN: usize = 8;

    /// Checks that the buffer holds the whole fragment header.
    ///
    /// # Errors
    /// `Truncated`: fewer than 8 bytes.
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), DecodeErrorKind> {
        check(self.buffer.as_ref(), Self::LEN)
    }

    /// Next header.
    #[inline(always)]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// Fragment offset, in 8-byte units.
    #[inline(always)]
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), 2) >> 3
    }

    /// The M flag: more fragments follow.
    #[inline(always)]
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), 2) & 1 != 0
    }

    /// Identification.
    #[inline(always)]
    pub fn ident(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2001:db8::1 -> 2001:db8::2, traffic class 0xb8, flow label 0x12345,
    /// 20 bytes of UDP, hop limit 64.
    fn header() -> [u8; 40] {
        let mut h = [0u8; 40];
        h[0..4].copy_from_slice(&0x6b81_2345u32.to_be_bytes());
        h[4..6].copy_from_slice(&20u16.to_be_bytes());
        h[6] = 17;
        h[7] = 64;
        h[8..24].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        h[24..40].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        h
    }

    #[test]
    fn deconstruct() {
        let h = header();
        let p = Packet::new_checked(&h[..]).unwrap();
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xb8, 0x12345)
        );
        assert_eq!(
            (p.payload_len(), p.next_header(), p.hop_limit()),
            (20, 17, 64)
        );
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        let mut v4 = h;
        v4[0] = 0x45;
        assert_eq!(
            Packet::new_checked(&v4[..]).err(),
            Some(DecodeErrorKind::BadVersion)
        );
    }

    #[test]
    fn extension_headers() {
        // Destination options: next UDP, 16 bytes.
        let opts = [17u8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let e = ExtHeader::new_checked(&opts[..]).unwrap();
        assert_eq!((e.next_header(), e.header_len()), (17, 16));
        assert_eq!(
            ExtHeader::new_checked(&opts[..9]).err(),
            Some(DecodeErrorKind::Truncated { need: 16, have: 9 })
        );
        // Fragment: next TCP, offset 185, M set, id 0xdeadbeef.
        let frag = [6u8, 0, 0x05, 0xc9, 0xde, 0xad, 0xbe, 0xef];
        let f = FragmentHeader::new_checked(&frag[..]).unwrap();
        assert_eq!((f.next_header(), f.frag_offset()), (6, 185));
        assert!(f.more_frags());
        assert_eq!(f.ident(), 0xdead_beef);
    }

    #[test]
    fn truncated_at_every_length() {
        let h = header();
        super::super::assert_truncated_at_every_length(&h, 40, Packet::new_checked);
        let frag = [6u8, 0, 0, 1, 0, 0, 0, 1];
        super::super::assert_truncated_at_every_length(&frag, 8, FragmentHeader::new_checked);
    }
}
