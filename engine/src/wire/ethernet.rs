//! Ethernet II frame header (IEEE 802.3): destination, source, EtherType.

use super::{Field, be16, check};
use crate::error::DecodeErrorKind;

/// Byte ranges of the header's fields.
pub mod field {
    use super::Field;
    /// Destination MAC address.
    pub const DESTINATION: Field = 0..6;
    /// Source MAC address.
    pub const SOURCE: Field = 6..12;
    /// EtherType (or an 802.3 length below 0x0600).
    pub const ETHERTYPE: Field = 12..14;
    /// Where the payload starts.
    pub const PAYLOAD: usize = 14;
}

view! {
    /// A view of an Ethernet frame.
    Frame
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Checks that the buffer holds the 14-byte header.
    ///
    /// # Errors
    /// `Truncated` when it is shorter.
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), DecodeErrorKind> {
        check(self.buffer.as_ref(), field::PAYLOAD)
    }

    /// Destination MAC address.
    pub fn dst_addr(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        a
    }

    /// Source MAC address.
    pub fn src_addr(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        a
    }

    /// EtherType.
    #[inline(always)]
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 14] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];

    #[test]
    fn deconstruct() {
        let f = Frame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.ethertype(), 0x0800);
    }

    #[test]
    fn truncated_at_every_length() {
        super::super::assert_truncated_at_every_length(&FRAME, 14, Frame::new_checked);
    }
}
