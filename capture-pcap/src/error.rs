//! What can go wrong reading a capture: fatal problems with their position
//! ([`CaptureError`]) and problems counted while reading goes on
//! ([`ReaderStats`]).

use std::fmt;
use std::io;

/// What went wrong, without the position (see [`CaptureError`]).
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)]
pub enum ErrorKind {
    #[error("read error: {0}")]
    Io(io::Error),
    #[error("cannot open: {0}")]
    Open(io::Error),
    #[error("empty input (expected a pcap or pcapng file header)")]
    Empty,
    #[error(
        "not a pcap or pcapng file (magic number 0x{magic:08x}; expected a1b2c3d4, a1b23c4d, their byte swaps, or 0a0d0d0a)"
    )]
    NotACapture { magic: u32 },
    #[error("truncated file header (need {need} bytes, {have} left)")]
    TruncatedFileHeader { need: usize, have: usize },
    #[error("unsupported pcap version {major}.{minor} (expected 2.4)")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("truncated record header (need {need} bytes, {have} left)")]
    TruncatedRecordHeader { need: usize, have: usize },
    #[error("truncated packet data (need {need} bytes, {have} left)")]
    TruncatedRecord { need: usize, have: usize },
    #[error("captured length {len} is absurd (expected at most {max} bytes)")]
    AbsurdLength { len: u32, max: u32 },
    #[error("truncated block header (need {need} bytes, {have} left)")]
    TruncatedBlockHeader { need: usize, have: usize },
    #[error(
        "block total length {len} is invalid (expected a multiple of 4 from {min} to {max} bytes)"
    )]
    BadBlockLength { len: u32, min: u32, max: u32 },
    #[error("truncated block (need {need} bytes, {have} left)")]
    TruncatedBlock { need: usize, have: usize },
    #[error("{what} of total length {len} is too short (expected at least {min} bytes)")]
    BlockTooShort {
        what: &'static str,
        len: u32,
        min: u32,
    },
    #[error("block trailing length {trailing} differs from its leading length {leading}")]
    BlockLengthMismatch { leading: u32, trailing: u32 },
    #[error("section header byte-order magic is 0x{bom:08x} (expected 1a2b3c4d)")]
    BadByteOrderMagic { bom: u32 },
    #[error("unsupported pcapng version {major}.{minor} (expected 1.0)")]
    UnsupportedPcapngVersion { major: u16, minor: u16 },
    #[error("the first block is of type 0x{block_type:08x} (expected a section header, 0a0d0d0a)")]
    MissingSectionHeader { block_type: u32 },
    /// Internal to [`CaptureReader::next_frame_or_idle`](crate::CaptureReader::next_frame_or_idle), which turns it into
    /// [`Next::Idle`](crate::Next::Idle); never returned by any public method.
    #[error("no more data ready yet")]
    #[doc(hidden)]
    NotReady,
}

/// A fatal problem with a capture file, with its position.
#[derive(Debug, thiserror::Error)]
pub struct CaptureError {
    /// The file name as given (`-` for standard input).
    pub path: String,
    /// Record (pcap) or block (pcapng) number from 1; 0 is the file header.
    pub record: u64,
    /// Byte offset of the start of that record or block.
    pub offset: u64,
    /// The problem (already part of the message, so not a `source`).
    pub kind: ErrorKind,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if matches!(self.kind, ErrorKind::Open(_)) {
            write!(f, "{}: {}", self.path, self.kind)
        } else if self.record == 0 {
            write!(
                f,
                "{}: file header (byte {}): {}",
                self.path, self.offset, self.kind
            )
        } else {
            write!(
                f,
                "{}: record {} (byte {}): {}",
                self.path, self.record, self.offset, self.kind
            )
        }
    }
}

/// Non-fatal problems, counted while reading goes on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Records or blocks read (packets and others).
    pub records: u64,
    /// Packet records handed out.
    pub frames: u64,
    /// Bytes of the input consumed.
    pub bytes: u64,
    /// pcapng packet blocks naming an interface no IDB described.
    pub unknown_interface: u64,
    /// pcapng packet blocks whose captured length exceeds the block.
    pub bad_packet_block: u64,
    /// Simple Packet Blocks (no timestamp: they get the previous packet's).
    pub simple_packet_blocks: u64,
    /// The first non-fatal problem, as a one-line message.
    pub first_problem: Option<String>,
}
