//! Compiles the TC programs (`bpf/flowspan.bpf.c`) and the connect
//! tracepoint (`bpf/connects.bpf.c`) with clang into `$OUT_DIR`, which the
//! crate embeds.
//!
//! Without clang the crate still builds: the object is empty and
//! `capture_ebpf::available()` says why, so that `--backend ebpf` fails at
//! run time with that reason while everything else works. `CLANG` names the
//! compiler; otherwise `clang-14` (Debian bookworm's) and then `clang` are
//! tried.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=bpf/flowspan.bpf.c");
    println!("cargo:rerun-if-changed=bpf/flowspan.h");
    println!("cargo:rerun-if-changed=bpf/connects.bpf.c");
    println!("cargo:rerun-if-changed=bpf/connects.h");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rustc-check-cfg=cfg(flowspan_no_bpf)");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let programs = [
        ("bpf/flowspan.bpf.c", out.join("flowspan.bpf.o")),
        ("bpf/connects.bpf.c", out.join("connects.bpf.o")),
    ];
    let candidates: Vec<String> = match env::var("CLANG") {
        Ok(c) => vec![c],
        Err(_) => vec!["clang-14".into(), "clang".into()],
    };
    let mut why = String::new();
    let helpers = PathBuf::from("/usr/include/bpf/bpf_helpers.h");
    let candidates = if helpers.exists() {
        candidates
    } else {
        why = format!("{} is missing (package libbpf-dev)", helpers.display());
        Vec::new()
    };
    'compilers: for clang in &candidates {
        for (source, object) in &programs {
            let result = Command::new(clang)
                .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
                // asm/types.h, which linux/types.h includes, lives under the
                // multiarch directory on Debian.
                .arg(format!("-I/usr/include/{}-linux-gnu", arch()))
                .args(["-c", source, "-o"])
                .arg(object)
                .output();
            match result {
                Ok(o) if o.status.success() => {}
                Ok(o) => {
                    // A compiler that is there but fails is a bug in the
                    // program: stop the build and show clang's message.
                    panic!(
                        "{clang} failed to compile {source}:\n{}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
                Err(e) => {
                    if !why.is_empty() {
                        why.push_str(", ");
                    }
                    why.push_str(&format!("{clang}: {e}"));
                    continue 'compilers;
                }
            }
        }
        println!("cargo:rustc-env=FLOWSPAN_BPF_WHY=");
        return;
    }
    for (_, object) in &programs {
        std::fs::write(object, b"").expect("writing the empty object");
    }
    println!("cargo:rustc-cfg=flowspan_no_bpf");
    println!(
        "cargo:rustc-env=FLOWSPAN_BPF_WHY=this engine was built without its eBPF programs \
         ({why}); install clang-14 and libbpf-dev (apt-get install clang-14 libbpf-dev) and rebuild"
    );
    println!("cargo:warning=eBPF backend left out: {why}");
}

fn arch() -> String {
    match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") | Err(_) => "x86_64".into(),
        Ok("aarch64") => "aarch64".into(),
        Ok(other) => other.into(),
    }
}
