//! Writes the `engine` man page and shell completions, generated from the
//! same flag definitions as `engine --help`:
//!
//!     flowspan-docs DIR
//!
//! writes `DIR/engine.1` (man, section 1), `DIR/engine.bash`, `DIR/_engine`
//! (zsh), `DIR/engine.fish`, and `DIR/config-reference.md`, the config
//! file's keys (README "Config file" holds the same table). Packaging installs them
//! (`/usr/share/man/man1`, `/usr/share/bash-completion/completions/engine`,
//! `/usr/share/zsh/vendor-completions`, `/usr/share/fish/vendor_completions.d`).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use flowspan_cli::args::Args;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
    Ok(())
}

fn run(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    let command = Args::command();
    let mut man = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut man)
        .map_err(|e| format!("rendering the man page: {e}"))?;
    write(dir, "engine.1", &man)?;
    write(
        dir,
        "config-reference.md",
        flowspan_cli::config::reference().as_bytes(),
    )?;
    for (shell, name) in [
        (Shell::Bash, "engine.bash"),
        (Shell::Zsh, "_engine"),
        (Shell::Fish, "engine.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut command.clone(), "engine", &mut out);
        write(dir, name, &out)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [dir] = args.as_slice() else {
        eprintln!("usage: flowspan-docs DIR");
        return ExitCode::from(2);
    };
    match run(dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowspan-docs: error: {e}");
            ExitCode::from(2)
        }
    }
}
