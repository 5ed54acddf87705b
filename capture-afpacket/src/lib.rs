//! Live capture on AF_PACKET TPACKET_V3 rings (one ring per worker, fanout).
//!
//! Not implemented yet: this crate is a placeholder in the workspace layout
//! and exports nothing. The `engine` binary has no live-capture flag until it
//! lands (issue 5).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
