//! ICMP (RFC 792) and ICMPv6 (RFC 4443) messages: type and code, which is
//! all a flow reads.

use super::check;
use crate::error::DecodeErrorKind;

/// Byte positions of the fields read.
pub mod field {
    /// Message type.
    pub const TYPE: usize = 0;
    /// Message code.
    pub const CODE: usize = 1;
}

view! {
    /// A view of an ICMP or ICMPv6 message's type and code.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the buffer holds at least the type and code.
    ///
    /// # Errors
    /// `Truncated`: fewer than 2 bytes.
    #[inline(always)]
    pub fn check_len(&self) -> Result<(), DecodeErrorKind> {
        check(self.buffer.as_ref(), field::CODE + 1)
    }

    /// Message type.
    #[inline(always)]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    #[inline(always)]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deconstruct_and_truncated_at_every_length() {
        let echo = [8u8, 0, 0xf7, 0xff, 0, 0, 0, 0];
        let m = Packet::new_checked(&echo[..]).unwrap();
        assert_eq!((m.msg_type(), m.msg_code()), (8, 0));
        super::super::assert_truncated_at_every_length(&echo, 2, Packet::new_checked);
    }
}
