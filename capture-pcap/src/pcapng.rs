//! pcapng: sections, interface description blocks (link type, `if_tsresol`,
//! `if_tsoffset`), and the Enhanced, Simple and obsolete Packet blocks.

use crate::{CaptureError, CaptureReader, ErrorKind, Format, Frame, MAX_BLOCK, u16_at, u32_at};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Interface {
    link_type: u32,
    snaplen: u32,
    /// Timestamp unit: `true` = power of two, with the exponent.
    tsresol: (bool, u8),
    tsoffset_s: i64,
}

impl CaptureReader {
    pub(crate) fn next_pcapng(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
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
            // An interface description must hold its link type and snaplen:
            // without them, no packet of the section can be read.
            if block_type == 1 && len < 20 && len >= min && len.is_multiple_of(4) {
                return Err(self.err(
                    record,
                    ErrorKind::BlockTooShort {
                        what: "interface description block",
                        len,
                        min: 20,
                    },
                ));
            }
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
                if body_end < 12 {
                    self.stats.bad_packet_block += 1;
                    self.note_problem(record, "simple packet block too short for its length field");
                    return None;
                }
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

pub(crate) fn parse_idb(b: &[u8], big: bool) -> Interface {
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

pub(crate) fn ticks_to_ns(ticks: u64, (binary, exp): (bool, u8), offset_s: i64) -> u64 {
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
