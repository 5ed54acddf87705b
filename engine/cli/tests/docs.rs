//! `engine --version` names the git revision; `flowspan-docs` writes a man
//! page and shell completions that cover every flag `engine` has.

mod common;

use std::process::Command;

use clap::CommandFactory;
use common::root;
use flowspan_cli::args::Args;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn version_names_the_git_revision() {
    let out = common::engine(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("engine {} (git ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&want), "{text}");
    let rev = text[want.len()..].trim_end().trim_end_matches(')');
    match (
        std::env::var("FLOWSPAN_GIT_REV").ok(),
        git(&["rev-parse", "--short=12", "HEAD"]),
    ) {
        (Some(given), _) => assert_eq!(rev, given, "{text}"),
        // The build's revision is HEAD's, or it was built from a tree that
        // has moved on since (a commit made after the build).
        (None, Some(head)) => {
            let rev = rev.trim_end_matches("-dirty");
            assert_eq!(rev.len(), 12, "{text}");
            assert!(rev.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
            assert!(
                git(&["merge-base", "--is-ancestor", rev, &head]).is_some(),
                "{rev} is not HEAD ({head}) or an ancestor of it"
            );
        }
        (None, None) => {
            // Fails in CI, where the checkout is a clone and git is there.
            common::skip("git is missing or this is not a checkout: the revision check");
            assert_eq!(rev, "unknown", "{text}");
        }
    }
}

/// Every long flag of `engine`, as `--name`.
fn long_flags() -> Vec<String> {
    Args::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect()
}

#[test]
fn the_man_page_and_completions_cover_every_flag() {
    let dir = std::env::temp_dir().join(format!("flowspan-docs-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_flowspan-docs"))
        .arg(&dir)
        .output()
        .expect("running flowspan-docs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let man = read("engine.1");
    assert!(
        man.starts_with(".ie") || man.contains(".TH engine 1"),
        "a man page"
    );
    let flags = long_flags();
    for known in [
        "--pcap",
        "--interface",
        "--kubeconfig",
        "--no-processes",
        "--otlp-endpoint",
    ] {
        assert!(flags.iter().any(|f| f == known), "{known} in {flags:?}");
    }
    for flag in &flags {
        // roff writes a dash as `\-`.
        let escaped = flag.replace('-', "\\-");
        assert!(man.contains(&escaped), "engine.1 lacks {flag}");
        for completion in ["engine.bash", "_engine", "engine.fish"] {
            let text = read(completion);
            let plain = flag.trim_start_matches('-');
            assert!(text.contains(plain), "{completion} lacks {flag}");
        }
    }
    // A bad directory: one line, exit 2.
    let bad = Command::new(env!("CARGO_BIN_EXE_flowspan-docs"))
        .arg("/proc/version/x")
        .output()
        .expect("running flowspan-docs");
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&bad.stderr).lines().count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 19: README's table of config keys is the one the flag definitions
/// give (`flowspan-docs` writes it), so that no key goes undocumented.
#[test]
fn the_readme_lists_every_config_key() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).expect("README");
    let begin = "<!-- config-reference: begin -->\n";
    let end = "<!-- config-reference: end -->";
    let at = readme.find(begin).expect("begin marker") + begin.len();
    let until = readme[at..].find(end).expect("end marker") + at;
    let table = &readme[at..until];
    assert!(
        table == flowspan_cli::config::reference(),
        "README's config reference is stale: `cargo run -p flowspan-cli --bin flowspan-docs -- DIR` writes DIR/config-reference.md to paste in"
    );
}
