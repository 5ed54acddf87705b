//! `--config FILE`: arbitrary bytes as the config file. Either the
//! settings load, and `--print-config` prints a file that loads again to
//! the same settings, or loading fails with one line.
#![no_main]

use std::ffi::OsString;

use flowspan_cli::config::{self, ConfigError};
use libfuzzer_sys::fuzz_target;

fn load(path: &std::path::Path) -> Result<config::Layered, ConfigError> {
    let argv: Vec<OsString> = ["engine", "--print-config", "--config"]
        .iter()
        .map(OsString::from)
        .chain(std::iter::once(path.as_os_str().to_owned()))
        .collect();
    config::load(&argv, &|_| None)
}

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("flowspan-fuzz-config-{}.yaml", std::process::id()));
    std::fs::write(&path, data).expect("writing the input");
    match load(&path) {
        Ok(layered) => {
            let printed = config::print(&layered);
            // Header values are redacted in print: leave them out.
            let again: String = printed
                .lines()
                .filter(|l| !l.starts_with("otlp-header"))
                .map(|l| format!("{l}\n"))
                .collect();
            let path2 = dir.join(format!("flowspan-fuzz-printed-{}.yaml", std::process::id()));
            std::fs::write(&path2, again).expect("writing the printed file");
            let reread = load(&path2).unwrap_or_else(|e| panic!("{e}\n{printed}"));
            let values = |l: &config::Layered| -> Vec<(String, Vec<String>)> {
                l.effective
                    .iter()
                    .filter(|s| s.key != "otlp-header")
                    .map(|s| (s.key.clone(), s.values.clone()))
                    .collect()
            };
            assert_eq!(values(&layered), values(&reread), "{printed}");
        }
        Err(ConfigError::Bad(line)) => assert!(!line.contains('\n'), "{line:?}"),
        Err(ConfigError::Clap(e)) => {
            let line = flowspan_cli::args::clap_message(&e);
            assert!(!line.contains('\n'), "{line:?}");
        }
    }
});
