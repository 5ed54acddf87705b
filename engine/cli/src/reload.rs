//! SIGHUP: the config file (and the environment) read again; what can
//! change while running is applied, and what needs a restart is said.

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use exporter::otlp::{Protocol, SharedHeaders};
use flowspan_cli::config::{self, Layered, Setting};

use crate::export::otlp_config;

/// What a reload can change, and the settings in force.
pub struct Reloader {
    argv: Vec<OsString>,
    /// The settings in force: those read at start, with what reloads
    /// applied since.
    running: Mutex<Vec<Setting>>,
    /// What the messages call the configuration.
    name: String,
    headers: Option<(SharedHeaders, Protocol)>,
    quiet: Arc<AtomicBool>,
}

impl Reloader {
    pub fn new(
        argv: Vec<OsString>,
        layered: &Layered,
        headers: Option<(SharedHeaders, Protocol)>,
        quiet: Arc<AtomicBool>,
    ) -> Reloader {
        Reloader {
            argv,
            running: Mutex::new(layered.effective.clone()),
            name: layered.file.as_ref().map_or_else(
                || "the configuration (no --config file)".to_owned(),
                |p| p.display().to_string(),
            ),
            headers,
            quiet,
        }
    }

    /// Reads the configuration again and applies what can change; one
    /// line on standard error says what happened.
    pub fn reload(&self) {
        let layered = match config::load(&self.argv, &|k| std::env::var(k).ok()) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("engine: error: SIGHUP: {e}; the running configuration stays");
                return;
            }
        };
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let mut applied = Vec::new();
        let mut restart = Vec::new();
        for (now, new) in running.iter_mut().zip(&layered.effective) {
            if now.values == new.values {
                continue;
            }
            match self.apply(&new.key, &layered) {
                Ok(true) => {
                    applied.push(new.key.clone());
                    *now = new.clone();
                }
                Ok(false) => restart.push(new.key.clone()),
                Err(e) => {
                    eprintln!(
                        "engine: error: SIGHUP: {}; it stays as it was",
                        config::locate(&e, &layered.origins)
                    );
                }
            }
        }
        let mut line = format!("engine: SIGHUP: read {} again: ", self.name);
        if applied.is_empty() && restart.is_empty() {
            line.push_str("no setting changed");
        } else {
            if !applied.is_empty() {
                line.push_str(&format!("applied {}", applied.join(", ")));
            }
            if !restart.is_empty() {
                if !applied.is_empty() {
                    line.push_str("; ");
                }
                line.push_str(&format!(
                    "changed but applied only by a restart: {}",
                    restart.join(", ")
                ));
            }
        }
        // Said at any --log-level: the answer to what the operator did.
        eprintln!("{line}");
    }

    /// Applies setting `key` from `layered`: whether it could be (without
    /// a restart). `otlp-header`, `quiet` and `log-level` can.
    fn apply(&self, key: &str, layered: &Layered) -> Result<bool, String> {
        match key {
            "otlp-header" => {
                let Some((headers, protocol)) = &self.headers else {
                    return Ok(false);
                };
                let resolved = otlp_config(&layered.args).map_err(|e| format!("{e:#}"))?;
                let Some(resolved) = resolved else {
                    return Ok(false);
                };
                headers
                    .set(*protocol, resolved.headers)
                    .map_err(|e| format!("--otlp-header: {e}"))?;
                Ok(true)
            }
            "quiet" => {
                self.quiet.store(layered.args.quiet, Ordering::Relaxed);
                Ok(true)
            }
            "log-level" => {
                crate::log::set(layered.args.log_level);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
