//! SIGHUP: the config file (and the environment) read again; what can
//! change while running is applied, and what needs a restart is said.

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use exporter::otlp::{Protocol, SharedHeaders, Signal};
use flowspan_cli::config::{self, Layered, Setting};

use crate::export::otlp_config;
use crate::kubernetes::Enrichment;

/// Enrichment settings, applied together: the directory is built again.
const ENRICHMENT: [&str; 4] = [
    "k8s-snapshot",
    "k8s-cluster-name",
    "k8s-annotation",
    "opt-in",
];

/// What a reload can change.
pub struct Parts {
    /// The OTLP exporters' request headers and protocol, by signal.
    pub headers: Vec<(Signal, (SharedHeaders, Protocol))>,
    /// `--quiet`.
    pub quiet: Arc<AtomicBool>,
    /// Kubernetes enrichment, when it runs.
    pub enrichment: Option<Arc<Enrichment>>,
}

/// What a reload can change, and the settings in force.
pub struct Reloader {
    argv: Vec<OsString>,
    /// The settings in force: those read at start, with what reloads
    /// applied since.
    running: Mutex<Vec<Setting>>,
    /// What the messages call the configuration.
    name: String,
    parts: Parts,
}

impl Reloader {
    pub fn new(argv: Vec<OsString>, layered: &Layered, parts: Parts) -> Reloader {
        Reloader {
            argv,
            running: Mutex::new(layered.effective.clone()),
            name: layered.file.as_ref().map_or_else(
                || "the configuration (no --config file)".to_owned(),
                |p| p.display().to_string(),
            ),
            parts,
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
        let mut failed: Vec<String> = Vec::new();
        let changed: Vec<&str> = running
            .iter()
            .zip(&layered.effective)
            .filter(|(now, new)| now.values != new.values)
            .map(|(_, new)| new.key.as_str())
            .collect();
        let enrichment = self.enrichment_applies(&changed, &running, &layered);
        for (now, new) in running.iter_mut().zip(&layered.effective) {
            if now.values == new.values {
                continue;
            }
            let outcome = if ENRICHMENT.contains(&new.key.as_str()) {
                enrichment.clone()
            } else {
                self.apply(&new.key, &layered)
            };
            match outcome {
                Ok(true) => {
                    applied.push(new.key.clone());
                    *now = new.clone();
                }
                Ok(false) => restart.push(new.key.clone()),
                Err(e) => {
                    let line = format!(
                        "engine: error: SIGHUP: {}; it stays as it was",
                        config::locate(&e, &layered.origins)
                    );
                    if !failed.contains(&line) {
                        eprintln!("{line}");
                        failed.push(line);
                    }
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

    /// Applies the enrichment settings of `layered` if any changed and a
    /// reload can apply them all: whether it did (the same for each of
    /// them). Only the Kubernetes opt-in groups of `opt-in` can change
    /// (the others shape the spans the workers map), and a snapshot's path
    /// only when a snapshot is what enrichment reads.
    fn enrichment_applies(
        &self,
        changed: &[&str],
        running: &[Setting],
        layered: &Layered,
    ) -> Result<bool, String> {
        if !changed.iter().any(|k| ENRICHMENT.contains(k)) {
            return Ok(false);
        }
        let Some(enrichment) = &self.parts.enrichment else {
            return Ok(false);
        };
        let value = |settings: &[Setting], key: &str| -> Vec<String> {
            settings
                .iter()
                .find(|s| s.key == key)
                .map(|s| s.values.clone())
                .unwrap_or_default()
        };
        let span_groups = |values: Vec<String>| -> Vec<String> {
            let all = values.iter().any(|v| v == "all");
            let mut groups: Vec<String> = values
                .into_iter()
                .filter(|v| v == "tunnel" || v == "ipsec")
                .collect();
            if all {
                groups = vec!["tunnel".into(), "ipsec".into()];
            }
            groups.sort();
            groups.dedup();
            groups
        };
        if span_groups(value(running, "opt-in")) != span_groups(value(&layered.effective, "opt-in"))
        {
            return Ok(false);
        }
        if changed.contains(&"k8s-snapshot") && enrichment.watcher.is_some() {
            return Ok(false);
        }
        enrichment
            .reload(&layered.args)
            .map(|()| true)
            .map_err(|e| format!("{e:#}"))
    }

    /// Applies setting `key` from `layered`: whether it could be (without
    /// a restart). `otlp-header`, `quiet` and `log-level` can.
    fn apply(&self, key: &str, layered: &Layered) -> Result<bool, String> {
        match key {
            "otlp-header" => {
                if self.parts.headers.is_empty() {
                    return Ok(false);
                }
                for (signal, (headers, protocol)) in &self.parts.headers {
                    let resolved =
                        otlp_config(&layered.args, *signal).map_err(|e| format!("{e:#}"))?;
                    let Some(resolved) = resolved else {
                        return Ok(false);
                    };
                    headers
                        .set(*protocol, resolved.headers)
                        .map_err(|e| format!("--otlp-header: {e}"))?;
                }
                Ok(true)
            }
            "quiet" => {
                self.parts
                    .quiet
                    .store(layered.args.quiet, Ordering::Relaxed);
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
