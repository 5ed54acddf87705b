//! A capture file as an [`engine::CaptureSource`], for the capture loop
//! ([`engine::drive`]).

use engine::registry::{Registry, SourceCounts, SourceKind, SourceSlot};
use engine::source::{CaptureSource, Clock, Frame, Input, Poll};

use crate::{CaptureError, CaptureReader, Next, ReaderStats};

/// Frames handed on per poll, so that the loop checks its stop flag and
/// publishes its counters often enough.
const FRAMES_PER_POLL: usize = 4096;

/// A [`CaptureReader`] driven by the capture loop: packet time, no kernel.
#[derive(Debug)]
pub struct FileSource {
    reader: CaptureReader,
    slot: SourceSlot,
}

impl FileSource {
    /// Wraps `reader`, registering its counters in `registry` under its
    /// path.
    pub fn new(reader: CaptureReader, registry: &Registry) -> FileSource {
        let slot = registry.source(reader.path(), SourceKind::File);
        FileSource { reader, slot }
    }

    /// The reader, for its path and counters.
    pub fn reader(&self) -> &CaptureReader {
        &self.reader
    }
}

impl CaptureSource for FileSource {
    type Error = CaptureError;

    fn poll<I: Input>(&mut self, input: &mut I) -> Result<Poll, CaptureError> {
        for _ in 0..FRAMES_PER_POLL {
            let f = match self.reader.next_frame_or_idle()? {
                Next::Frame(f) => f,
                Next::Idle => return Ok(Poll::Idle),
                Next::End => return Ok(Poll::End),
            };
            let frame = Frame {
                ts_ns: f.ts_ns,
                link_type: f.link_type,
                data: f.data,
                wire_len: f.orig_len,
                vlan: None,
                prefiltered: false,
                ifindex: 0,
                segmentation: None,
            };
            if input.frame(&frame).is_break() {
                break;
            }
        }
        Ok(Poll::Ready)
    }

    fn clock(&self) -> Clock {
        Clock::Packets
    }

    fn publish(&mut self) {
        self.slot.publish(&counts(self.reader.stats()));
    }
}

/// A reader's counters as the registry's input counters.
pub(crate) fn counts(s: &ReaderStats) -> SourceCounts {
    SourceCounts {
        packets: s.frames,
        bytes: s.bytes,
        unknown_interface: s.unknown_interface,
        bad_packet_block: s.bad_packet_block,
        simple_packet_blocks: s.simple_packet_blocks,
        ..SourceCounts::default()
    }
}
