//! Counters of a run and the summary printed on standard error.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use capture_afpacket::RingStats;
use capture_pcap::ReaderStats;
use engine::{DecodeError, EndReason, PacketRepr, SkipReason, TableStats};
use exporter::otlp::ExportReport;

/// What happened to each frame read, by reason.
#[derive(Debug, Default)]
pub struct DecodeCounters {
    /// Frames read.
    pub frames: u64,
    /// Frames decoded into an IP packet of a flow.
    pub decoded: u64,
    /// Frames skipped (not IP, unsupported link type), by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Malformed frames, by reason.
    pub malformed: BTreeMap<&'static str, u64>,
    /// Decoded packets that came out of a tunnel.
    pub decapsulated: u64,
    /// Packets whose tunnel header (or the packet inside) was malformed,
    /// by reason: each is counted on the flow of the packet that carried it.
    pub tunnel_malformed: BTreeMap<&'static str, u64>,
    /// Frames per unsupported link type.
    pub unsupported_link_types: BTreeMap<u32, u64>,
    /// GSO/GRO super-frames (live capture) counted as their wire segments.
    pub super_frames: u64,
    /// The wire segments those super-frames stand for.
    pub segments: u64,
    /// Super-frames counted as one packet: their GSO type is not the TCP or
    /// UDP the decoder found (e.g. a tunnel), or they hold one segment.
    pub super_frames_unsplit: u64,
}

impl DecodeCounters {
    pub fn skip(&mut self, reason: SkipReason, link_type: u32) {
        *self.skipped.entry(reason.reason()).or_default() += 1;
        if reason == SkipReason::UnsupportedLinkType {
            *self.unsupported_link_types.entry(link_type).or_default() += 1;
        }
    }

    pub fn malformed(&mut self, e: DecodeError) {
        *self.malformed.entry(e.reason()).or_default() += 1;
    }

    /// Counts a decoded packet, and its tunnel, if any.
    pub fn decoded(&mut self, p: &PacketRepr) {
        self.decoded += 1;
        if p.encap().is_some() {
            self.decapsulated += 1;
        }
        if let Some(e) = p.tunnel_error() {
            *self.tunnel_malformed.entry(e.reason()).or_default() += 1;
        }
    }
}

/// The end-of-run summary.
pub struct Summary<'a> {
    /// The file, or `live capture on …`.
    pub path: &'a str,
    /// Bytes read (file) or on the wire (live).
    pub bytes: u64,
    pub elapsed: Duration,
    /// The file reader's counters (file input only).
    pub reader: Option<&'a ReaderStats>,
    /// Each interface's kernel counters (live capture only).
    pub live: &'a [(String, RingStats)],
    pub decode: &'a DecodeCounters,
    pub table: &'a TableStats,
    pub spans: u64,
    /// Export target and final counts, when exporting.
    pub export: Option<(&'a str, ExportReport)>,
}

fn reasons(f: &mut fmt::Formatter<'_>, map: &BTreeMap<&'static str, u64>) -> fmt::Result {
    if map.is_empty() {
        return write!(f, " none");
    }
    for (k, v) in map {
        write!(f, " {k}={v}")?;
    }
    Ok(())
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.decode;
        let t = self.table;
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "engine: summary of {}: {} packets read ({} bytes) in {:.3} s",
            self.path, d.frames, self.bytes, secs
        )?;
        for (interface, r) in self.live {
            writeln!(
                f,
                "  interface {interface}: kernel passed {} packets, dropped {} (ring full), ring froze {} times",
                r.packets, r.drops, r.freezes
            )?;
        }
        writeln!(f, "  packets decoded: {}", d.decoded)?;
        if !self.live.is_empty() {
            writeln!(
                f,
                "  super-frames (GSO/GRO): {} counted as {} wire segments, {} counted as one packet",
                d.super_frames, d.segments, d.super_frames_unsplit
            )?;
        }
        write!(f, "  packets skipped:")?;
        reasons(f, &d.skipped)?;
        writeln!(f)?;
        if !d.unsupported_link_types.is_empty() {
            write!(f, "  unsupported link types:")?;
            for (lt, n) in &d.unsupported_link_types {
                write!(f, " {lt}={n}")?;
            }
            writeln!(f)?;
        }
        write!(f, "  packets malformed:")?;
        reasons(f, &d.malformed)?;
        writeln!(f)?;
        write!(
            f,
            "  tunnels: {} packets decapsulated; malformed tunnel headers (counted on the carrying flow):",
            d.decapsulated
        )?;
        reasons(f, &d.tunnel_malformed)?;
        writeln!(f)?;
        if let Some(reader) = self.reader {
            writeln!(
                f,
                "  capture problems: unknown_interface={} bad_packet_block={} simple_packet_blocks_without_timestamp={}",
                reader.unknown_interface, reader.bad_packet_block, reader.simple_packet_blocks
            )?;
        }
        writeln!(
            f,
            "  fragments without their first fragment: {}",
            t.fragments_without_first
        )?;
        writeln!(
            f,
            "  flows: {} (most open at once, summed over workers: {})",
            t.flows, t.peak_flows
        )?;
        writeln!(
            f,
            "  flow table memory at that peak: {:.1} MB ({} bytes per open flow)",
            t.peak_memory_bytes as f64 / 1e6,
            t.peak_memory_bytes.checked_div(t.peak_flows).unwrap_or(0)
        )?;
        write!(f, "  records: {}:", t.records_total())?;
        for (reason, n) in EndReason::ALL.iter().zip(t.records) {
            write!(f, " {}={n}", reason.as_str())?;
        }
        writeln!(f)?;
        writeln!(f, "  spans written: {}", self.spans)?;
        if let Some((target, r)) = &self.export {
            writeln!(
                f,
                "  otlp export to {target}: delivered={} rejected={} failed={} dropped={} undelivered={} (requests={} retries={})",
                r.delivered, r.rejected, r.failed, r.dropped, r.undelivered, r.requests, r.retries
            )?;
        }
        Ok(())
    }
}
