//! Names the git revision the `engine` binary is built from, for
//! `engine --version`: `FLOWSPAN_GIT_REV` when the environment sets it (a
//! packager building from a source tarball), else `git rev-parse` of the
//! checkout with `-dirty` when files differ from it, else `unknown`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=FLOWSPAN_GIT_REV");
    let rev = std::env::var("FLOWSPAN_GIT_REV").ok().or_else(|| {
        let top = git(&["rev-parse", "--show-toplevel"])?;
        // Rebuild when HEAD moves or the index changes (a commit, a staged
        // edit); an unstaged edit is seen at the next rebuild for another
        // reason.
        let dir = git(&["rev-parse", "--git-dir"])?;
        let dir = Path::new(&top).join(dir);
        for f in ["HEAD", "index"] {
            println!("cargo:rerun-if-changed={}", dir.join(f).display());
        }
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", dir.join(head).display());
        }
        let rev = git(&["rev-parse", "--short=12", "HEAD"])?;
        let dirty =
            git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        Some(if dirty { format!("{rev}-dirty") } else { rev })
    });
    println!(
        "cargo:rustc-env=FLOWSPAN_GIT_REV={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
}
