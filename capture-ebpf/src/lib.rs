//! Live capture with eBPF TC programs: flows counted in the kernel.
//!
//! `bpf/flowspan.bpf.c` (C, compiled by clang from `build.rs`, loaded by
//! `aya`) runs on ingress and egress of each captured interface. Packets it
//! understands completely are counted in a flow map entry per flow, by the
//! engine's own definitions (flow key, per-direction counters and first
//! packet fields, how the flow opened, TCP latency). Everything else
//! (fragments, tunnels, unusual or malformed headers, new flows while the
//! map is full) goes to userspace whole through a ring buffer, and the
//! engine decodes it like a capture file's packets.
//!
//! [`EbpfCapture`] is the `engine::CaptureSource`: it hands the engine the
//! ring buffer's packets as frames and, every scan interval, what changed
//! in each flow map entry as an `engine::FlowObservation`
//! ([`flows::Tracker`]). README, "eBPF backend", has the design and why no
//! increment is lost.
#![deny(missing_docs)]

pub mod abi;
mod capture;
pub mod connects;
mod filter;
pub mod flows;
mod schedule;

pub use filter::verdicts as filter_verdicts;

pub use capture::{
    AttachMode, ENTRY_BYTES, EbpfCapture, EbpfConfig, EbpfError, MAX_FLOWS, attached_tcx,
    available, check_kernel_memory,
};

/// The compiled programs (empty when the build had no clang).
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowspan.bpf.o"));
