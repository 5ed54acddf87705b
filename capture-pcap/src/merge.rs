//! Several capture files read as one stream in packet-time order, as
//! mergecap joins them: rotated captures (`trace-*.pcap`) whose flows go
//! on across files.
//!
//! Each file's next frame waits, copied, in a heap ordered by timestamp
//! and then by the file's place in the list, so frames with the same time
//! come in the order the files were given and the output does not depend
//! on anything else. Within a file, frames keep the file's own order (a
//! file out of time order is merged as it comes, as mergecap does).
//!
//! A file damaged part-way is dropped from the merge at its bad record
//! (the error, which names the file, record and byte, is kept for the end
//! of the run) and the others go on.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use engine::registry::{Registry, SourceKind, SourceSlot};
use engine::source::{CaptureSource, Clock, Frame, Input, Poll};

use crate::source::counts;
use crate::{CaptureError, CaptureReader};

/// Frames handed on per poll (as [`FileSource`](crate::FileSource)).
const FRAMES_PER_POLL: usize = 4096;

/// One file of the merge and its next frame.
#[derive(Debug)]
struct Member {
    reader: CaptureReader,
    slot: SourceSlot,
    /// The next frame's link type, bytes and length on the wire (its time
    /// is in the heap).
    link_type: u32,
    data: Vec<u8>,
    wire_len: u32,
}

/// Capture files merged in packet-time order, as one
/// [`CaptureSource`].
#[derive(Debug)]
pub struct MergedFiles {
    members: Vec<Member>,
    /// `(time of the next frame, member)` of every member with one.
    heads: BinaryHeap<Reverse<(u64, usize)>>,
    damaged: Vec<CaptureError>,
}

impl MergedFiles {
    /// Merges `readers`, in this order for frames of the same time; each
    /// file's counters are registered in `registry` under its path. Reads
    /// the first frame of each.
    pub fn new(readers: Vec<CaptureReader>, registry: &Registry) -> MergedFiles {
        let mut merged = MergedFiles {
            members: Vec::with_capacity(readers.len()),
            heads: BinaryHeap::with_capacity(readers.len()),
            damaged: Vec::new(),
        };
        for reader in readers {
            let slot = registry.source(reader.path(), SourceKind::File);
            merged.members.push(Member {
                reader,
                slot,
                link_type: 0,
                data: Vec::new(),
                wire_len: 0,
            });
            merged.advance(merged.members.len() - 1);
        }
        merged
    }

    /// The files' readers, in the order given.
    pub fn readers(&self) -> impl Iterator<Item = &CaptureReader> {
        self.members.iter().map(|m| &m.reader)
    }

    /// The files dropped from the merge at a damaged record, in the order
    /// it happened.
    pub fn damaged(&self) -> &[CaptureError] {
        &self.damaged
    }

    /// Reads member `i`'s next frame into its slot and the heap; at the
    /// end of the file, or at damage (kept), the member leaves the merge.
    fn advance(&mut self, i: usize) {
        let m = &mut self.members[i];
        match m.reader.next_frame() {
            Ok(Some(f)) => {
                m.link_type = f.link_type;
                m.wire_len = f.orig_len;
                m.data.clear();
                m.data.extend_from_slice(f.data);
                self.heads.push(Reverse((f.ts_ns, i)));
            }
            Ok(None) => {}
            Err(e) => self.damaged.push(e),
        }
    }
}

impl CaptureSource for MergedFiles {
    type Error = std::convert::Infallible;

    fn poll<I: Input>(&mut self, input: &mut I) -> Result<Poll, Self::Error> {
        for _ in 0..FRAMES_PER_POLL {
            let Some(Reverse((ts_ns, i))) = self.heads.pop() else {
                return Ok(Poll::End);
            };
            let m = &self.members[i];
            let frame = Frame {
                ts_ns,
                link_type: m.link_type,
                data: &m.data,
                wire_len: m.wire_len,
                vlan: None,
                prefiltered: false,
                ifindex: 0,
                segmentation: None,
            };
            let flow = input.frame(&frame);
            self.advance(i);
            if flow.is_break() {
                break;
            }
        }
        Ok(Poll::Ready)
    }

    fn clock(&self) -> Clock {
        Clock::Packets
    }

    fn publish(&mut self) {
        for m in &self.members {
            m.slot.publish(&counts(m.reader.stats()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;

    use engine::FlowObservation;

    use super::*;

    /// A little-endian microsecond pcap whose records are `(seconds,
    /// payload byte)`, each one byte long; `tail` is appended raw.
    fn pcap(records: &[(u32, u8)], tail: &[u8]) -> Vec<u8> {
        let mut v = vec![
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0,
            0,
        ];
        for (secs, byte) in records {
            v.extend_from_slice(&secs.to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&1u32.to_le_bytes());
            v.extend_from_slice(&1u32.to_le_bytes());
            v.push(*byte);
        }
        v.extend_from_slice(tail);
        v
    }

    fn reader(name: &str, bytes: Vec<u8>) -> CaptureReader {
        CaptureReader::new(Box::new(std::io::Cursor::new(bytes)), name.into()).expect("a capture")
    }

    /// What the capture loop is handed: `(seconds, payload byte)`.
    #[derive(Default)]
    struct Seen(Vec<(u64, u8)>);

    impl Input for Seen {
        fn frame(&mut self, frame: &Frame<'_>) -> ControlFlow<()> {
            self.0.push((frame.ts_ns / 1_000_000_000, frame.data[0]));
            ControlFlow::Continue(())
        }

        fn flow(&mut self, _: FlowObservation) -> ControlFlow<()> {
            ControlFlow::Continue(())
        }
    }

    fn drain(merged: &mut MergedFiles) -> Vec<(u64, u8)> {
        let mut seen = Seen::default();
        while merged.poll(&mut seen) == Ok(Poll::Ready) {}
        seen.0
    }

    #[test]
    fn frames_come_in_time_order_and_ties_in_file_order() {
        let registry = Registry::new();
        let mut merged = MergedFiles::new(
            vec![
                reader(
                    "a",
                    pcap(&[(1, b'a'), (3, b'a'), (3, b'A'), (9, b'a')], &[]),
                ),
                reader("b", pcap(&[(2, b'b'), (3, b'b'), (4, b'b')], &[])),
                reader("c", pcap(&[], &[])),
            ],
            &registry,
        );
        assert_eq!(
            drain(&mut merged),
            [
                (1, b'a'),
                (2, b'b'),
                (3, b'a'),
                (3, b'A'),
                (3, b'b'),
                (4, b'b'),
                (9, b'a')
            ]
        );
        assert!(merged.damaged().is_empty());
        merged.publish();
        let packets: Vec<u64> = registry
            .snapshot()
            .sources
            .iter()
            .map(|(_, _, c)| c.packets)
            .collect();
        assert_eq!(packets, [4, 3, 0]);
    }

    #[test]
    fn a_damaged_file_leaves_the_merge_and_the_others_go_on() {
        // Record 3 of `bad` claims 70000 bytes of a 65535-byte snaplen
        // file... and is cut short: damage.
        let mut cut = Vec::new();
        cut.extend_from_slice(&5u32.to_le_bytes());
        cut.extend_from_slice(&0u32.to_le_bytes());
        cut.extend_from_slice(&100u32.to_le_bytes());
        cut.extend_from_slice(&100u32.to_le_bytes());
        cut.extend_from_slice(&[0; 10]);
        let mut merged = MergedFiles::new(
            vec![
                reader("good", pcap(&[(1, b'g'), (6, b'g'), (8, b'g')], &[])),
                reader("bad", pcap(&[(2, b'x'), (4, b'x')], &cut)),
            ],
            &Registry::new(),
        );
        assert_eq!(
            drain(&mut merged),
            [(1, b'g'), (2, b'x'), (4, b'x'), (6, b'g'), (8, b'g')]
        );
        let damaged: Vec<String> = merged.damaged().iter().map(ToString::to_string).collect();
        assert_eq!(damaged.len(), 1, "{damaged:?}");
        assert!(damaged[0].starts_with("bad: record 3"), "{damaged:?}");
    }
}
