//! SCTP common header (RFC 9260, section 3.1) and the type of the first
//! chunk, which tells INIT (1) and INIT ACK (2).

use super::{Field, be16, check};
use crate::error::DecodeErrorKind;

/// Byte ranges of the header's fields.
pub mod field {
    use super::Field;
    /// Source port.
    pub const SRC_PORT: Field = 0..2;
    /// Destination port.
    pub const DST_PORT: Field = 2..4;
    /// Verification tag.
    pub const VERIFICATION_TAG: Field = 4..8;
    /// Checksum.
    pub const CHECKSUM: Field = 8..12;
    /// The first chunk's type, when there is a chunk.
    pub const CHUNK_TYPE: usize = 12;
}

view! {
    /// A view of an SCTP packet.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the buffer holds the 12-byte common header.
    ///
    /// # Errors
    /// `Truncated`: fewer than 12 bytes.
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), DecodeErrorKind> {
        check(self.buffer.as_ref(), field::CHECKSUM.end)
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

    /// The first chunk's type, if a chunk follows the header.
    #[inline(always)]
    pub fn first_chunk_type(&self) -> Option<u8> {
        self.buffer.as_ref().get(field::CHUNK_TYPE).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deconstruct_and_truncated_at_every_length() {
        let init = [
            0x0bu8, 0x59, 0x0b, 0x59, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 20,
        ];
        let s = Packet::new_checked(&init[..]).unwrap();
        assert_eq!((s.src_port(), s.dst_port()), (2905, 2905));
        assert_eq!(s.first_chunk_type(), Some(1));
        let bare = Packet::new_checked(&init[..12]).unwrap();
        assert_eq!(bare.first_chunk_type(), None);
        super::super::assert_truncated_at_every_length(&init, 12, Packet::new_checked);
    }
}
