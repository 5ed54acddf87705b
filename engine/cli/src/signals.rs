//! SIGINT and SIGTERM: how a run is stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::Context;
use exporter::otlp::ShutdownHandle;

/// SIGINT/SIGTERM: the first stops reading (open flows are then flushed as
/// usual) and starts the bounded export shutdown; the second gives up on
/// delivery at once; the third exits immediately.
pub fn watch_signals(
    stop: Arc<AtomicBool>,
    shutdown: Option<ShutdownHandle>,
    shutdown_timeout: Duration,
) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the SIGINT/SIGTERM handlers")?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for (n, _) in signals.forever().enumerate() {
                match n {
                    0 => {
                        stop.store(true, Ordering::Relaxed);
                        if let Some(s) = &shutdown {
                            s.begin(shutdown_timeout);
                        }
                        eprintln!(
                            "engine: interrupted: flushing open flows{}",
                            if shutdown.is_some() {
                                "; signal again to stop waiting for the collector"
                            } else {
                                ""
                            }
                        );
                    }
                    1 if shutdown.is_some() => {
                        if let Some(s) = &shutdown {
                            s.begin(Duration::ZERO);
                        }
                    }
                    _ => std::process::exit(130),
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}
