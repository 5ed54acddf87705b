//! Classic pcap (microsecond or nanosecond timestamps, either byte
//! order): the record loop.

use crate::{CaptureError, CaptureReader, ErrorKind, Format, Frame, u32_at};

impl CaptureReader {
    pub(crate) fn next_pcap(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
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
}
