//! A progress line on standard error for long runs, read from the run's
//! counter registry.

use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use engine::Registry;

/// A progress line on standard error for long runs: rewritten in place on a
/// terminal, one line every 10 s otherwise.
pub struct Progress {
    registry: Registry,
    input: String,
    /// `--quiet`, which SIGHUP can change.
    quiet: Arc<AtomicBool>,
    tty: bool,
    started: Instant,
    last: Instant,
    shown: bool,
}

impl Progress {
    pub fn new(quiet: Arc<AtomicBool>, registry: Registry, input: String) -> Progress {
        let now = Instant::now();
        Progress {
            registry,
            input,
            quiet,
            tty: io::stderr().is_terminal(),
            started: now,
            last: now,
            shown: false,
        }
    }

    pub fn tick(&mut self) {
        if self.quiet.load(Ordering::Relaxed) {
            self.clear();
            return;
        }
        let now = Instant::now();
        let every = if self.tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        if now.duration_since(self.started) < Duration::from_secs(2)
            || now.duration_since(self.last) < every
        {
            return;
        }
        self.last = now;
        let c = self.registry.snapshot();
        let frames = c.decode.frames;
        let bytes: u64 = c.sources.iter().map(|(_, _, s)| s.bytes).sum();
        let secs = now.duration_since(self.started).as_secs_f64();
        let mut line = format!(
            "engine: {}: {} packets, {:.1} MB read in {:.0} s ({:.0} packets/s)",
            self.input,
            frames,
            bytes as f64 / 1e6,
            secs,
            frames as f64 / secs
        );
        for e in c.outputs.iter().filter_map(|o| o.export) {
            line.push_str(&format!(
                "; {} spans exported, {} queued",
                e.delivered, e.queued
            ));
        }
        if self.tty {
            eprint!("\r{line}\x1b[K");
            self.shown = true;
        } else {
            eprintln!("{line}");
        }
    }

    pub fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}
