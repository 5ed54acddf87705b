//! SIGINT and SIGTERM: how a run is stopped; SIGHUP: the configuration
//! read again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::Context;
use exporter::otlp::ShutdownHandle;

/// SIGINT/SIGTERM: the first stops reading (open flows are then flushed as
/// usual) and starts the bounded export shutdown; the second gives up on
/// delivery at once; the third exits immediately. SIGHUP calls `hangup`.
pub fn watch_signals(
    stop: Arc<AtomicBool>,
    shutdown: Vec<ShutdownHandle>,
    shutdown_timeout: Duration,
    hangup: Box<dyn Fn() + Send>,
) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing the SIGINT/SIGTERM/SIGHUP handlers")?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stops = 0;
            for signal in signals.forever() {
                if signal == SIGHUP {
                    hangup();
                    continue;
                }
                stops += 1;
                match stops - 1 {
                    0 => {
                        stop.store(true, Ordering::Relaxed);
                        for s in &shutdown {
                            s.begin(shutdown_timeout);
                        }
                        note!(
                            "interrupted: flushing open flows{}",
                            if !shutdown.is_empty() {
                                "; signal again to stop waiting for the collector"
                            } else {
                                ""
                            }
                        );
                    }
                    1 if !shutdown.is_empty() => {
                        for s in &shutdown {
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
