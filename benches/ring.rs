//! How fast one thread consumes an AF_PACKET TPACKET_V3 ring (issue 5),
//! on a veth pair in a network namespace of its own (needs root):
//!
//!     ring-bench CAPTURE [PACKETS]       (default 2000000 packets)
//!
//! Frames are the first PACKETS Ethernet frames of CAPTURE (e.g. the
//! `gen-bigcap` capture), sent into one end of the pair by the project's
//! raw sender.
//!
//! 1. **Drain.** The ring (4 MiB × 256 blocks) on the other end is filled
//!    while nothing reads it, then one thread takes every block, decodes every
//!    frame and hands the blocks back, timed: the rate one worker consumes
//!    at when the kernel is not the limit.
//! 2. **Offered load.** Two sender threads send the frames as fast as they can
//!    (`sendmmsg`, 64 frames a call, bypassing the queueing discipline)
//!    while one thread consumes and decodes: the rate offered, and what the
//!    kernel dropped because the ring was full.
#![forbid(unsafe_code)]
// The results are the output.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use capture_afpacket::testnet::{VethPair, enter_namespace};
use capture_afpacket::{PacketSender, Ring, RingConfig};
use engine::{Decoded, LinkType, decode};

/// Drains every ready block; returns (packets, decoded).
fn drain(ring: &mut Ring) -> (u64, u64) {
    let (mut packets, mut decoded) = (0, 0);
    while let Some(block) = ring.next_block() {
        for p in block.packets() {
            packets += 1;
            if let Decoded::Ip(_) = decode(LinkType(p.link_type()), p.data) {
                decoded += 1;
            }
        }
    }
    (packets, decoded)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, count) = match args.as_slice() {
        [p] => (p, 2_000_000usize),
        [p, n] => match n.parse() {
            Ok(n) => (p, n),
            Err(_) => {
                eprintln!("ring-bench: PACKETS must be a number, not {n:?}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: ring-bench CAPTURE [PACKETS]");
            return ExitCode::from(2);
        }
    };
    let frames = match flowspan_benches::wire_frames(path, count, false) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ring-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let ns = match VethPair::create("rb") {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("ring-bench: {why}");
            return ExitCode::from(2);
        }
    };
    let config = RingConfig {
        block_size: 4 << 20,
        block_count: 256,
        ..RingConfig::default()
    };
    let open = |name: &str| {
        ns.enter_right();
        Ring::open(name, &config).expect("opening the ring")
    };
    ns.enter_left();
    let sender = PacketSender::open(&ns.a).expect("opening the sender");
    println!(
        "{} frames from {path} (mean {:.0} bytes)",
        frames.len(),
        frames.iter().map(Vec::len).sum::<usize>() as f64 / frames.len() as f64
    );

    // 1. Drain a full ring.
    let mut ring = open(&ns.b);
    sender.send_all(&frames).expect("sending");
    std::thread::sleep(Duration::from_millis(100)); // the last block retires
    let kernel = ring.stats().expect("stats");
    let started = Instant::now();
    let (packets, decoded) = drain(&mut ring);
    let took = started.elapsed().as_secs_f64();
    println!(
        "drain: {packets} packets ({decoded} decoded) in {:.1} ms: {:.2} M packets/s on one thread (kernel: {} passed, {} dropped)",
        took * 1e3,
        packets as f64 / took / 1e6,
        kernel.packets,
        kernel.drops
    );
    drop(ring);

    // 2. Consume while two sender threads offer as much as they can (one
    //    alone does not reach 1 M packets/s here: the kernel's veth and
    //    packet-socket path runs on the sending CPU).
    let mut ring = open(&ns.b);
    let senders: Vec<_> = frames
        .chunks(frames.len().div_ceil(2).max(1))
        .map(|part| {
            let part = part.to_vec();
            let a = ns.a.clone();
            let name = ns.left.clone();
            std::thread::spawn(move || {
                // A new thread starts in the root namespace: enter the sender's.
                enter_namespace(&name);
                let sender = PacketSender::open(&a).expect("opening the sender");
                let started = Instant::now();
                sender.send_all(&part).expect("sending");
                started.elapsed().as_secs_f64()
            })
        })
        .collect();
    let done = || senders.iter().all(|s| s.is_finished());
    let (mut packets, mut decoded) = (0, 0);
    loop {
        let finished = done();
        let _ = ring.wait(Duration::from_millis(10));
        let (p, d) = drain(&mut ring);
        packets += p;
        decoded += d;
        if finished && p == 0 {
            break;
        }
    }
    let send_secs = senders
        .into_iter()
        .map(|s| s.join().expect("sender thread"))
        .fold(0.0, f64::max);
    let kernel = ring.stats().expect("stats");
    println!(
        "offered {:.2} M packets/s for {send_secs:.2} s: consumed {packets} ({decoded} decoded), kernel dropped {} of {}",
        frames.len() as f64 / send_secs / 1e6,
        kernel.drops,
        kernel.packets
    );
    ExitCode::SUCCESS
}
