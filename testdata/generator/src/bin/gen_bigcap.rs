//! Writes the throughput benchmark's capture:
//! `gen-bigcap OUT [--packets N] [--duration SECS] [--seed N] [--no-tunnels]`
//! (defaults: 11 000 000 packets planned, about 9.75 M written within the
//! 30 s, seed 1; `--no-tunnels` writes the 1 % of flows that are in GRE or
//! VXLAN as plain Ethernet). See
//! `flowspan_testdata::bigcap` for the traffic mix.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;

use flowspan_testdata::bigcap::{BigcapOptions, write_bigcap};

const USAGE: &str =
    "usage: gen-bigcap OUT [--packets N] [--duration SECS] [--seed N] [--no-tunnels]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut out = None;
    let mut o = BigcapOptions::default();
    while let Some(a) = args.next() {
        let mut number = |flag: &str| -> Result<u64, String> {
            let v = args
                .next()
                .ok_or(format!("{flag} needs a value; {USAGE}"))?;
            v.replace('_', "")
                .parse()
                .map_err(|_| format!("{flag} {v:?}: expected a whole number"))
        };
        let r = match a.as_str() {
            "--packets" => number("--packets").map(|n| o.packets = n),
            "--duration" => number("--duration").map(|n| o.duration_secs = n),
            "--seed" => number("--seed").map(|n| o.seed = n),
            "--no-tunnels" => {
                o.tunnels = false;
                Ok(())
            }
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ if out.is_none() && !a.starts_with('-') => {
                out = Some(a);
                Ok(())
            }
            _ => Err(format!("unexpected argument {a:?}; {USAGE}")),
        };
        if let Err(e) = r {
            eprintln!("gen-bigcap: error: {e}");
            return ExitCode::from(2);
        }
    }
    let Some(path) = out else {
        eprintln!("gen-bigcap: error: no output file; {USAGE}");
        return ExitCode::from(2);
    };
    let file = match File::create(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gen-bigcap: error: {path}: cannot create: {e}");
            return ExitCode::from(2);
        }
    };
    let mut w = BufWriter::with_capacity(1 << 20, file);
    match write_bigcap(&mut w, o).and_then(|s| std::io::Write::flush(&mut w).map(|()| s)) {
        Ok(s) => {
            eprintln!(
                "gen-bigcap: wrote {path}: {} packets, {} flows, {} wire bytes, {} file bytes",
                s.packets, s.flows, s.wire_bytes, s.file_bytes
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-bigcap: error: {path}: {e}");
            ExitCode::from(1)
        }
    }
}
