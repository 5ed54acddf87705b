//! IP Authentication Header (RFC 4302, section 2), in IPv4 and IPv6.

use super::{be32, check};
use crate::error::DecodeErrorKind;

view! {
    /// A view of an Authentication Header.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The fixed part: next header, payload length, reserved, SPI, sequence
    /// number.
    pub const FIXED_LEN: usize = 12;

    /// Checks that the buffer holds the whole header (its ICV included).
    ///
    /// # Errors
    /// `Truncated`: fewer than 12 bytes, or fewer than its length says.
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), DecodeErrorKind> {
        check(self.buffer.as_ref(), Self::FIXED_LEN)?;
        check(self.buffer.as_ref(), self.header_len())
    }

    /// Next header: what the AH protects.
    #[inline(always)]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// The header's length in bytes ((payload length + 2) × 4).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[1]) + 2) * 4
    }

    /// Security Parameters Index.
    #[inline(always)]
    pub fn spi(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AH: [u8; 24] = [
        6, 4, 0, 0, 0, 0, 0x10, 0x01, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn deconstruct() {
        let a = Packet::new_checked(&AH[..]).unwrap();
        assert_eq!((a.next_header(), a.header_len(), a.spi()), (6, 24, 0x1001));
    }

    #[test]
    fn truncated_at_every_length() {
        super::super::assert_truncated_at_every_length(&AH, 12, Packet::new_checked);
        for len in 12..24 {
            assert_eq!(
                Packet::new_checked(&AH[..len]).err(),
                Some(DecodeErrorKind::Truncated {
                    need: 24,
                    have: len as u16
                })
            );
        }
    }
}
