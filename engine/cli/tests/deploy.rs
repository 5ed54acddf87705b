//! Packaging (issue 19): the Kubernetes manifests in deploy/kubernetes are
//! accepted by a real API server with strict server-side validation (and a
//! misspelt field is not), the ServiceAccount gets read access to what
//! enrichment reads and nothing more, the ConfigMap's config is a config the
//! engine accepts with the port the probes use; the systemd unit passes
//! `systemd-analyze verify` without a warning; deploy/install.sh installs
//! the binary, man page, completions, unit and config.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::apiserver::ApiServer;
use common::{root, skip};
use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    common::scratch("deploy", name)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_manifests_are_accepted_by_a_real_api_server() {
    let Some(server) = ApiServer::start("deploy", None, 16530) else {
        return;
    };
    let manifests = root().join("deploy/kubernetes");
    let dir = manifests.to_str().expect("path");
    // Strict server-side validation: a dry run (in the namespace, which
    // a dry run does not create), then for real.
    let ns = server.kubectl(
        &[
            "apply",
            "--validate=strict",
            "-f",
            &format!("{dir}/00-namespace.yaml"),
        ],
        None,
    );
    assert!(ns.status.success(), "{}", text(&ns.stderr));
    let dry = server.kubectl(
        &["apply", "--dry-run=server", "--validate=strict", "-f", dir],
        None,
    );
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let applied = server.kubectl(&["apply", "--validate=strict", "-f", dir], None);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let out = text(&applied.stdout);
    for object in [
        "namespace/flowspan",
        "serviceaccount/flowspan",
        "clusterrole.rbac.authorization.k8s.io/flowspan",
        "clusterrolebinding.rbac.authorization.k8s.io/flowspan",
        "configmap/flowspan",
        "daemonset.apps/flowspan",
    ] {
        assert!(out.contains(object), "{object} in {out}");
    }

    // The validation is real: a misspelt field is refused.
    let daemonset = std::fs::read_to_string(manifests.join("daemonset.yaml")).expect("manifest");
    let misspelt = daemonset.replace("hostNetwork: true", "hostNetwrk: true");
    let refused = server.kubectl(
        &["apply", "--dry-run=server", "--validate=strict", "-f", "-"],
        Some(&misspelt),
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("hostNetwrk"),
        "{}",
        text(&refused.stderr)
    );

    // What the server stored: host network, capabilities instead of
    // privileged, probes on the health endpoints, scrape annotations,
    // limits.
    let got = server.kubectl(
        &[
            "get",
            "daemonset",
            "flowspan",
            "-n",
            "flowspan",
            "-o",
            "json",
        ],
        None,
    );
    assert!(got.status.success(), "{}", text(&got.stderr));
    let ds: Value = serde_json::from_slice(&got.stdout).expect("JSON");
    let pod = &ds["spec"]["template"];
    assert_eq!(pod["spec"]["hostNetwork"], true);
    let c = &pod["spec"]["containers"][0];
    let security = &c["securityContext"];
    assert_eq!(security["privileged"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        security["capabilities"]["add"],
        serde_json::json!(["NET_RAW", "SYS_PTRACE", "SYS_ADMIN"])
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["ports"][0]["containerPort"], 9615);
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert!(c["resources"]["requests"]["cpu"].is_string());
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9615");

    // Least rights: what enrichment reads, read-only, nothing else.
    let answer = |verb: &str, what: &str, more: &[&str]| {
        let mut args = vec![
            "auth",
            "can-i",
            verb,
            what,
            "--as=system:serviceaccount:flowspan:flowspan",
        ];
        args.extend_from_slice(more);
        text(&server.kubectl(&args, None).stdout).trim().to_owned()
    };
    for what in [
        "pods",
        "services",
        "endpoints",
        "nodes",
        "namespaces",
        "replicasets.apps",
        "deployments.apps",
        "statefulsets.apps",
        "daemonsets.apps",
        "jobs.batch",
        "cronjobs.batch",
        "networkpolicies.networking.k8s.io",
    ] {
        for verb in ["get", "list", "watch"] {
            assert_eq!(answer(verb, what, &[]), "yes", "{verb} {what}");
        }
        for verb in ["create", "update", "patch", "delete"] {
            assert_eq!(
                answer(verb, what, &[]),
                "no",
                "{verb} {what} must be refused"
            );
        }
    }
    for what in ["secrets", "configmaps", "leases.coordination.k8s.io"] {
        assert_eq!(answer("get", what, &[]), "no", "get {what} must be refused");
    }
    assert_eq!(
        answer("create", "pods", &["--subresource=exec"]),
        "no",
        "exec into pods must be refused"
    );

    // The ConfigMap's config is one the engine accepts, and it serves the
    // port the probes and annotations name.
    let cm = server.kubectl(
        &[
            "get",
            "configmap",
            "flowspan",
            "-n",
            "flowspan",
            "-o",
            "json",
        ],
        None,
    );
    let cm: Value = serde_json::from_slice(&cm.stdout).expect("JSON");
    let config = cm["data"]["config.yaml"].as_str().expect("config.yaml");
    let scratch = scratch("configmap");
    let file = scratch.join("config.yaml");
    std::fs::write(&file, config).expect("config");
    let printed = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["--config", file.to_str().expect("path"), "--print-config"])
        .output()
        .expect("engine");
    assert!(printed.status.success(), "{}", text(&printed.stderr));
    let printed = text(&printed.stdout);
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("metrics-address: ':9615'")),
        "{printed}"
    );
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("k8s-in-cluster: true")),
        "{printed}"
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("systemd-analyze is missing (Debian's systemd package)");
        return;
    }
    let dir = scratch("systemd");
    let unit =
        std::fs::read_to_string(root().join("deploy/systemd/flowspan.service")).expect("unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/engine --config /etc/flowspan/config.yaml"));
    // verify checks that ExecStart's program exists: the one built here
    // stands in for the installed one; every other line is as shipped.
    let verify = |name: &str, unit: &str| {
        let path = dir.join(name);
        std::fs::write(&path, unit).expect("unit");
        Command::new("systemd-analyze")
            .args(["verify", path.to_str().expect("path")])
            .output()
            .expect("systemd-analyze")
    };
    let here = unit.replace("/usr/local/bin/engine", env!("CARGO_BIN_EXE_engine"));
    let out = verify("flowspan.service", &here);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "no warning");
    for directive in [
        "CapabilityBoundingSet=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(directive), "{directive}");
    }
    // And a mistake would be seen.
    let broken = here.replace("ProtectSystem=strict", "ProtectSytem=strict");
    let out = verify("broken.service", &broken);
    assert!(text(&out.stderr).contains("ProtectSytem"), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn install_sh_installs_the_binary_docs_unit_and_config() {
    let dest = scratch("install");
    let bin = Path::new(env!("CARGO_BIN_EXE_engine"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let out = Command::new(root().join("deploy/install.sh"))
        .arg(&dest)
        .env("FLOWSPAN_BIN_DIR", &bin)
        .output()
        .expect("install.sh");
    assert!(out.status.success(), "{}", text(&out.stderr));
    for file in [
        "usr/local/bin/engine",
        "usr/local/share/man/man1/engine.1",
        "usr/share/bash-completion/completions/engine",
        "usr/share/zsh/vendor-completions/_engine",
        "usr/share/fish/vendor_completions.d/engine.fish",
        "etc/systemd/system/flowspan.service",
        "etc/flowspan/config.yaml",
    ] {
        let meta = std::fs::metadata(dest.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(meta.len() > 100, "{file}: {} bytes", meta.len());
    }
    let man = std::fs::read_to_string(dest.join("usr/local/share/man/man1/engine.1")).expect("man");
    assert!(
        man.contains("metrics\\-address"),
        "the man page has every flag"
    );
    // The example config is one the engine accepts.
    let printed = Command::new(dest.join("usr/local/bin/engine"))
        .args(["--print-config", "--config"])
        .arg(dest.join("etc/flowspan/config.yaml"))
        .output()
        .expect("engine");
    assert!(printed.status.success(), "{}", text(&printed.stderr));
    // A second install keeps an edited config.
    std::fs::write(dest.join("etc/flowspan/config.yaml"), "workers: 1\n").expect("edit");
    let again = Command::new(root().join("deploy/install.sh"))
        .arg(&dest)
        .env("FLOWSPAN_BIN_DIR", &bin)
        .output()
        .expect("install.sh");
    assert!(again.status.success());
    assert_eq!(
        std::fs::read_to_string(dest.join("etc/flowspan/config.yaml")).expect("config"),
        "workers: 1\n"
    );
    let _ = std::fs::remove_dir_all(&dest);
}
