//! The end-of-run summary on standard error, read from the run's counter
//! registry (the same counters a progress line or a metrics endpoint reads
//! while the run goes on).

use std::fmt;
use std::time::Duration;

use engine::EndReason;
use engine::registry::{SPANS, Snapshot, SourceKind};

/// The end-of-run summary.
pub struct Summary<'a> {
    /// The file, or `live capture on …`.
    pub path: &'a str,
    /// From the start of reading to its end (the end of input, a signal).
    pub reading: Duration,
    /// From the end of reading to the end of output: open flows ended,
    /// the last spans written, the export queue delivered (or given up).
    pub finishing: Duration,
    /// The flow limit over all workers (0: none) and what set it.
    pub flow_limit: (usize, &'a str),
    /// What was asked to leave out: the capture filter, flow sampling,
    /// record filters.
    pub selection: Selection<'a>,
    pub counters: &'a Snapshot,
}

/// What a run was asked to leave out, for the summary's lines about it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection<'a> {
    /// The capture filter's expression.
    pub filter: Option<&'a str>,
    /// With live capture on AF_PACKET: the kernel applies the filter.
    pub filter_in_kernel: bool,
    /// --sample-flows N.
    pub sample_flows: Option<u32>,
    /// Any --keep or --drop rule.
    pub rules: bool,
}

/// `name=count` pairs sorted by name, or ` none`.
fn reasons(
    f: &mut fmt::Formatter<'_>,
    counts: impl Iterator<Item = (&'static str, u64)>,
) -> fmt::Result {
    let mut counts: Vec<_> = counts.collect();
    if counts.is_empty() {
        return write!(f, " none");
    }
    counts.sort_unstable();
    for (k, v) in counts {
        write!(f, " {k}={v}")?;
    }
    Ok(())
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.counters;
        let d = &c.decode;
        let bytes: u64 = c.sources.iter().map(|(_, _, s)| s.bytes).sum();
        let Some(programs) = &c.programs else {
            writeln!(
                f,
                "engine: summary of {}: {} packets read ({} bytes) in {:.3} s; then {:.3} s to end open flows and write or deliver the last spans",
                self.path,
                d.frames,
                bytes,
                self.reading.as_secs_f64(),
                self.finishing.as_secs_f64()
            )?;
            return self.rest(f);
        };
        writeln!(
            f,
            "engine: summary of {}: {} packets in {:.3} s; then {:.3} s to end open flows and write or deliver the last spans",
            self.path,
            programs.packets,
            self.reading.as_secs_f64(),
            self.finishing.as_secs_f64()
        )?;
        let share = |n: u64| 100.0 * n as f64 / programs.packets.max(1) as f64;
        writeln!(
            f,
            "  eBPF programs: {} packets counted in the kernel ({:.1} %, {} of them decapsulated), handed on as {} flow observations",
            programs.counted,
            share(programs.counted),
            programs.decapsulated,
            d.flow_observations
        )?;
        write!(
            f,
            "  eBPF programs: {} packets sent to userspace whole ({:.1} %):",
            programs.up_total(),
            share(programs.up_total())
        )?;
        reasons(
            f,
            capture_names()
                .iter()
                .copied()
                .zip(programs.up)
                .filter(|&(_, n)| n > 0),
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "  eBPF programs: {} packets lost (ring buffer full); flow map: {} entries at the end, {} deleted after their flows ended",
            programs.lost, programs.entries, programs.collected
        )?;
        writeln!(
            f,
            "  flow map reads: {} entries read when due, {} reads of the whole map; {} notices of new or closed entries lost (ring buffer full)",
            programs.reads, programs.full_reads, programs.notices_lost
        )?;
        for (interface, kind, r) in &c.sources {
            if *kind == SourceKind::Interface {
                writeln!(
                    f,
                    "  interface {interface}: {} packets ({} bytes) sent to userspace whole",
                    r.kernel_packets, r.bytes
                )?;
            }
        }
        self.rest(f)
    }
}

/// How the summary names the reasons a packet goes to userspace.
fn capture_names() -> &'static [&'static str] {
    &engine::registry::UP_REASONS
}

impl Summary<'_> {
    /// Everything after the headline and the capture's own lines.
    fn rest(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.counters;
        let d = &c.decode;
        let t = &c.table;
        let live = c
            .sources
            .iter()
            .any(|(_, k, _)| *k == SourceKind::Interface);
        for (interface, kind, r) in &c.sources {
            if *kind == SourceKind::Interface && c.programs.is_none() {
                writeln!(
                    f,
                    "  interface {interface}: kernel passed {} packets, dropped {} (ring full), ring froze {} times, not read {}",
                    r.kernel_packets, r.kernel_drops, r.kernel_freezes, r.kernel_unread
                )?;
            }
        }
        let (gone, r) = &c.retired;
        if *gone > 0 && c.programs.is_some() {
            writeln!(
                f,
                "  {gone} interfaces matched by a pattern and gone since: {} packets ({} bytes) sent to userspace whole",
                r.packets, r.bytes
            )?;
        } else if *gone > 0 {
            writeln!(
                f,
                "  {gone} interfaces matched by a pattern and gone since: kernel passed {} packets, dropped {} (ring full), ring froze {} times, not read {}",
                r.kernel_packets, r.kernel_drops, r.kernel_freezes, r.kernel_unread
            )?;
        }
        if let Some(expression) = self.selection.filter {
            writeln!(
                f,
                "  capture filter {expression:?}: {} packets left out{}",
                d.filtered,
                if self.selection.filter_in_kernel {
                    " here (those the kernel left out are not counted anywhere)"
                } else {
                    ""
                }
            )?;
        }
        writeln!(f, "  packets decoded: {}", d.decoded)?;
        if live {
            // With eBPF, those the programs counted and those decoded here.
            let (kernel_frames, kernel_segments) =
                c.programs.map_or((0, 0), |p| (p.super_frames, p.segments));
            writeln!(
                f,
                "  super-frames (GSO/GRO): {} counted as {} wire segments, {} counted as one packet",
                d.super_frames + kernel_frames,
                d.segments + kernel_segments,
                d.super_frames_unsplit
            )?;
        }
        write!(f, "  packets skipped:")?;
        reasons(f, d.skipped_by_reason())?;
        writeln!(f)?;
        if !d.unsupported_link_types.is_empty() {
            let mut types = d.unsupported_link_types.clone();
            types.sort_unstable();
            write!(f, "  unsupported link types:")?;
            for (lt, n) in types {
                if lt == u32::MAX {
                    write!(f, " others={n}")?;
                } else {
                    write!(f, " {lt}={n}")?;
                }
            }
            writeln!(f)?;
        }
        write!(f, "  packets malformed:")?;
        reasons(f, d.malformed_by_reason())?;
        writeln!(f)?;
        write!(
            f,
            "  tunnels: {} packets decapsulated; malformed tunnel headers (counted on the carrying flow):",
            d.decapsulated
        )?;
        reasons(f, d.tunnel_malformed_by_reason())?;
        writeln!(f)?;
        writeln!(
            f,
            "  fragmented tunnels: {} outer datagrams put together from {} fragments; {} fragments counted as they came (datagram not whole)",
            d.reassembled, d.reassembled_fragments, d.reassembly_given_up
        )?;
        for (_, kind, r) in &c.sources {
            if *kind == SourceKind::File {
                writeln!(
                    f,
                    "  capture problems: unknown_interface={} bad_packet_block={} simple_packet_blocks_without_timestamp={}",
                    r.unknown_interface, r.bad_packet_block, r.simple_packet_blocks
                )?;
            }
        }
        writeln!(
            f,
            "  fragments without their first fragment: {}; first fragments not remembered (table full): {}",
            t.fragments_without_first, t.fragments_untracked
        )?;
        writeln!(
            f,
            "  flows: {} (most open at once, summed over workers: {})",
            t.flows, t.peak_flows
        )?;
        let duplicates = t.duplicates + c.programs.map_or(0, |p| p.duplicates);
        if live {
            writeln!(
                f,
                "  packets left out as seen on a second interface (--interface-flows first): {duplicates}"
            )?;
        }
        writeln!(
            f,
            "  flow table memory at that peak: {:.1} MB ({} bytes per open flow)",
            t.peak_memory_bytes as f64 / 1e6,
            t.peak_memory_bytes.checked_div(t.peak_flows).unwrap_or(0)
        )?;
        match self.flow_limit {
            (0, how) => writeln!(f, "  flow limit: none ({how})")?,
            (n, how) => writeln!(
                f,
                "  flow limit: {n} open flows ({how}); flows ended to make room: {}",
                t.evicted
            )?,
        }
        write!(f, "  records: {}:", t.records_total())?;
        for (reason, n) in EndReason::ALL.iter().zip(t.records) {
            write!(f, " {}={n}", reason.as_str())?;
        }
        writeln!(f)?;
        if let Some(n) = self.selection.sample_flows {
            writeln!(
                f,
                "  flow sampling (1 in {n} flows): {} records of flows left out",
                c.sampled_out
            )?;
        }
        if self.selection.rules {
            writeln!(
                f,
                "  record filters (--keep, --drop): {} records left out",
                c.filtered_out
            )?;
        }
        let written = c
            .outputs
            .iter()
            .filter(|o| o.signal == SPANS)
            .map(|o| o.written)
            .max()
            .unwrap_or(0);
        writeln!(f, "  spans written: {written}")?;
        for o in &c.outputs {
            if let Some(r) = &o.export {
                writeln!(
                    f,
                    "  otlp export to {}: {}delivered={} rejected={} failed={} dropped={} undelivered={} (requests={} retries={})",
                    o.target,
                    if o.signal == SPANS {
                        ""
                    } else {
                        "metric data points "
                    },
                    r.delivered,
                    r.rejected,
                    r.failed,
                    r.dropped,
                    r.undelivered,
                    r.requests,
                    r.retries
                )?;
            }
        }
        Ok(())
    }
}
