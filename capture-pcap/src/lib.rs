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

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::ops::Deref;
use std::path::Path;

mod source;

pub use source::FileSource;

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
    #[error("block trailing length {trailing} differs from its leading length {leading}")]
    BlockLengthMismatch { leading: u32, trailing: u32 },
    #[error("section header byte-order magic is 0x{bom:08x} (expected 1a2b3c4d)")]
    BadByteOrderMagic { bom: u32 },
    #[error("unsupported pcapng version {major}.{minor} (expected 1.0)")]
    UnsupportedPcapngVersion { major: u16, minor: u16 },
    #[error("the first block is of type 0x{block_type:08x} (expected a section header, 0a0d0d0a)")]
    MissingSectionHeader { block_type: u32 },
    /// Internal to [`CaptureReader::next_frame_or_idle`], which turns it into
    /// [`Next::Idle`]; never returned by any public method.
    #[error("no more data ready yet")]
    #[doc(hidden)]
    NotReady,
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

#[derive(Debug, Clone, Copy)]
struct Interface {
    link_type: u32,
    snaplen: u32,
    /// Timestamp unit: `true` = power of two, with the exponent.
    tsresol: (bool, u8),
    tsoffset_s: i64,
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

/// The bytes frames are parsed from.
enum Buffer {
    /// A window onto a stream, refilled by `fill`.
    Owned(Vec<u8>),
    /// A whole file mapped read-only.
    Mapped(memmap2::Mmap),
}

impl Deref for Buffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Buffer::Owned(v) => v,
            Buffer::Mapped(m) => m,
        }
    }
}

/// Maps `file` read-only, or `None` when it cannot be mapped (it is then
/// read as a stream).
#[allow(unsafe_code)]
fn map_file(file: &File) -> Option<memmap2::Mmap> {
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() == 0 {
        return None;
    }
    // SAFETY: the mapping is private and read-only, and nothing in this
    // process writes the file. Another process could change or truncate it
    // while it is mapped: the parser accepts any bytes (changed contents are
    // at worst misread, like a damaged file), while truncation makes the
    // kernel raise SIGBUS on the lost pages, which the `--pcap` help text
    // documents (read such a file from standard input instead).
    let map = unsafe { memmap2::Mmap::map(file) }.ok()?;
    // Only a hint; reading works the same without it.
    let _ = map.advise(memmap2::Advice::Sequential);
    Some(map)
}

/// The consumed part of a mapping is dropped from memory in steps of this
/// many bytes (a multiple of the page size).
const RELEASE_STEP: usize = 16 << 20;

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

fn u16_at(b: &[u8], big: bool) -> u16 {
    let a = [b[0], b[1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn u32_at(b: &[u8], big: bool) -> u32 {
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

    fn available(&self) -> usize {
        self.end - self.start
    }

    /// Makes at least `n` bytes available at `start`; returns how many are.
    fn fill(&mut self, n: usize, record: u64) -> Result<usize, CaptureError> {
        if self.available() >= n || self.eof {
            return Ok(self.available());
        }
        let Buffer::Owned(buf) = &mut self.buf else {
            // A mapping holds the whole input from the start.
            return Ok(self.available());
        };
        if self.start > 0 {
            buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if buf.len() < n {
            buf.resize(n.next_power_of_two(), 0);
        }
        while self.end < n {
            if self.idle_hints && self.last_read_short && !self.idle_reported {
                // Nothing consumed yet for this frame: the caller can retry.
                self.idle_reported = true;
                return Err(self.err(record, ErrorKind::NotReady));
            }
            let offered = buf.len() - self.end;
            match self.src.read(&mut buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(k) => {
                    self.end += k;
                    self.last_read_short = k < offered;
                    self.idle_reported = false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(record, ErrorKind::Io(e))),
            }
        }
        Ok(self.available())
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
        self.stats.bytes += n as u64;
    }

    /// Drops the pages of a mapping that were read from this process's
    /// memory, so that resident memory stays small however large the file:
    /// they stay in the page cache and would be read again from there.
    #[allow(unsafe_code)]
    fn release_consumed(&mut self) {
        let Buffer::Mapped(map) = &self.buf else {
            return;
        };
        let upto = self.start - self.start % RELEASE_STEP;
        // SAFETY: `&mut self` means no frame borrows the mapping now, and
        // the range ends before `start`, which no later frame reaches back
        // to. For a private read-only file mapping, MADV_DONTNEED only drops
        // the pages: touching them again would fault the file's unchanged
        // bytes back in. Offset and length are multiples of RELEASE_STEP,
        // so page-aligned, and within the mapping (`start` <= its length).
        let _ = unsafe {
            map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                self.released,
                upto - self.released,
            )
        };
        self.released = upto;
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
                self.format = Format::Pcapng {
                    big_endian: false,
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

    fn next_pcap(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        let Format::Pcap {
            big_endian,
            nanos,
            link_type,
            max_len,
        } = self.format
        else {
            unreachable!("called for pcap only");
        };
        let record = self.stats.records + 1;
        let have = self.fill(16, record)?;
        if have == 0 {
            return Ok(None);
        }
        if have < 16 {
            return Err(self.err(record, ErrorKind::TruncatedRecordHeader { need: 16, have }));
        }
        let h = &self.buf[self.start..self.start + 16];
        let sec = u64::from(u32_at(h, big_endian));
        let frac = u64::from(u32_at(&h[4..], big_endian));
        let caplen = u32_at(&h[8..], big_endian);
        let orig_len = u32_at(&h[12..], big_endian);
        if caplen > max_len {
            return Err(self.err(
                record,
                ErrorKind::AbsurdLength {
                    len: caplen,
                    max: max_len,
                },
            ));
        }
        let total = 16 + caplen as usize;
        let have = self.fill(total, record)?;
        if have < total {
            return Err(self.err(
                record,
                ErrorKind::TruncatedRecord {
                    need: caplen as usize,
                    have: have - 16,
                },
            ));
        }
        let ts_ns = sec * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        self.stats.records = record;
        self.stats.frames += 1;
        self.last_ts_ns = ts_ns;
        self.pending = total;
        Ok(Some(Frame {
            ts_ns,
            link_type,
            data: &self.buf[self.start + 16..self.start + total],
            orig_len,
            interface: 0,
            record,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        loop {
            let record = self.stats.records + 1;
            let have = self.fill(12, record)?;
            if have == 0 {
                return Ok(None);
            }
            if have < 12 {
                return Err(self.err(record, ErrorKind::TruncatedBlockHeader { need: 12, have }));
            }
            let head = &self.buf[self.start..self.start + 12];
            let block_type_le = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let is_shb = block_type_le == 0x0a0d_0d0a;
            let big = if is_shb {
                let bom_le = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
                match bom_le {
                    0x1a2b_3c4d => false,
                    0x4d3c_2b1a => true,
                    bom => return Err(self.err(record, ErrorKind::BadByteOrderMagic { bom })),
                }
            } else {
                match &self.format {
                    Format::Pcapng { big_endian, .. } => *big_endian,
                    Format::Pcap { .. } => unreachable!("pcapng reader"),
                }
            };
            if record == 1 && !is_shb {
                return Err(self.err(
                    record,
                    ErrorKind::MissingSectionHeader {
                        block_type: block_type_le,
                    },
                ));
            }
            let block_type = u32_at(head, big);
            let len = u32_at(&head[4..], big);
            let min = if is_shb { 28 } else { 12 };
            if !len.is_multiple_of(4) || len < min || len > MAX_BLOCK {
                return Err(self.err(
                    record,
                    ErrorKind::BadBlockLength {
                        len,
                        min,
                        max: MAX_BLOCK,
                    },
                ));
            }
            let total = len as usize;
            let have = self.fill(total, record)?;
            if have < total {
                return Err(self.err(record, ErrorKind::TruncatedBlock { need: total, have }));
            }
            let block = &self.buf[self.start..self.start + total];
            let trailing = u32_at(&block[total - 4..], big);
            if trailing != len {
                return Err(self.err(
                    record,
                    ErrorKind::BlockLengthMismatch {
                        leading: len,
                        trailing,
                    },
                ));
            }
            self.stats.records = record;
            let body = 8..total - 4;
            match block_type {
                0x0a0d_0d0a => {
                    let b = &block[body];
                    let major = u16_at(&b[4..], big);
                    let minor = u16_at(&b[6..], big);
                    if major != 1 {
                        return Err(
                            self.err(record, ErrorKind::UnsupportedPcapngVersion { major, minor })
                        );
                    }
                    self.format = Format::Pcapng {
                        big_endian: big,
                        interfaces: Vec::new(),
                    };
                }
                1 => {
                    let iface = parse_idb(&block[body], big);
                    if let Format::Pcapng { interfaces, .. } = &mut self.format {
                        interfaces.push(iface);
                    }
                }
                2 | 3 | 6 => {
                    if let Some(frame) = self.packet_block(block_type, total, big, record) {
                        self.pending = total;
                        let (ts_ns, link_type, range, orig_len, interface) = frame;
                        return Ok(Some(Frame {
                            ts_ns,
                            link_type,
                            data: &self.buf[self.start + range.0..self.start + range.1],
                            orig_len,
                            interface,
                            record,
                        }));
                    }
                }
                _ => {}
            }
            self.consume(total);
        }
    }

    /// Parses a packet block at `start`; `None` (counted) if it cannot be used.
    #[allow(clippy::type_complexity)]
    fn packet_block(
        &mut self,
        block_type: u32,
        total: usize,
        big: bool,
        record: u64,
    ) -> Option<(u64, u32, (usize, usize), u32, u32)> {
        let b = &self.buf[self.start..self.start + total];
        let body_end = total - 4;
        let (iface_id, ts, caplen, orig_len, data_at) = match block_type {
            6 | 2 => {
                if body_end < 28 {
                    self.stats.bad_packet_block += 1;
                    self.note_problem(record, "packet block too short for its header");
                    return None;
                }
                let (iface, hi_at) = if block_type == 6 {
                    (u32_at(&b[8..], big), 12)
                } else {
                    (u32::from(u16_at(&b[8..], big)), 12)
                };
                let hi = u64::from(u32_at(&b[hi_at..], big));
                let lo = u64::from(u32_at(&b[hi_at + 4..], big));
                (
                    iface,
                    Some((hi << 32) | lo),
                    u32_at(&b[20..], big),
                    u32_at(&b[24..], big),
                    28,
                )
            }
            _ => {
                // Simple Packet Block: interface 0, no timestamp, captured
                // length = min(original length, snaplen, what the block holds).
                let orig = u32_at(&b[8..], big);
                self.stats.simple_packet_blocks += 1;
                let room = u32::try_from(body_end - 12).unwrap_or(u32::MAX);
                (0, None, orig.min(room), orig, 12)
            }
        };
        let iface = match &self.format {
            Format::Pcapng { interfaces, .. } => interfaces.get(iface_id as usize).copied(),
            Format::Pcap { .. } => None,
        };
        let Some(iface) = iface else {
            self.stats.unknown_interface += 1;
            self.note_problem(
                record,
                &format!("packet block for interface {iface_id}, which no interface description block defined"),
            );
            return None;
        };
        let caplen = if ts.is_none() && iface.snaplen > 0 {
            caplen.min(iface.snaplen)
        } else {
            caplen
        };
        let data_end = data_at + caplen as usize;
        if data_end > body_end {
            self.stats.bad_packet_block += 1;
            self.note_problem(
                record,
                &format!(
                    "captured length {caplen} exceeds its block ({} bytes of data)",
                    body_end.saturating_sub(data_at)
                ),
            );
            return None;
        }
        let ts_ns = match ts {
            Some(ticks) => ticks_to_ns(ticks, iface.tsresol, iface.tsoffset_s),
            None => self.last_ts_ns,
        };
        self.last_ts_ns = ts_ns;
        self.stats.frames += 1;
        Some((
            ts_ns,
            iface.link_type,
            (data_at, data_end),
            orig_len,
            iface_id,
        ))
    }
}

fn parse_idb(b: &[u8], big: bool) -> Interface {
    let mut iface = Interface {
        link_type: u32::from(u16_at(b, big)),
        snaplen: u32_at(&b[4..], big),
        tsresol: (false, 6),
        tsoffset_s: 0,
    };
    let mut at = 8;
    while at + 4 <= b.len() {
        let code = u16_at(&b[at..], big);
        let len = usize::from(u16_at(&b[at + 2..], big));
        let value_at = at + 4;
        if code == 0 || value_at + len > b.len() {
            break;
        }
        let v = &b[value_at..value_at + len];
        match (code, len) {
            (9, 1) => iface.tsresol = (v[0] & 0x80 != 0, v[0] & 0x7f),
            (14, 8) => {
                let raw = [v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]];
                iface.tsoffset_s = if big {
                    i64::from_be_bytes(raw)
                } else {
                    i64::from_le_bytes(raw)
                };
            }
            _ => {}
        }
        at = value_at + len.div_ceil(4) * 4;
    }
    iface
}

fn ticks_to_ns(ticks: u64, (binary, exp): (bool, u8), offset_s: i64) -> u64 {
    let t = u128::from(ticks);
    let ns = if binary {
        if exp >= 64 {
            0
        } else {
            (t * 1_000_000_000) >> exp
        }
    } else if exp <= 9 {
        t * 10u128.pow(u32::from(9 - exp))
    } else if exp <= 38 {
        t / 10u128.pow(u32::from(exp - 9))
    } else {
        0
    };
    let ns = i128::try_from(ns).unwrap_or(i128::MAX) + i128::from(offset_s) * 1_000_000_000;
    u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_header(magic: [u8; 4], link: u32) -> Vec<u8> {
        let mut v = magic.to_vec();
        v.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0]);
        v.extend_from_slice(&link.to_le_bytes());
        v
    }

    fn reader(bytes: Vec<u8>) -> Result<CaptureReader, CaptureError> {
        CaptureReader::new(Box::new(io::Cursor::new(bytes)), "t.pcap".into())
    }

    /// A pipe that delivers its data in the given pieces, one per read.
    struct Pieces(Vec<Vec<u8>>);

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let piece = &mut self.0[0];
            let n = piece.len().min(buf.len());
            buf[..n].copy_from_slice(&piece[..n]);
            piece.drain(..n);
            if piece.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    #[test]
    fn idle_is_reported_once_before_a_read_that_may_block() {
        let mut records = Vec::new();
        for i in 0..3u32 {
            let mut rec = Vec::new();
            rec.extend_from_slice(&i.to_le_bytes());
            rec.extend_from_slice(&0u32.to_le_bytes());
            rec.extend_from_slice(&2u32.to_le_bytes());
            rec.extend_from_slice(&2u32.to_le_bytes());
            rec.extend_from_slice(&[7, 7]);
            records.push(rec);
        }
        // Header + record 0 arrive together; record 1 in two pieces (the
        // second half of it after an idle); then record 2.
        let mut first = pcap_header([0xd4, 0xc3, 0xb2, 0xa1], 1);
        first.extend_from_slice(&records[0]);
        let pieces = vec![
            first,
            records[1][..5].to_vec(),
            records[1][5..].to_vec(),
            records[2].clone(),
        ];
        let mut r = CaptureReader::new(Box::new(Pieces(pieces)), "-".into()).unwrap();
        let mut seen = Vec::new();
        loop {
            match r.next_frame_or_idle().unwrap() {
                Next::Frame(f) => seen.push(format!("frame {}", f.ts_ns / 1_000_000_000)),
                Next::Idle => seen.push("idle".into()),
                Next::End => break,
            }
        }
        assert_eq!(
            seen,
            [
                "frame 0", "idle", "idle", "frame 1", "idle", "frame 2", "idle"
            ]
        );
        // Without hints the same input reads straight through.
        let mut first = pcap_header([0xd4, 0xc3, 0xb2, 0xa1], 1);
        first.extend_from_slice(&records[0]);
        let mut r = CaptureReader::new(
            Box::new(Pieces(vec![first, records[1].clone(), records[2].clone()])),
            "-".into(),
        )
        .unwrap();
        let mut n = 0;
        while r.next_frame().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn reads_pcap_records_and_reports_truncation_with_position() {
        let mut f = pcap_header([0xd4, 0xc3, 0xb2, 0xa1], 1);
        for i in 0..2u32 {
            f.extend_from_slice(&10u32.to_le_bytes());
            f.extend_from_slice(&(i * 5).to_le_bytes());
            f.extend_from_slice(&4u32.to_le_bytes());
            f.extend_from_slice(&60u32.to_le_bytes());
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend_from_slice(&[0, 0, 0]);
        let mut r = reader(f).unwrap();
        let a = r.next_frame().unwrap().unwrap();
        assert_eq!(
            (a.ts_ns, a.data, a.orig_len),
            (10_000_000_000, &[1u8, 2, 3, 4][..], 60)
        );
        let b = r.next_frame().unwrap().unwrap();
        assert_eq!(b.ts_ns, 10_000_005_000);
        let e = r.next_frame().unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.pcap: record 3 (byte 64): truncated record header (need 16 bytes, 3 left)"
        );
    }

    #[test]
    fn not_a_capture() {
        let e = reader(b"hello world, this is text".to_vec()).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "t.pcap: file header (byte 0): not a pcap or pcapng file (magic number 0x68656c6c"
            ),
            "{e}"
        );
        let e = reader(Vec::new()).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Empty));
    }

    #[test]
    fn absurd_length() {
        let mut f = pcap_header([0xd4, 0xc3, 0xb2, 0xa1], 1);
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&0xffff_0000u32.to_le_bytes());
        f.extend_from_slice(&[0; 4]);
        let e = reader(f).unwrap().next_frame().unwrap_err();
        assert!(matches!(e.kind, ErrorKind::AbsurdLength { .. }), "{e}");
        assert_eq!((e.record, e.offset), (1, 24));
    }

    #[test]
    fn tsresol_conversion() {
        assert_eq!(ticks_to_ns(1_500_000, (false, 6), 0), 1_500_000_000);
        assert_eq!(ticks_to_ns(3, (false, 9), 0), 3);
        assert_eq!(ticks_to_ns(1 << 20, (true, 20), 1), 2_000_000_000);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A pcap with `n` records of `len` bytes each.
    fn pcap(records: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0,
            0,
        ];
        for (i, r) in records.iter().enumerate() {
            v.extend_from_slice(&(i as u32).to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&(r.len() as u32).to_le_bytes());
            v.extend_from_slice(&(r.len() as u32).to_le_bytes());
            v.extend_from_slice(r);
        }
        v
    }

    fn read_all(bytes: Vec<u8>) -> (Vec<Vec<u8>>, Option<CaptureError>) {
        let mut frames = Vec::new();
        let mut r = match CaptureReader::new(Box::new(io::Cursor::new(bytes)), "p".into()) {
            Ok(r) => r,
            Err(e) => return (frames, Some(e)),
        };
        loop {
            match r.next_frame() {
                Ok(Some(f)) => frames.push(f.data.to_vec()),
                Ok(None) => return (frames, None),
                Err(e) => return (frames, Some(e)),
            }
        }
    }

    /// Everything a reader yields: each frame's fields, then the error (as
    /// its message) or `None`, and the final counters.
    fn outcome(r: Result<CaptureReader, CaptureError>) -> (Vec<String>, Option<String>, String) {
        let mut frames = Vec::new();
        let mut r = match r {
            Ok(r) => r,
            Err(e) => return (frames, Some(e.to_string()), String::new()),
        };
        let err = loop {
            match r.next_frame() {
                Ok(Some(f)) => frames.push(format!("{f:?}")),
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        (frames, err, format!("{:?} at {}", r.stats(), r.offset()))
    }

    /// A file in the temporary directory, removed on drop.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(bytes: &[u8]) -> TempFile {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("capture-pcap-test-{}-{n}.pcap", std::process::id()));
            std::fs::write(&path, bytes).expect("writing a temporary file");
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn regular_files_are_mapped_and_empty_ones_are_not() {
        let f = TempFile::new(&pcap(&[vec![1, 2, 3]]));
        let mut r = CaptureReader::open(&f.0).unwrap();
        assert!(r.is_mapped());
        let frame = r.next_frame().unwrap().unwrap();
        assert_eq!(frame.data, &[1, 2, 3]);
        assert!(r.next_frame().unwrap().is_none());
        let empty = TempFile::new(&[]);
        let e = CaptureReader::open(&empty.0).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Empty), "{e}");
    }

    #[test]
    fn a_mapped_file_longer_than_the_release_step_reads_whole() {
        // Frames on both sides of several released ranges, one of them
        // straddling a step boundary.
        let records: Vec<Vec<u8>> = (0..25_000u32)
            .map(|i| vec![i as u8; 1999 + (i % 7) as usize])
            .collect();
        let bytes = pcap(&records);
        assert!(bytes.len() > 2 * RELEASE_STEP);
        let f = TempFile::new(&bytes);
        let mut r = CaptureReader::open(&f.0).unwrap();
        assert!(r.is_mapped());
        let mut n = 0;
        while let Some(frame) = r.next_frame().unwrap() {
            assert_eq!(frame.data, &records[n][..], "frame {n}");
            n += 1;
        }
        assert_eq!(n, records.len());
        assert!(r.released >= 2 * RELEASE_STEP, "released {}", r.released);
    }

    proptest! {
        #[test]
        fn a_mapped_file_reads_exactly_like_a_stream(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..8),
            cut_frac in 0.0f64..1.0,
            garbage in proptest::collection::vec(any::<u8>(), 0..40),
            pcapng_tail in any::<bool>(),
        ) {
            // Valid records, cut anywhere, then garbage: every outcome (clean
            // end, truncation, bad lengths) must be the same both ways.
            let mut bytes = pcap(&records);
            if pcapng_tail {
                bytes = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0];
            }
            let cut = (bytes.len() as f64 * cut_frac) as usize;
            bytes.truncate(cut.max(24));
            bytes.extend_from_slice(&garbage);
            let f = TempFile::new(&bytes);
            let mapped = CaptureReader::open(&f.0);
            prop_assert!(mapped.as_ref().is_err() || mapped.as_ref().is_ok_and(CaptureReader::is_mapped));
            let streamed = outcome(CaptureReader::new(Box::new(io::Cursor::new(bytes)), f.0.display().to_string()));
            prop_assert_eq!(outcome(mapped), streamed);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let (_, err) = read_all(bytes);
            if let Some(e) = err {
                prop_assert!(e.to_string().starts_with("p: "));
            }
        }

        #[test]
        fn arbitrary_bytes_after_a_pcapng_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut bytes = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0];
            bytes.extend_from_slice(&tail);
            let _ = read_all(bytes);
        }

        #[test]
        fn truncation_keeps_earlier_frames_and_names_the_record(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 1..8),
            cut_frac in 0.0f64..1.0,
        ) {
            let full = pcap(&records);
            let cut = 24 + ((full.len() - 24) as f64 * cut_frac) as usize;
            let (frames, err) = read_all(full[..cut].to_vec());
            // Frames before the cut are exactly the first records.
            prop_assert_eq!(&frames[..], &records[..frames.len()]);
            let mut boundary = 24;
            for r in &records[..frames.len()] {
                boundary += 16 + r.len();
            }
            match err {
                None => prop_assert_eq!(cut, boundary, "clean end only at a record boundary"),
                Some(e) => {
                    prop_assert_eq!(e.record, frames.len() as u64 + 1);
                    prop_assert_eq!(e.offset, boundary as u64);
                }
            }
        }
    }
}
