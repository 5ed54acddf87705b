//! Live capture on AF_PACKET TPACKET_V3 rings.
//!
//! A [`Ring`] is one packet socket on one interface with a block ring
//! shared with the kernel; several rings in one fanout group
//! ([`RingConfig::fanout_group`]) split an interface's traffic by a
//! symmetric hash of the two IP addresses, so that each worker can own one
//! ring and every flow, fragments included, stays on one ring in order.
//!
//! With the `testnet` feature (tests and benchmarks only; never in the
//! binary), `PacketSender` writes raw frames to an interface, for replaying
//! captures into a veth pair, which `testnet` sets up between two network
//! namespaces of its own.
//!
//! [`LiveCapture`] opens one ring per flow worker on each interface asked
//! for and drains them as an [`engine::CaptureSource`]: the `engine`
//! binary's `-i`. The crate's tests and `engine`'s live tests run them on
//! real veth pairs.
//!
//! `unsafe` is confined to the system calls and the shared ring memory,
//! each block with a `SAFETY:` comment; packets are parsed in safe code.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod fanout;
mod live;
mod packet;
pub mod ring;
#[cfg(feature = "testnet")]
mod sender;
mod sys;
#[cfg(feature = "testnet")]
pub mod testnet;

pub use fanout::FANOUT_BY_ADDRESSES;
pub use host::links::{LinkEvent, LinkMonitor, interfaces, is_pattern};
pub use live::{LiveCapture, LiveError, Messages, Warn};
pub use packet::{Gso, GsoKind, Packet, PacketType, Packets};
pub use ring::{
    Block, MAX_BLOCK_SIZE, MAX_RING_MEMORY, Ring, RingConfig, RingError, RingStats,
    check_ring_memory, wait_any,
};
#[cfg(feature = "testnet")]
pub use sender::PacketSender;
