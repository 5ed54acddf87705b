//! Zero-copy views of the wire headers the decoder reads, one module per
//! header, after smoltcp's `wire` module.
//!
//! Each view is a `Packet<T: AsRef<[u8]>>` over a buffer that starts at its
//! header. Its `field` module names the byte ranges of the RFC's fields,
//! and its accessors are named after them (`src_port()`, `ttl()`).
//!
//! Contract: `new_checked` checks that the buffer holds every byte an
//! accessor reads (and that the header's own version and length fields are
//! possible); after it succeeds, no accessor panics. `new_unchecked` skips
//! the checks and is for tests and for buffers already checked with
//! `check_len`. A failed check says why as a [`DecodeErrorKind`], which the
//! decoder turns into a [`DecodeError`](crate::DecodeError) naming the
//! layer and the header's offset in the frame.
//!
//! Some views check only the part of a header the flow needs, which their
//! docs say (TCP up to the flags, UDP the ports): a header cut after that
//! still gives its flow everything it needs.

/// The parts every view shares: the struct over its buffer,
/// `new_unchecked`, `new_checked` (which runs the view's own `check_len`)
/// and `into_inner`. Each view module writes its `check_len` and accessors.
macro_rules! view {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// A view without checks (see the module contract).
            pub fn new_unchecked(buffer: T) -> $name<T> {
                $name { buffer }
            }

            /// A view of a buffer that passes [`check_len`](Self::check_len).
            ///
            /// # Errors
            /// As [`check_len`](Self::check_len).
            #[inline(always)]
            pub fn new_checked(buffer: T) -> Result<$name<T>, $crate::error::DecodeErrorKind> {
                let view = $name::new_unchecked(buffer);
                view.check_len()?;
                Ok(view)
            }

            /// The buffer.
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}

pub mod ah;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod sctp;
pub mod tcp;
pub mod udp;

pub use ah::Packet as AuthHeader;
pub use ethernet::Frame as EthernetFrame;
pub use icmp::Packet as IcmpPacket;
pub use ipv4::Packet as Ipv4Packet;
pub use ipv6::Packet as Ipv6Packet;
pub use ipv6::{ExtHeader as Ipv6ExtHeader, FragmentHeader as Ipv6FragmentHeader};
pub use sctp::Packet as SctpPacket;
pub use tcp::Packet as TcpPacket;
pub use udp::Packet as UdpPacket;

use crate::error::DecodeErrorKind;

/// A byte range of a header.
pub type Field = std::ops::Range<usize>;

/// A big-endian `u16` at `at`: one bounds check and one load (these run
/// several times per packet).
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    let mut v = [0; 2];
    v.copy_from_slice(&b[at..at + 2]);
    u16::from_be_bytes(v)
}

/// A big-endian `u32` at `at`, as [`be16`].
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    let mut v = [0; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(v)
}

/// `Ok` if `buffer` holds at least `need` bytes.
#[inline]
pub(crate) fn check(buffer: &[u8], need: usize) -> Result<(), DecodeErrorKind> {
    if buffer.len() >= need {
        Ok(())
    } else {
        Err(truncated(need, buffer.len()))
    }
}

/// `Truncated { need, have }`, saturated to the field widths.
#[cold]
pub(crate) fn truncated(need: usize, have: usize) -> DecodeErrorKind {
    let fit = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
    DecodeErrorKind::Truncated {
        need: fit(need),
        have: fit(have),
    }
}

/// The checks every view's tests make: a header parses whole, and every
/// shorter buffer is refused as truncated, never a panic.
#[cfg(test)]
pub(crate) fn assert_truncated_at_every_length<'a, T>(
    bytes: &'a [u8],
    need: usize,
    parse: impl Fn(&'a [u8]) -> Result<T, DecodeErrorKind>,
) {
    assert!(parse(bytes).is_ok(), "whole header parses");
    for len in 0..need.min(bytes.len()) {
        assert_eq!(
            parse(&bytes[..len]).err(),
            Some(DecodeErrorKind::Truncated {
                need: need as u16,
                have: len as u16
            }),
            "length {len}"
        );
    }
}
