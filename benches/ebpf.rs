//! The eBPF backend against AF_PACKET on the same replay (issue 17), on a
//! veth pair in network namespaces of its own (needs root):
//!
//!     ebpf-bench CAPTURE [PACKETS] [ROUNDS]   (defaults: 2000000 packets, 3 rounds)
//!
//! Frames are the first PACKETS Ethernet frames of CAPTURE (the `gen-bigcap`
//! mix, which keeps headers only: each frame is padded with zeros to its
//! original length), sent into one end of the pair with the project's raw
//! sender while
//! `engine -i B --backend ebpf|afpacket --workers 1 --ebpf-flows 262144 -o
//! /dev/null` captures on
//! the other; the backends alternate, ROUNDS times each. For each run:
//!
//! - the engine's own CPU time (user + system, from `wait4`), per packet,
//!   and how much of it came after SIGINT (the flush: the final read of
//!   the flow map, and every record's span, since no flow ends during the
//!   replay but the closed TCP ones);
//! - with eBPF, the programs' time per packet (`run_time_ns / run_cnt`,
//!   with BPF statistics on while the bench runs) and the share of packets
//!   sent to userspace (from the engine's summary).
//!
//! Then long flows, ROUNDS times for each backend: 1000 UDP flows get one
//! packet each, and 1,000,000 more packets of those flows follow: each
//! backend's engine CPU per packet when flows are long, and the programs'
//! time per packet of a flow already in the map.
//!
//!     ebpf-bench --test-run CAPTURE [PACKETS]
//!
//! runs the ingress program on the same frames in the kernel itself
//! (`BPF_PROG_TEST_RUN`, no interface, no sender): each frame once in
//! capture order (the mean on the benchmark traffic), the whole sequence a
//! second time (every flow now in the map), then one UDP frame of a flow
//! in the map 1,000,000 times in a row. The kernel times each run; a run's
//! time includes one clock read of the timer.
//!
//!     ebpf-bench --floor CAPTURE [PACKETS] [ROUNDS]
//!
//! measures what any TC flow counter costs on this machine, the floor
//! under the programs' figures above: three small programs
//! (`benches/bpf/floor.bpf.c`) that do not parse, one empty, one that looks
//! up (or makes) a 48-byte flow key in a hash map the size of the bench's
//! flow map and adds to its counters, one that also reads the clock and
//! takes the entry's spin lock as the flow programs do. Each runs on one
//! UDP frame of a flow in the map 1,000,000 times (`BPF_PROG_TEST_RUN`),
//! then, attached to the veth pair's receiving end with BPF statistics on,
//! on the replay of the capture and on the long flows above.
// The results are the output.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::time::Duration;

use aya::Ebpf;
use aya::programs::{SchedClassifier, TcAttachType, TestRun, TestRunOptions, loaded_programs, tc};
use aya::sys::{Stats, enable_stats};
use capture_afpacket::PacketSender;
use capture_afpacket::testnet::{VethPair, enter_namespace, start_engine_in, udp_frame_from};
use capture_ebpf::{EbpfCapture, EbpfConfig, EbpfError};
use engine::decode::UdpTunnel;

/// The programs' names as the kernel keeps them (15 bytes).
const PROGRAMS: [&str; 2] = ["flowspan_ingres", "flowspan_egress"];

/// `(run_time_ns, run_cnt)` summed over the loaded flowspan programs.
fn program_stats() -> (u64, u64) {
    let mut total = (0, 0);
    for info in loaded_programs().flatten() {
        if info.name_as_str().is_some_and(|n| PROGRAMS.contains(&n)) {
            total.0 += info.run_time().as_nanos() as u64;
            total.1 += info.run_count();
        }
    }
    total
}

/// The `engine` binary beside this one (target/release).
fn engine_binary() -> std::path::PathBuf {
    std::env::current_exe()
        .expect("own path")
        .with_file_name("engine")
}

/// A running engine and its stderr.
struct Engine {
    pid: i32,
    reader: std::thread::JoinHandle<String>,
}

fn start(ns: &VethPair, backend: &str) -> Engine {
    let started = start_engine_in(
        &ns.right,
        &engine_binary(),
        &[
            "-i",
            &ns.b,
            "--backend",
            backend,
            "--workers",
            "1",
            "-o",
            "/dev/null",
            // Room for every flow of the capture (about 210 k): the replay
            // squeezes 30 s of traffic into seconds, so no flow ends
            // meanwhile.
            "--ebpf-flows",
            "262144",
        ],
    )
    .expect("starting engine (build it: cargo build --release -p flowspan-cli)");
    // `ip netns exec` gives the engine a /sys without tracefs, which it
    // mounts for the connect tracepoint and says so first.
    let mut started = started;
    let mut first = started.first.clone();
    while first.starts_with("engine: mounted tracefs") {
        first = started
            .lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_default();
    }
    if !first.starts_with("engine: capturing on") {
        // Not left running (and loading the machine) after the panic.
        let _ = started.child.kill();
        let _ = started.child.wait();
        panic!("the engine did not start capturing: {first}");
    }
    let engine = Engine {
        pid: i32::try_from(started.child.id()).expect("pid"),
        reader: started.stderr,
    };
    // The child is reaped with wait4 (for its resource usage), not here.
    std::mem::forget(started.child);
    engine
}

/// CPU seconds (user + system) process `pid` has used so far, from
/// /proc/PID/stat (clock ticks of 10 ms).
fn cpu_so_far(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |n: usize| -> f64 {
        rest.split_whitespace()
            .nth(n)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    (field(11) + field(12)) / 100.0
}

/// Stops the engine with SIGINT: its CPU seconds before the signal (while
/// the traffic flowed), in all, and its stderr.
#[allow(unsafe_code)]
fn stop(engine: Engine) -> (f64, f64, String) {
    let during = cpu_so_far(engine.pid);
    // SAFETY: signalling and reaping our own child by its pid.
    let usage = unsafe {
        libc::kill(engine.pid, libc::SIGINT);
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(engine.pid, &mut status, 0, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
    (during, cpu, engine.reader.join().expect("stderr reader"))
}

/// `ebpf-bench --test-run CAPTURE [PACKETS]`.
fn test_run(frames: &[Vec<u8>]) -> ExitCode {
    let decoder = engine::decode::Decoder::default();
    let config = EbpfConfig {
        // Every flow of the capture fits.
        flows: 262_144,
        udp_ports: decoder.udp_ports_looked_into(),
        vxlan_ports: decoder.tunnel_ports.ports(UdpTunnel::Vxlan).collect(),
        geneve_ports: decoder.tunnel_ports.ports(UdpTunnel::Geneve).collect(),
        teredo_anywhere: decoder.teredo_anywhere(),
        ..EbpfConfig::default()
    };
    let registry = engine::registry::Registry::new();
    let capture = match EbpfCapture::open(&[], &config, &registry, &|_| {}) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ebpf-bench: {e}");
            return ExitCode::from(2);
        }
    };
    // The verifier's work at load, which grows with the programs' paths.
    for info in loaded_programs().flatten() {
        if let Some(name) = info.name_as_str().filter(|n| PROGRAMS.contains(n)) {
            println!(
                "{name}: the verifier processed {} instructions",
                info.verified_instruction_count().unwrap_or(0)
            );
        }
    }
    let run_all = |label: &str| -> Result<(), EbpfError> {
        let mut total = Duration::ZERO;
        for frame in frames {
            total += capture.test_run(frame, 1)?;
        }
        println!(
            "{label}: {} frames, {:.1} ns per packet",
            frames.len(),
            total.as_nanos() as f64 / frames.len().max(1) as f64
        );
        Ok(())
    };
    let result = (|| {
        run_all("capture order, first pass (new flows included)")?;
        run_all("capture order, second pass (every flow in the map)")?;
        let frame = udp_frame_from([10, 20, 0, 1], 1, false, None);
        capture.test_run(&frame, 1)?;
        let mean = capture.test_run(&frame, 1_000_000)?;
        println!(
            "one UDP flow in the map, 1000000 runs: {:.1} ns per packet",
            mean.as_nanos() as f64
        );
        Ok::<(), EbpfError>(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ebpf-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let in_kernel = args.first().is_some_and(|a| a == "--test-run");
    let floor_only = args.first().is_some_and(|a| a == "--floor");
    if in_kernel || floor_only {
        args.remove(0);
    }
    let Some(path) = args.first() else {
        eprintln!("usage: ebpf-bench [--test-run | --floor] CAPTURE [PACKETS] [ROUNDS]");
        return ExitCode::from(2);
    };
    let count: usize = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000_000);
    let rounds: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(3);
    // Whole packets, as a wire carries them: the capture keeps headers
    // only; the rest is zeros.
    let frames = match flowspan_benches::wire_frames(path, count, true) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ebpf-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if in_kernel {
        return test_run(&frames);
    }
    if floor_only {
        return floor(&frames, rounds);
    }
    let ns = match VethPair::create("eb") {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("ebpf-bench: {e}");
            return ExitCode::from(2);
        }
    };
    // BPF run-time statistics while this descriptor is open.
    let _stats = match enable_stats(Stats::RunTime) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("ebpf-bench: turning BPF statistics on: {e}");
            return ExitCode::from(2);
        }
    };
    let send = |frames: &[Vec<u8>]| send_from_left(&ns, frames);
    println!(
        "frames: {} from {path}; machine: {} CPUs, kernel {}",
        frames.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "backend   engine CPU s  of it at the end  engine ns/packet  programs ns/packet  sent up"
    );
    for _ in 0..rounds {
        for backend in ["ebpf", "afpacket"] {
            let engine = start(&ns, backend);
            let before = program_stats();
            send(&frames);
            std::thread::sleep(Duration::from_secs(1));
            let after = program_stats();
            let (during, cpu, stderr) = stop(engine);
            let n = frames.len() as f64;
            let (prog, up) = if backend == "ebpf" {
                let runs = after.1.saturating_sub(before.1).max(1);
                let ns_per = after.0.saturating_sub(before.0) as f64 / runs as f64;
                let up = stderr
                    .split("packets sent to userspace whole (")
                    .nth(1)
                    .and_then(|s| s.split(' ').next())
                    .unwrap_or("?")
                    .to_owned();
                (format!("{ns_per:.1}"), format!("{up} %"))
            } else {
                ("-".into(), "all".into())
            };
            println!(
                "{backend:<9} {cpu:>12.3}  {:>16.2}  {:>16.1}  {prog:>18}  {up}",
                cpu - during,
                cpu * 1e9 / n
            );
            for line in stderr.lines().filter(|l| {
                l.contains("sent to userspace whole (")
                    || l.contains("flow map reads:")
                    || l.contains("entries at the end")
                    || l.contains("kernel passed")
            }) {
                println!("          {}", line.trim());
            }
        }
    }

    // Long flows: 1000 UDP flows get one packet each, then 1,000,000 more
    // packets of those flows follow. The programs' time per packet of a
    // flow already in the map, and both backends' engine CPU when flows
    // are long (1001 packets each), against the capture's 9.
    let (first, more) = long_flows();
    println!("long flows: 1000 flows of 1001 packets");
    for _ in 0..rounds {
        for backend in ["ebpf", "afpacket"] {
            let engine = start(&ns, backend);
            send(&first);
            std::thread::sleep(Duration::from_millis(200));
            let before = program_stats();
            send(&more);
            std::thread::sleep(Duration::from_millis(500));
            let after = program_stats();
            let (_, cpu, stderr) = stop(engine);
            let n = (first.len() + more.len()) as f64;
            for line in stderr
                .lines()
                .filter(|l| l.contains("kernel passed") || l.contains("eBPF programs: "))
            {
                println!("          {}", line.trim());
            }
            let prog = if backend == "ebpf" {
                let runs = after.1.saturating_sub(before.1).max(1);
                format!(
                    "{:.1} ns per packet of a flow in the map ({runs} runs)",
                    after.0.saturating_sub(before.0) as f64 / runs as f64
                )
            } else {
                String::new()
            };
            println!(
                "{backend:<9} engine CPU {cpu:.3} s, {:.1} ns per packet; {prog}",
                cpu * 1e9 / n
            );
        }
    }
    ExitCode::SUCCESS
}

/// Sends `frames` into the pair's left end, from a thread of its own in
/// the left namespace.
fn send_from_left(ns: &VethPair, frames: &[Vec<u8>]) {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_namespace(&ns.left);
            let sender = PacketSender::open(&ns.a).expect("sender");
            sender.send_all(frames).expect("sending");
        });
    });
}

/// The long flows: one packet of each of 1000 UDP flows, then 1,000,000
/// more packets of those flows.
fn long_flows() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let first: Vec<Vec<u8>> = (0..1000u32)
        .map(|k| {
            let [_, _, x, y] = k.to_be_bytes();
            udp_frame_from([10, 20, x, y], 1, false, None)
        })
        .collect();
    let more = (0..1_000_000usize)
        .map(|k| first[k % 1000].clone())
        .collect();
    (first, more)
}

/// `benches/bpf/floor.bpf.c`, compiled by the build script (empty without
/// clang).
static FLOOR: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/floor.bpf.o"));

/// The floor programs, from least to most work.
const FLOOR_PROGRAMS: [&str; 3] = ["floor_empty", "floor_lookup", "floor_locked"];

/// Floor program `name`, loaded afresh (with an empty map).
fn load_floor(name: &str) -> Result<Ebpf, String> {
    let mut ebpf = Ebpf::load(FLOOR).map_err(|e| format!("loading the floor programs: {e}"))?;
    let program: &mut SchedClassifier = ebpf
        .program_mut(name)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| format!("the floor object has no program {name}"))?;
    program.load().map_err(|e| format!("loading {name}: {e}"))?;
    Ok(ebpf)
}

/// Program `name` of `ebpf`, which [`load_floor`] loaded.
fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut SchedClassifier {
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .expect("loaded by load_floor")
}

/// `ebpf-bench --floor CAPTURE [PACKETS] [ROUNDS]`.
fn floor(frames: &[Vec<u8>], rounds: usize) -> ExitCode {
    if FLOOR.is_empty() {
        eprintln!("ebpf-bench: {}", env!("FLOWSPAN_FLOOR_WHY"));
        return ExitCode::from(2);
    }
    let result = (|| -> Result<(), String> {
        let frame = udp_frame_from([10, 20, 0, 1], 1, false, None);
        println!("test run, one UDP frame of a flow in the map, 1000000 runs:");
        for _ in 0..rounds {
            for name in FLOOR_PROGRAMS {
                let mut ebpf = load_floor(name)?;
                let program = classifier(&mut ebpf, name);
                let run = |repeat: u32| {
                    let mut opts = TestRunOptions::new();
                    opts.data_in = Some(&frame);
                    opts.repeat = repeat;
                    program
                        .test_run(opts)
                        .map(|r| r.duration)
                        .map_err(|e| format!("test run of {name}: {e}"))
                };
                // The first run makes the entry.
                run(1)?;
                let mean = run(1_000_000)?;
                println!("  {name:<13} {:6.1} ns per packet", mean.as_nanos() as f64);
            }
        }
        let ns = VethPair::create("ef")?;
        let _stats =
            enable_stats(Stats::RunTime).map_err(|e| format!("turning BPF statistics on: {e}"))?;
        enter_namespace(&ns.right);
        // Where TCX is missing, programs attach to a clsact qdisc.
        let _ = tc::qdisc_add_clsact(&ns.b);
        let send = |frames: &[Vec<u8>]| send_from_left(&ns, frames);
        let (first, more) = long_flows();
        for (label, warm, measured) in [
            ("replay of the capture", &[][..], frames),
            (
                "long flows, packets of a flow in the map",
                &first[..],
                &more[..],
            ),
        ] {
            println!("{label}, {} packets, BPF statistics:", measured.len());
            for _ in 0..rounds {
                for name in FLOOR_PROGRAMS {
                    let mut ebpf = load_floor(name)?;
                    let program = classifier(&mut ebpf, name);
                    let link = program
                        .attach(&ns.b, TcAttachType::Ingress)
                        .map_err(|e| format!("attaching {name}: {e}"))?;
                    send(warm);
                    let info = || {
                        program
                            .info()
                            .map_err(|e| format!("{name}'s statistics: {e}"))
                    };
                    let before = info()?;
                    send(measured);
                    std::thread::sleep(Duration::from_millis(500));
                    let after = info()?;
                    let runs = after.run_count().saturating_sub(before.run_count()).max(1);
                    let time = after.run_time().saturating_sub(before.run_time());
                    println!(
                        "  {name:<13} {:6.1} ns per packet ({runs} runs)",
                        time.as_nanos() as f64 / runs as f64
                    );
                    program
                        .detach(link)
                        .map_err(|e| format!("detaching {name}: {e}"))?;
                }
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ebpf-bench: {e}");
            ExitCode::from(2)
        }
    }
}
