//! IPv4 header (RFC 791, section 3.1).

use std::net::Ipv4Addr;

use super::{Field, be16, check, truncated};
use crate::error::DecodeErrorKind;

/// Byte ranges of the header's fields.
pub mod field {
    use super::Field;
    /// Version (high nibble) and IHL, the header length in 32-bit words.
    pub const VER_IHL: usize = 0;
    /// Type of service: DSCP (6 bits) and ECN (2 bits).
    pub const TOS: usize = 1;
    /// Total length of the datagram.
    pub const LENGTH: Field = 2..4;
    /// Identification.
    pub const IDENT: Field = 4..6;
    /// Flags (3 bits) and fragment offset (13 bits, in 8-byte units).
    pub const FLG_OFF: Field = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol of the payload.
    pub const PROTOCOL: usize = 9;
    /// Header checksum (never validated).
    pub const CHECKSUM: Field = 10..12;
    /// Source address.
    pub const SRC_ADDR: Field = 12..16;
    /// Destination address.
    pub const DST_ADDR: Field = 16..20;
    /// The fixed header's length; options follow up to the IHL.
    pub const FIXED_LEN: usize = 20;
}

/// The More Fragments flag in [`field::FLG_OFF`].
const MORE_FRAGMENTS: u16 = 0x2000;
/// The fragment offset in [`field::FLG_OFF`].
const OFFSET: u16 = 0x1fff;

view! {
    /// A view of an IPv4 header.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the buffer holds a whole IPv4 header, options included.
    ///
    /// # Errors
    /// `Truncated` (fewer than 20 bytes, or fewer than the IHL says),
    /// `BadVersion` (not 4), `BadHeaderLength` (IHL below 5).
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), DecodeErrorKind> {
        let b = self.buffer.as_ref();
        check(b, field::FIXED_LEN)?;
        if self.version() != 4 {
            return Err(DecodeErrorKind::BadVersion);
        }
        let header_len = self.header_len();
        if header_len < field::FIXED_LEN {
            return Err(DecodeErrorKind::BadHeaderLength);
        }
        if b.len() < header_len {
            return Err(truncated(header_len, b.len()));
        }
        Ok(())
    }

    /// Version: 4.
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes, options included (IHL × 4).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Type of service: DSCP << 2 | ECN.
    #[inline(always)]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Total length of the datagram (0 in TSO/GSO super-frames).
    #[inline(always)]
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Identification.
    #[inline(always)]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT.start)
    }

    /// The More Fragments flag.
    #[inline(always)]
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF.start) & MORE_FRAGMENTS != 0
    }

    /// Fragment offset, in 8-byte units.
    #[inline(always)]
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF.start) & OFFSET
    }

    /// Time to live.
    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    #[inline(always)]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Source address.
    #[inline(always)]
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Destination address.
    #[inline(always)]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.0.1 -> 10.0.0.2, TCP, TOS 0xb8, 40 bytes, id 0x1234, DF.
    const HEADER: [u8; 20] = [
        0x45, 0xb8, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 10, 0, 0, 1, 10, 0,
        0, 2,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&HEADER[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.tos()), (4, 20, 0xb8));
        assert_eq!((p.total_len(), p.ident()), (40, 0x1234));
        assert_eq!((p.more_frags(), p.frag_offset()), (false, 0));
        assert_eq!((p.ttl(), p.protocol()), (64, 6));
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn fragments() {
        let mut h = HEADER;
        h[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        let p = Packet::new_checked(&h[..]).unwrap();
        assert_eq!((p.more_frags(), p.frag_offset()), (true, 0));
        h[6..8].copy_from_slice(&0x00b9u16.to_be_bytes());
        let p = Packet::new_checked(&h[..]).unwrap();
        assert_eq!((p.more_frags(), p.frag_offset()), (false, 0xb9));
    }

    #[test]
    fn options_and_bad_headers() {
        let mut h = [0u8; 24];
        h[..20].copy_from_slice(&HEADER);
        h[0] = 0x46;
        assert_eq!(Packet::new_checked(&h[..]).unwrap().header_len(), 24);
        assert_eq!(
            Packet::new_checked(&h[..22]).err(),
            Some(DecodeErrorKind::Truncated { need: 24, have: 22 })
        );
        h[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&h[..]).err(),
            Some(DecodeErrorKind::BadHeaderLength)
        );
        h[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&h[..]).err(),
            Some(DecodeErrorKind::BadVersion)
        );
    }

    #[test]
    fn truncated_at_every_length() {
        super::super::assert_truncated_at_every_length(&HEADER, 20, Packet::new_checked);
    }
}
