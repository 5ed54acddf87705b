//! What the engine says on standard error besides its errors, by
//! `--log-level`: warnings, and notes (what it is doing: capturing on,
//! serving on, an interface that came or went, a reload). Errors, and spans
//! lost, are always said. SIGHUP can change the level while running.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use flowspan_cli::args::LogLevel;

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

/// Sets the level from now on.
pub fn set(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

fn enabled(level: LogLevel) -> bool {
    LEVEL.load(Ordering::Relaxed) >= level as u8
}

/// `engine: warning: …`, unless the level is `error`.
pub fn warning(args: fmt::Arguments<'_>) {
    if enabled(LogLevel::Warning) {
        eprintln!("engine: warning: {args}");
    }
}

/// `engine: …`, at level `info`.
pub fn note(args: fmt::Arguments<'_>) {
    if enabled(LogLevel::Info) {
        eprintln!("engine: {args}");
    }
}
