//! Reassembly of fragmented outer packets that carry a tunnel, so that the
//! tunnel can be opened: a tunnel header is in the first fragment only, and
//! the packet inside spans them all. Every fragment is a packet on the wire
//! and counts once, in the inner flow ([`PacketRepr::segments`]), and its
//! bytes count in the inner flow's bytes and overhead as the whole
//! datagram's.
//!
//! Only what may be a tunnel is held: fragments of IP-in-IP and GRE (any
//! fragment says so) and of UDP to a tunnel port (the first fragment says
//! so; a later one that comes before it is counted as it is). A datagram is
//! given up, and its fragments counted one by one as they would be without
//! reassembly, when its fragments overlap, when it has waited 30 s (IPv4)
//! or 60 s (IPv6) of capture time, when it has more than
//! [`MAX_FRAGMENTS_PER_DATAGRAM`] fragments, when the table is full (at most
//! [`MAX_DATAGRAMS`] datagrams and [`MAX_HELD_BYTES`] bytes held, checked
//! before a fragment is copied, the oldest given up first), and at the end
//! of the input.

use std::collections::VecDeque;
use std::net::IpAddr;

use hashbrown::HashMap;

use super::IpVersion;
use super::ip::is_chained_ext;
use super::link::link_layer;
use super::packet::{Fragment, LinkType, PacketRepr};
use super::tunnel::TunnelPorts;
use crate::wire::{Ipv4Packet, Ipv6ExtHeader, Ipv6FragmentHeader, Ipv6Packet};

/// Datagrams held at most.
pub const MAX_DATAGRAMS: usize = 256;
/// Bytes of fragments held at most (Linux allows a network namespace 4 MiB
/// of reassembly queues).
pub const MAX_HELD_BYTES: usize = 4 << 20;
/// Fragments of one datagram held at most: a 64 KiB datagram over a
/// 1280-byte MTU takes 54 (IPv6; 53 for IPv4). More are given up, which also bounds the work of
/// checking each new fragment against those held (a flood of 8-byte
/// fragments would otherwise cost time quadratic in their number).
pub const MAX_FRAGMENTS_PER_DATAGRAM: usize = 64;
/// How long an IPv4 datagram's fragments are waited for (as Linux).
const WAIT_V4_NS: u64 = 30_000_000_000;
/// How long an IPv6 datagram's fragments are waited for (RFC 8200).
const WAIT_V6_NS: u64 = 60_000_000_000;

/// A fragment as captured, kept until its datagram is whole or given up.
#[derive(Debug, Clone)]
pub struct HeldFrame {
    /// Capture time.
    pub ts_ns: u64,
    /// Link type of the frame.
    pub link_type: u32,
    /// Interface it was captured on (0: unknown).
    pub ifindex: u32,
    /// The frame's bytes.
    pub data: Vec<u8>,
}

/// What became of a fragment offered to [`Reassembler::offer`].
#[derive(Debug)]
pub enum Offered {
    /// Not one to hold: count it as it is.
    Pass,
    /// Held until its datagram is whole or given up.
    Held,
    /// It completed its datagram: the whole datagram as one frame (the first
    /// fragment's link-layer header and IP header, then every payload byte),
    /// the number of fragments, the bytes the fragments' IP headers added
    /// on the wire beyond the whole datagram's, and the time and interface
    /// of the last fragment.
    Whole {
        /// The reassembled frame.
        frame: Vec<u8>,
        /// Its link type.
        link_type: u32,
        /// Fragments on the wire.
        fragments: u16,
        /// Wire bytes beyond the reassembled datagram's IP bytes.
        extra_bytes: u32,
        /// The last fragment's capture time.
        ts_ns: u64,
        /// The last fragment's interface.
        ifindex: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    id: u32,
    ifindex: u32,
}

/// Where a fragment's parts are in its frame.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Start of the IP header.
    ip_at: usize,
    /// End of the headers a reassembled datagram keeps (IPv4 header; IPv6
    /// header and extension headers before the fragment header).
    kept_end: usize,
    /// IPv6: the offset of the next-header byte that names the fragment
    /// header.
    next_header_at: Option<usize>,
    /// IPv6: the fragment header's next header.
    next_header: u8,
    /// The payload this fragment carries.
    payload: (usize, usize),
    /// Its offset in the datagram's payload, in bytes.
    offset: usize,
    /// More fragments follow.
    more: bool,
    /// IP bytes on the wire.
    wire_bytes: usize,
}

#[derive(Debug, Clone, Copy)]
struct Piece {
    offset: usize,
    len: usize,
    end_in_frame: usize,
}

#[derive(Debug)]
struct Datagram {
    deadline: u64,
    frames: Vec<HeldFrame>,
    /// Each fragment's payload: its offset in the datagram, its length,
    /// and where it ends in the fragment's frame; by frame.
    pieces: Vec<Piece>,
    /// The payload's length, once the last fragment came.
    total: Option<usize>,
    /// Index in `frames` of the fragment at offset 0, and its layout.
    first: Option<(usize, Layout)>,
    wire_bytes: usize,
    held_bytes: usize,
}

/// Outer fragments held for reassembly, in capture order.
#[derive(Debug, Default)]
pub struct Reassembler {
    datagrams: HashMap<Key, Datagram>,
    /// Keys by arrival of their first held fragment (some may be gone).
    order: VecDeque<Key>,
    held_bytes: usize,
}

impl Reassembler {
    /// The earliest time at which a held datagram is given up (`u64::MAX`
    /// when none is held).
    pub fn next_deadline(&self) -> u64 {
        self.order
            .iter()
            .filter_map(|k| self.datagrams.get(k))
            .map(|d| d.deadline)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Offers the fragment `packet` (decoded from `frame` as it is), which
    /// arrived at `ts_ns`. Datagrams given up on the way (full table) are
    /// appended to `released`, oldest first.
    #[allow(clippy::too_many_arguments)]
    pub fn offer(
        &mut self,
        ports: &TunnelPorts,
        packet: &PacketRepr,
        link_type: u32,
        frame: &[u8],
        ts_ns: u64,
        ifindex: u32,
        released: &mut Vec<HeldFrame>,
    ) -> Offered {
        let id = match packet.fragment {
            Fragment::Whole => return Offered::Pass,
            Fragment::First { id } | Fragment::Later { id } => id,
        };
        let key = Key {
            src: packet.src,
            dst: packet.dst,
            protocol: packet.protocol,
            id,
            ifindex,
        };
        let known = self.datagrams.contains_key(&key);
        let candidate = match packet.protocol {
            4 | 41 | 47 => true,
            17 => {
                matches!(packet.fragment, Fragment::First { .. })
                    && ports.carries_tunnel(packet.src_port, packet.dst_port)
            }
            _ => false,
        };
        if !known && !candidate {
            return Offered::Pass;
        }
        let Some(layout) = layout(LinkType(link_type), frame) else {
            // Not something to put together (cut short by the snap length,
            // a header it cannot place): the datagram is given up.
            if known {
                self.give_up(key, released);
            }
            return Offered::Pass;
        };
        // Room is made before the fragment is copied, for a new datagram and
        // for one that grows alike (the oldest goes first, which may be this
        // fragment's own: it is then counted as it is).
        self.make_room(known, frame.len(), released);
        let known = self.datagrams.contains_key(&key);
        if !known && !candidate {
            return Offered::Pass;
        }
        let held = HeldFrame {
            ts_ns,
            link_type,
            ifindex,
            data: frame.to_vec(),
        };
        if !known {
            let wait = if packet.src.is_ipv6() {
                WAIT_V6_NS
            } else {
                WAIT_V4_NS
            };
            self.datagrams.insert(
                key,
                Datagram {
                    deadline: ts_ns.saturating_add(wait),
                    frames: Vec::new(),
                    pieces: Vec::new(),
                    total: None,
                    first: None,
                    wire_bytes: 0,
                    held_bytes: 0,
                },
            );
            self.order.push_back(key);
        }
        let Some(d) = self.datagrams.get_mut(&key) else {
            return Offered::Pass;
        };
        let (start, end) = layout.payload;
        let (offset, len) = (layout.offset, end - start);
        let piece_end = offset + len;
        // What cannot be put together: overlapping fragments, one past the
        // end the last fragment gave, a second last fragment, a last
        // fragment that ends before another's end, a fragment with nothing
        // in it.
        let inconsistent = len == 0
            || d.pieces.len() >= MAX_FRAGMENTS_PER_DATAGRAM
            || d.pieces
                .iter()
                .any(|p| offset < p.offset + p.len && p.offset < piece_end)
            || d.total.is_some_and(|t| piece_end > t)
            || (!layout.more
                && (d.total.is_some() || d.pieces.iter().any(|p| p.offset + p.len > piece_end)));
        d.frames.push(held);
        d.pieces.push(Piece {
            offset,
            len,
            end_in_frame: end,
        });
        d.wire_bytes += layout.wire_bytes;
        d.held_bytes += frame.len();
        self.held_bytes += frame.len();
        if inconsistent {
            self.give_up(key, released);
            return Offered::Held;
        }
        if !layout.more {
            d.total = Some(piece_end);
        }
        if layout.offset == 0 {
            d.first = Some((d.frames.len() - 1, layout));
        }
        let complete = d
            .total
            .is_some_and(|t| d.pieces.iter().map(|p| p.len).sum::<usize>() == t)
            && d.first.is_some();
        if !complete {
            return Offered::Held;
        }
        let d = self.remove(key);
        match rebuild(&d) {
            Some(whole) => whole,
            None => {
                released.extend(d.frames);
                Offered::Held
            }
        }
    }

    /// Gives up every datagram due at `now` (capture time), appending its
    /// fragments to `released` in arrival order.
    pub fn expire(&mut self, now: u64, released: &mut Vec<HeldFrame>) {
        let due: Vec<Key> = self
            .order
            .iter()
            .filter(|k| self.datagrams.get(*k).is_some_and(|d| d.deadline <= now))
            .copied()
            .collect();
        for key in due {
            self.give_up(key, released);
        }
    }

    /// Gives up everything held (the end of the input).
    pub fn release_all(&mut self, released: &mut Vec<HeldFrame>) {
        while let Some(key) = self.order.pop_front() {
            if self.datagrams.contains_key(&key) {
                self.give_up(key, released);
            }
        }
    }

    fn remove(&mut self, key: Key) -> Datagram {
        let d = self
            .datagrams
            .remove(&key)
            .expect("a datagram being removed is held");
        self.held_bytes -= d.held_bytes;
        self.order.retain(|k| *k != key);
        d
    }

    fn give_up(&mut self, key: Key, released: &mut Vec<HeldFrame>) {
        released.extend(self.remove(key).frames);
    }

    /// Gives up the oldest datagrams until a fragment of `bytes` fits: in
    /// a datagram held already (`grows`), or in a new one.
    fn make_room(&mut self, grows: bool, bytes: usize, released: &mut Vec<HeldFrame>) {
        while !self.datagrams.is_empty()
            && ((!grows && self.datagrams.len() >= MAX_DATAGRAMS)
                || self.held_bytes + bytes > MAX_HELD_BYTES)
        {
            let Some(oldest) = self.order.front().copied() else {
                break;
            };
            if self.datagrams.contains_key(&oldest) {
                self.give_up(oldest, released);
            } else {
                self.order.pop_front();
            }
        }
    }
}

/// Where the IP header, the headers to keep, the fragment fields and the
/// payload of the fragment in `frame` are, read through the same
/// [`crate::wire`] views as the decoder; `None` if it is cut short or its
/// headers cannot be placed.
fn layout(link: LinkType, frame: &[u8]) -> Option<Layout> {
    let (ip_at, version) = link_layer(link, frame).ok()?;
    let ip = frame.get(ip_at..)?;
    match version {
        IpVersion::V4 => {
            let h = Ipv4Packet::new_checked(ip).ok()?;
            let (header, total) = (h.header_len(), usize::from(h.total_len()));
            if total < header || total > ip.len() {
                return None;
            }
            Some(Layout {
                ip_at,
                kept_end: ip_at + header,
                next_header_at: None,
                next_header: 0,
                payload: (ip_at + header, ip_at + total),
                offset: usize::from(h.frag_offset()) * 8,
                more: h.more_frags(),
                wire_bytes: total,
            })
        }
        IpVersion::V6 => {
            let h = Ipv6Packet::new_checked(ip).ok()?;
            let total = 40 + usize::from(h.payload_len());
            let datagram = ip.get(..total)?;
            // Extension headers may come before the fragment header; the
            // byte naming the fragment header is rewritten on reassembly.
            let (mut next, mut next_at, mut at) = (h.next_header(), 6, 40);
            while is_chained_ext(next) {
                let e = Ipv6ExtHeader::new_checked(datagram.get(at..)?).ok()?;
                (next, next_at, at) = (e.next_header(), at, at + e.header_len());
            }
            if next != 44 {
                return None;
            }
            let f = Ipv6FragmentHeader::new_checked(datagram.get(at..)?).ok()?;
            let payload_at = at + Ipv6FragmentHeader::<&[u8]>::LEN;
            Some(Layout {
                ip_at,
                kept_end: ip_at + at,
                next_header_at: Some(ip_at + next_at),
                next_header: f.next_header(),
                payload: (ip_at + payload_at, ip_at + total),
                offset: usize::from(f.frag_offset()) * 8,
                more: f.more_frags(),
                wire_bytes: total,
            })
        }
    }
}

/// The whole datagram of `d` as one frame; `None` if it would be longer
/// than an IP packet can say.
fn rebuild(d: &Datagram) -> Option<Offered> {
    let (first, layout) = d.first?;
    let head = &d.frames[first].data;
    let total = d.total?;
    let kept = layout.kept_end - layout.ip_at;
    let mut frame = Vec::with_capacity(layout.kept_end + total);
    frame.extend_from_slice(&head[..layout.kept_end]);
    frame.resize(layout.kept_end + total, 0);
    for (held, p) in d.frames.iter().zip(&d.pieces) {
        let payload = &held.data[p.end_in_frame - p.len..p.end_in_frame];
        let at = layout.kept_end + p.offset;
        frame[at..at + p.len].copy_from_slice(payload);
    }
    let ip = layout.ip_at;
    match layout.next_header_at {
        None => {
            let length = u16::try_from(kept + total).ok()?;
            frame[ip + 2..ip + 4].copy_from_slice(&length.to_be_bytes());
            // No more fragments, offset 0 (keeping DF).
            frame[ip + 6] &= 0x40;
            frame[ip + 7] = 0;
        }
        Some(next_at) => {
            let length = u16::try_from(kept - 40 + total).ok()?;
            frame[ip + 4..ip + 6].copy_from_slice(&length.to_be_bytes());
            frame[next_at] = layout.next_header;
        }
    }
    let last = d.frames.last()?;
    let whole_ip = kept + total;
    Some(Offered::Whole {
        link_type: d.frames[first].link_type,
        fragments: u16::try_from(d.frames.len()).ok()?,
        extra_bytes: u32::try_from(d.wire_bytes.saturating_sub(whole_ip)).ok()?,
        ts_ns: last.ts_ns,
        ifindex: last.ifindex,
        frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoded, decode};

    /// A raw IPv4 GRE fragment of datagram `id` from 192.0.2.`host`: `len`
    /// payload bytes at `offset`.
    fn gre_fragment(host: u8, id: u16, offset: usize, len: usize, more: bool) -> Vec<u8> {
        let mut f = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 47, 0, 0, 192, 0, 2, host, 192, 0, 2, 200,
        ];
        f[2..4].copy_from_slice(&((20 + len) as u16).to_be_bytes());
        f[4..6].copy_from_slice(&id.to_be_bytes());
        let flags = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
        f[6..8].copy_from_slice(&flags.to_be_bytes());
        f.extend((0..len).map(|i| (offset + i) as u8));
        f
    }

    fn offer(r: &mut Reassembler, frame: &[u8], ts: u64, released: &mut Vec<HeldFrame>) -> Offered {
        let Decoded::Ip(p) = decode(LinkType::RAW, frame) else {
            panic!("a fragment decodes");
        };
        r.offer(&TunnelPorts::default(), &p, 101, frame, ts, 0, released)
    }

    #[test]
    fn fragments_in_any_order_make_the_whole_datagram_once() {
        let mut r = Reassembler::default();
        let mut released = Vec::new();
        let parts = [(16, 16, true), (32, 8, false), (0, 16, true)];
        let mut whole = None;
        for (k, (offset, len, more)) in parts.into_iter().enumerate() {
            match offer(
                &mut r,
                &gre_fragment(1, 7, offset, len, more),
                k as u64,
                &mut released,
            ) {
                Offered::Held => assert!(k < 2),
                Offered::Whole {
                    frame,
                    fragments,
                    extra_bytes,
                    ts_ns,
                    ..
                } => {
                    assert_eq!((fragments, extra_bytes, ts_ns), (3, 40, 2));
                    whole = Some(frame);
                }
                Offered::Pass => panic!("a GRE fragment is held"),
            }
        }
        let frame = whole.expect("whole after the third");
        assert_eq!(frame.len(), 20 + 40);
        assert_eq!(&frame[2..4], &60u16.to_be_bytes());
        assert_eq!(&frame[6..8], &[0, 0]);
        assert!(frame[20..].iter().enumerate().all(|(i, b)| *b == i as u8));
        assert!(released.is_empty());
        assert_eq!(r.next_deadline(), u64::MAX, "nothing held");
    }

    #[test]
    fn overlapping_late_and_crowding_datagrams_are_given_up_fragment_by_fragment() {
        let mut r = Reassembler::default();
        let mut released = Vec::new();
        // Overlap: both fragments come back as they were.
        offer(&mut r, &gre_fragment(1, 1, 0, 16, true), 0, &mut released);
        offer(&mut r, &gre_fragment(1, 1, 8, 16, false), 0, &mut released);
        assert_eq!(released.len(), 2);
        // Too long a wait (30 s for IPv4).
        released.clear();
        offer(&mut r, &gre_fragment(1, 2, 0, 16, true), 5, &mut released);
        assert_eq!(r.next_deadline(), 5 + 30_000_000_000);
        r.expire(5 + 29_999_999_999, &mut released);
        assert!(released.is_empty());
        r.expire(5 + 30_000_000_000, &mut released);
        assert_eq!(released.len(), 1);
        // A full table gives up its oldest datagram first.
        released.clear();
        for id in 0..=MAX_DATAGRAMS as u16 {
            offer(
                &mut r,
                &gre_fragment(2, id, 0, 16, true),
                u64::from(id),
                &mut released,
            );
        }
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].ts_ns, 0, "the oldest");
        assert!(r.datagrams.len() <= MAX_DATAGRAMS);
        // The end of the input gives up the rest, oldest first.
        released.clear();
        r.release_all(&mut released);
        assert_eq!(released.len(), MAX_DATAGRAMS);
        assert!(released.windows(2).all(|w| w[0].ts_ns < w[1].ts_ns));
        assert_eq!(r.held_bytes, 0);
    }

    /// The byte bound holds for a datagram that grows too, not only for new
    /// ones: one datagram of many small fragments cannot pass it.
    #[test]
    fn a_growing_datagram_is_bounded_too() {
        let mut r = Reassembler::default();
        let mut released = Vec::new();
        // 63 fragments of 1 KiB: 66 kB of frames each datagram.
        for id in 0..80u16 {
            for k in 0..63 {
                let f = gre_fragment(4, id, k * 1024, 1024, true);
                offer(&mut r, &f, u64::from(id), &mut released);
                assert!(
                    r.held_bytes <= MAX_HELD_BYTES,
                    "{} bytes held",
                    r.held_bytes
                );
            }
        }
        assert!(!released.is_empty());
    }

    #[test]
    fn a_datagram_of_too_many_fragments_is_given_up() {
        let mut r = Reassembler::default();
        let mut released = Vec::new();
        for k in 0..MAX_FRAGMENTS_PER_DATAGRAM {
            offer(
                &mut r,
                &gre_fragment(5, 1, k * 8, 8, true),
                0,
                &mut released,
            );
        }
        assert!(released.is_empty());
        offer(&mut r, &gre_fragment(5, 1, 4096, 8, true), 0, &mut released);
        assert_eq!(released.len(), MAX_FRAGMENTS_PER_DATAGRAM + 1);
        assert_eq!(r.held_bytes, 0);
    }

    #[test]
    fn held_bytes_are_bounded() {
        let mut r = Reassembler::default();
        let mut released = Vec::new();
        let big = 60_000;
        for id in 0..100u16 {
            offer(
                &mut r,
                &gre_fragment(3, id, 0, big, true),
                u64::from(id),
                &mut released,
            );
            assert!(r.held_bytes <= MAX_HELD_BYTES);
        }
        assert!(!released.is_empty());
    }
}
