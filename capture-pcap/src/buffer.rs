//! The bytes frames are parsed from: a read-only mapping of a regular
//! file, or a window onto a stream that is refilled as records are read.

use std::fs::File;
use std::io;
use std::ops::Deref;

use crate::{CaptureError, CaptureReader, ErrorKind};

/// The bytes frames are parsed from.
pub(crate) enum Buffer {
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
pub(crate) fn map_file(file: &File) -> Option<memmap2::Mmap> {
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
pub(crate) const RELEASE_STEP: usize = 16 << 20;

impl CaptureReader {
    pub(crate) fn available(&self) -> usize {
        self.end - self.start
    }
    /// Makes at least `n` bytes available at `start`; returns how many are.
    /// Inlined: twice per record, and a mapping (or a window that still
    /// holds the record) returns at once.
    #[inline]
    pub(crate) fn fill(&mut self, n: usize, record: u64) -> Result<usize, CaptureError> {
        if self.available() >= n || self.eof {
            return Ok(self.available());
        }
        self.refill(n, record)
    }

    /// [`fill`](Self::fill) when the window must be refilled.
    #[inline(never)]
    fn refill(&mut self, n: usize, record: u64) -> Result<usize, CaptureError> {
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
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
        self.stats.bytes += n as u64;
    }
    /// Drops the pages of a mapping that were read from this process's
    /// memory, so that resident memory stays small however large the file:
    /// they stay in the page cache and would be read again from there.
    #[allow(unsafe_code)]
    pub(crate) fn release_consumed(&mut self) {
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
}
