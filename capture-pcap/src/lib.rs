//! Streaming pcap and pcapng reader that yields borrowed frames.
//!
//! [`CaptureReader`] maps a regular file into memory and hands out
//! [`Frame`]s that borrow from the mapping: packets are never copied. Other
//! inputs (standard input, pipes, any [`Read`]) are read into one reusable
//! buffer that frames borrow from. Either way there is no allocation per
//! packet. It understands
//!
//! - pcap with microsecond or nanosecond timestamps, in either byte order;
//! - pcapng with any number of sections and interfaces (each with its own
//!   link type, `if_tsresol` and `if_tsoffset`), Enhanced, Simple and the
//!   obsolete Packet blocks; other blocks are skipped.
//!
//! A damaged file stops with a [`CaptureError`] that names the file, the
//! record (1-based; 0 is the file header) and the byte offset where the
//! record starts, and says what was expected. Problems that leave the file's
//! framing intact (a packet block for an interface that was never described,
//! say) are counted in [`ReaderStats`] and reading goes on.
//!
//! ```no_run
//! use capture_pcap::CaptureReader;
//! let mut reader = CaptureReader::open("trace.pcap")?;
//! while let Some(frame) = reader.next_frame()? {
//!     println!("{} bytes of link type {} at {}", frame.data.len(), frame.link_type, frame.ts_ns);
//! }
//! # Ok::<(), capture_pcap::CaptureError>(())
//! ```
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod buffer;
mod error;
mod merge;
mod pcap;
mod pcapng;
mod source;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

pub use error::{CaptureError, ErrorKind, ReaderStats};
pub use merge::MergedFiles;
pub use source::FileSource;

use buffer::{Buffer, RELEASE_STEP, map_file};
use pcapng::Interface;

/// Largest packet record accepted regardless of the snaplen (as Wireshark).
const MAX_STANDARD_RECORD: u32 = 262_144;
/// Largest record accepted even when the snaplen says more.
const MAX_RECORD: u32 = 16 * 1024 * 1024;
/// Largest pcapng block accepted.
const MAX_BLOCK: u32 = 64 * 1024 * 1024;

/// One captured frame, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Capture timestamp, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Link type (`LINKTYPE_*`) of the interface it was captured on.
    pub link_type: u32,
    /// The captured bytes (possibly fewer than `orig_len`).
    pub data: &'a [u8],
    /// Length of the packet on the wire.
    pub orig_len: u32,
    /// pcapng interface id (0 for pcap).
    pub interface: u32,
    /// Record number in the file, from 1.
    pub record: u64,
}

/// What [`CaptureReader::next_frame_or_idle`] found.
#[derive(Debug)]
pub enum Next<'a> {
    /// The next frame.
    Frame(Frame<'a>),
    /// The source had nothing more ready at its last read, so getting the
    /// next frame may block: a good moment to push out pending work. Call
    /// again to wait for data.
    Idle,
    /// End of the input.
    End,
}

#[derive(Debug)]
enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        link_type: u32,
        max_len: u32,
    },
    Pcapng {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
}

/// A streaming capture reader.
pub struct CaptureReader {
    src: Box<dyn Read + Send>,
    path: String,
    buf: Buffer,
    start: usize,
    end: usize,
    eof: bool,
    /// File offset of `buf[start]`.
    offset: u64,
    /// A mapping's bytes before this are no longer resident.
    released: usize,
    pending: usize,
    format: Format,
    stats: ReaderStats,
    last_ts_ns: u64,
    /// Report [`Next::Idle`] before a read that may block.
    idle_hints: bool,
    /// The last read returned less than it was offered.
    last_read_short: bool,
    /// [`Next::Idle`] was reported since the last read.
    idle_reported: bool,
}

impl fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureReader")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("mapped", &self.is_mapped())
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

pub(crate) fn u16_at(b: &[u8], big: bool) -> u16 {
    let a = [b[0], b[1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

pub(crate) fn u32_at(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

impl CaptureReader {
    /// Opens a file, or standard input when `path` is `-`. A regular file is
    /// mapped into memory (see [`is_mapped`](Self::is_mapped)); anything
    /// else is read as a stream.
    ///
    /// # Errors
    /// The file cannot be opened or read, or its header is not a capture's.
    pub fn open(path: impl AsRef<Path>) -> Result<CaptureReader, CaptureError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        if name == "-" {
            return CaptureReader::new(Box::new(io::stdin()), name);
        }
        let file = File::open(path).map_err(|e| CaptureError {
            path: name.clone(),
            record: 0,
            offset: 0,
            kind: ErrorKind::Open(e),
        })?;
        match map_file(&file) {
            Some(map) => {
                CaptureReader::with_buffer(Box::new(io::empty()), name, Buffer::Mapped(map))
            }
            None => CaptureReader::new(Box::new(file), name),
        }
    }

    /// Reads the file header from `src`; `path` names it in errors.
    ///
    /// # Errors
    /// The header cannot be read or is not a pcap or pcapng header.
    pub fn new(src: Box<dyn Read + Send>, path: String) -> Result<CaptureReader, CaptureError> {
        CaptureReader::with_buffer(src, path, Buffer::Owned(vec![0; 1 << 20]))
    }

    fn with_buffer(
        src: Box<dyn Read + Send>,
        path: String,
        buf: Buffer,
    ) -> Result<CaptureReader, CaptureError> {
        // A mapping holds the whole input already.
        let (end, eof) = match &buf {
            Buffer::Owned(_) => (0, false),
            Buffer::Mapped(m) => (m.len(), true),
        };
        let mut r = CaptureReader {
            src,
            path,
            buf,
            start: 0,
            end,
            eof,
            released: 0,
            offset: 0,
            pending: 0,
            format: Format::Pcap {
                big_endian: false,
                nanos: false,
                link_type: 0,
                max_len: 0,
            },
            stats: ReaderStats::default(),
            last_ts_ns: 0,
            idle_hints: false,
            last_read_short: false,
            idle_reported: false,
        };
        r.read_file_header()?;
        Ok(r)
    }

    /// The input's name as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the input is a file mapped into memory (frames then borrow
    /// from the mapping) rather than a stream read into a buffer.
    pub fn is_mapped(&self) -> bool {
        matches!(self.buf, Buffer::Mapped(_))
    }

    /// Counters so far.
    pub fn stats(&self) -> &ReaderStats {
        &self.stats
    }

    /// Byte offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset + self.pending as u64
    }

    fn err(&self, record: u64, kind: ErrorKind) -> CaptureError {
        CaptureError {
            path: self.path.clone(),
            record,
            offset: self.offset,
            kind,
        }
    }

    fn note_problem(&mut self, record: u64, what: &str) {
        if self.stats.first_problem.is_none() {
            self.stats.first_problem = Some(format!(
                "{}: record {} (byte {}): {}",
                self.path, record, self.offset, what
            ));
        }
    }

    fn read_file_header(&mut self) -> Result<(), CaptureError> {
        let have = self.fill(24, 0)?;
        if have == 0 {
            return Err(self.err(0, ErrorKind::Empty));
        }
        if have < 4 {
            return Err(self.err(0, ErrorKind::TruncatedFileHeader { need: 24, have }));
        }
        let h = &self.buf[self.start..self.end];
        let magic_be = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let (big_endian, nanos) = match magic_be {
            0xa1b2_c3d4 => (true, false),
            0xd4c3_b2a1 => (false, false),
            0xa1b2_3c4d => (true, true),
            0x4d3c_b2a1 => (false, true),
            0x0a0d_0d0a => {
                // The first section header decides whether this is a
                // capture at all: check its byte order and version now.
                if have < 16 {
                    return Err(self.err(0, ErrorKind::TruncatedFileHeader { need: 28, have }));
                }
                let big_endian = match u32::from_le_bytes([h[8], h[9], h[10], h[11]]) {
                    0x1a2b_3c4d => false,
                    0x4d3c_2b1a => true,
                    bom => return Err(self.err(1, ErrorKind::BadByteOrderMagic { bom })),
                };
                let major = u16_at(&h[12..], big_endian);
                let minor = u16_at(&h[14..], big_endian);
                if major != 1 {
                    return Err(self.err(1, ErrorKind::UnsupportedPcapngVersion { major, minor }));
                }
                self.format = Format::Pcapng {
                    big_endian,
                    interfaces: Vec::new(),
                };
                return Ok(());
            }
            magic => return Err(self.err(0, ErrorKind::NotACapture { magic })),
        };
        if have < 24 {
            return Err(self.err(0, ErrorKind::TruncatedFileHeader { need: 24, have }));
        }
        let major = u16_at(&h[4..], big_endian);
        let minor = u16_at(&h[6..], big_endian);
        if major != 2 {
            return Err(self.err(0, ErrorKind::UnsupportedVersion { major, minor }));
        }
        let snaplen = u32_at(&h[16..], big_endian);
        let link_type = u32_at(&h[20..], big_endian) & 0xffff;
        self.format = Format::Pcap {
            big_endian,
            nanos,
            link_type,
            max_len: MAX_STANDARD_RECORD.max(snaplen.min(MAX_RECORD)),
        };
        self.consume(24);
        Ok(())
    }

    /// The next frame, or `None` at the end of the input.
    ///
    /// # Errors
    /// The input is damaged at the next record, or cannot be read. The error
    /// names the record and its byte offset; frames before it were valid.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        self.idle_hints = false;
        self.next()
    }

    /// Like [`next_frame`](Self::next_frame), but says [`Next::Idle`] once
    /// before a read that may block because the source (a pipe) had nothing
    /// more ready last time. Regular files are read in full blocks and are
    /// idle only near their end.
    ///
    /// # Errors
    /// As [`next_frame`](Self::next_frame).
    pub fn next_frame_or_idle(&mut self) -> Result<Next<'_>, CaptureError> {
        self.idle_hints = true;
        match self.next() {
            Ok(Some(f)) => Ok(Next::Frame(f)),
            Ok(None) => Ok(Next::End),
            Err(e) if matches!(e.kind, ErrorKind::NotReady) => Ok(Next::Idle),
            Err(e) => Err(e),
        }
    }

    fn next(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        let n = std::mem::take(&mut self.pending);
        self.consume(n);
        if self.start >= self.released + RELEASE_STEP {
            self.release_consumed();
        }
        match self.format {
            Format::Pcap { .. } => self.next_pcap(),
            Format::Pcapng { .. } => self.next_pcapng(),
        }
    }
}
