//! Compiles `bpf/floor.bpf.c` (the programs of `ebpf-bench --floor`) with
//! clang into `$OUT_DIR`, as capture-ebpf's build script compiles the
//! engine's programs. Without clang or libbpf-dev the benches still build:
//! the object is empty and `ebpf-bench --floor` says why.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=bpf/floor.bpf.c");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("floor.bpf.o");
    let candidates: Vec<String> = match env::var("CLANG") {
        Ok(c) => vec![c],
        Err(_) => vec!["clang-14".into(), "clang".into()],
    };
    let mut why = Vec::new();
    if !PathBuf::from("/usr/include/bpf/bpf_helpers.h").exists() {
        why.push("/usr/include/bpf/bpf_helpers.h is missing (package libbpf-dev)".to_owned());
    } else {
        let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
        for clang in &candidates {
            let result = Command::new(clang)
                .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
                .arg(format!("-I/usr/include/{arch}-linux-gnu"))
                .args(["-c", "bpf/floor.bpf.c", "-o"])
                .arg(&object)
                .output();
            match result {
                Ok(o) if o.status.success() => {
                    println!("cargo:rustc-env=FLOWSPAN_FLOOR_WHY=");
                    return;
                }
                Ok(o) => panic!(
                    "{clang} failed to compile bpf/floor.bpf.c:\n{}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => why.push(format!("{clang}: {e}")),
            }
        }
    }
    std::fs::write(&object, b"").expect("writing the empty object");
    println!(
        "cargo:rustc-env=FLOWSPAN_FLOOR_WHY=built without the floor programs ({})",
        why.join(", ")
    );
}
