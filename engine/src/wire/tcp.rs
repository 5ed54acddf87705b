//! TCP header (RFC 9293, section 3.1), up to the flags: what a flow needs
//! (ports, sequence and acknowledgement numbers, data offset, flags). The
//! window, checksum, urgent pointer and options are not read, so a header
//! cut after its flags still gives a whole flow.

use super::{Field, be16, be32, check};
use crate::error::DecodeErrorKind;

/// Byte ranges of the header's fields.
pub mod field {
    use super::Field;
    /// Source port.
    pub const SRC_PORT: Field = 0..2;
    /// Destination port.
    pub const DST_PORT: Field = 2..4;
    /// Sequence number.
    pub const SEQ_NUM: Field = 4..8;
    /// Acknowledgement number.
    pub const ACK_NUM: Field = 8..12;
    /// Data offset (4 bits, in 32-bit words), reserved bits and NS.
    pub const DATA_OFF: usize = 12;
    /// CWR … FIN.
    pub const FLAGS: usize = 13;
    /// Bytes [`Packet::new_checked`](super::Packet::new_checked) needs.
    pub const READ_LEN: usize = 14;
}

view! {
    /// A view of a TCP header's first 14 bytes.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the buffer holds the header up to its flags.
    ///
    /// # Errors
    /// `Truncated`: fewer than 14 bytes.
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), DecodeErrorKind> {
        check(self.buffer.as_ref(), field::READ_LEN)
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

    /// Sequence number.
    #[inline(always)]
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    /// Acknowledgement number.
    #[inline(always)]
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// Header length in bytes (data offset × 4); below 20 in a header that
    /// is not TCP's.
    #[inline(always)]
    pub fn header_len(&self) -> u16 {
        u16::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flags: FIN = 0x01 … CWR = 0x80, NS = 0x100.
    #[inline(always)]
    pub fn flags(&self) -> u16 {
        let b = self.buffer.as_ref();
        (u16::from(b[field::DATA_OFF] & 0x01) << 8) | u16::from(b[field::FLAGS])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 40000 -> 80, seq 1, ack 0, SYN, a 20-byte header.
    const SYN: [u8; 20] = [
        0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];

    #[test]
    fn deconstruct() {
        let t = Packet::new_checked(&SYN[..]).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (40000, 80));
        assert_eq!((t.seq_number(), t.ack_number()), (1, 0));
        assert_eq!((t.header_len(), t.flags()), (20, 0x02));
        let mut ns = SYN;
        ns[12] |= 1;
        assert_eq!(Packet::new_checked(&ns[..]).unwrap().flags(), 0x102);
    }

    #[test]
    fn truncated_at_every_length() {
        super::super::assert_truncated_at_every_length(&SYN, 14, Packet::new_checked);
    }
}
