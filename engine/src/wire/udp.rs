//! UDP header (RFC 768): the ports, which is all a flow needs; the length
//! and checksum are not read, so a header cut after its ports still gives a
//! whole flow.

use super::{Field, be16, check};
use crate::error::DecodeErrorKind;

/// Byte ranges of the header's fields.
pub mod field {
    use super::Field;
    /// Source port.
    pub const SRC_PORT: Field = 0..2;
    /// Destination port.
    pub const DST_PORT: Field = 2..4;
    /// Length of header and data.
    pub const LENGTH: Field = 4..6;
    /// Checksum.
    pub const CHECKSUM: Field = 6..8;
    /// The header's length.
    pub const HEADER_LEN: usize = 8;
}

view! {
    /// A view of a UDP header's ports.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the buffer holds at least the two ports.
    ///
    /// # Errors
    /// `Truncated`: fewer than 4 bytes.
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), DecodeErrorKind> {
        check(self.buffer.as_ref(), field::DST_PORT.end)
    }

    /// Source port.
    #[inline(always)]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    #[inline(always)]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deconstruct_and_truncated_at_every_length() {
        let h = [0x14u8, 0xe9, 0, 53, 0, 8, 0, 0];
        let u = Packet::new_checked(&h[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (5353, 53));
        super::super::assert_truncated_at_every_length(&h, 4, Packet::new_checked);
    }
}
