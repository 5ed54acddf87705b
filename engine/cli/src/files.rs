//! `--pcap`: the capture files to read, globs expanded, opened one by one
//! (a merge goes on without a file that cannot be read).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use capture_pcap::CaptureReader;

/// Files merged in one run at most: each stays open (mapped) to the end.
pub const MAX_FILES: usize = 4096;

/// The paths `--pcap` names: each value as given, or, when it holds `*`,
/// `?` or `[` and no file has that very name, the files its glob pattern
/// matches in name order. A file named twice is read once.
///
/// # Errors
/// A pattern is malformed or matches nothing; `-` comes with other files;
/// more than [`MAX_FILES`].
pub fn expand(values: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    if values.len() > 1 && values.iter().any(|v| v.as_os_str() == "-") {
        return Err(anyhow!(
            "--pcap -: standard input cannot be merged with other files; give files only, or `-` alone"
        ));
    }
    let mut paths = Vec::new();
    let mut seen = HashSet::new();
    for value in values {
        let text = value.to_string_lossy();
        let is_pattern = text.contains(['*', '?', '[']) && !value.exists();
        let matches = if is_pattern {
            let mut found: Vec<PathBuf> = glob::glob(&text)
                .map_err(|e| anyhow!("--pcap {text:?}: not a glob pattern: {e}"))?
                .filter_map(Result::ok)
                .filter(|p| !p.is_dir())
                .collect();
            if found.is_empty() {
                return Err(anyhow!("--pcap {text:?}: no file matches this pattern"));
            }
            found.sort();
            found
        } else {
            vec![value.clone()]
        };
        for path in matches {
            let key = path.canonicalize().unwrap_or_else(|_| path.clone());
            if seen.insert(key) {
                paths.push(path);
            }
        }
        if paths.len() > MAX_FILES {
            return Err(anyhow!(
                "--pcap: more than {MAX_FILES} files to merge; merge them in parts (mergecap), or read fewer"
            ));
        }
    }
    Ok(paths)
}

/// Opens every file of a merge; a file that cannot be opened, or is not
/// a capture, is said on standard error and left out. The readers and the
/// problems.
pub fn open_all(paths: &[PathBuf]) -> (Vec<CaptureReader>, Vec<String>) {
    let mut readers = Vec::with_capacity(paths.len());
    let mut problems = Vec::new();
    for path in paths {
        match CaptureReader::open(path) {
            Ok(r) => readers.push(r),
            Err(e) => {
                warning!("{e}; left out of the merge");
                problems.push(e.to_string());
            }
        }
    }
    (readers, problems)
}

/// How a merge is named in the progress line and the summary.
pub fn merge_name(paths: &[PathBuf]) -> String {
    let name = |p: &Path| p.display().to_string();
    match paths {
        [] => "no files".to_owned(),
        [one] => name(one),
        [first, .., last] => format!(
            "{} files merged ({} … {})",
            paths.len(),
            name(first),
            name(last)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_expand_in_name_order_and_files_are_read_once() {
        let dir = std::env::temp_dir().join(format!("flowspan-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for name in [
            "trace-2.pcap",
            "trace-10.pcap",
            "trace-1.pcap",
            "other.pcap",
        ] {
            std::fs::write(dir.join(name), b"").expect("file");
        }
        std::fs::create_dir_all(dir.join("trace-dir.pcap")).expect("a directory");
        let pattern = dir.join("trace-*.pcap");
        let got = expand(&[dir.join("trace-2.pcap"), pattern.clone()]).expect("expands");
        let names: Vec<String> = got
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["trace-2.pcap", "trace-1.pcap", "trace-10.pcap"]);

        let none = expand(&[dir.join("nothing-*.pcap")]).expect_err("no match");
        assert!(none.to_string().contains("no file matches"), "{none}");
        let stdin = expand(&["-".into(), pattern]).expect_err("stdin with files");
        assert!(stdin.to_string().starts_with("--pcap -:"), "{stdin}");
        // A name that exists is itself, brackets and all.
        std::fs::write(dir.join("[x].pcap"), b"").expect("file");
        assert_eq!(
            expand(&[dir.join("[x].pcap")]).expect("literal"),
            [dir.join("[x].pcap")]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
