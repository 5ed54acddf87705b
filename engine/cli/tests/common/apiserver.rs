//! A real Kubernetes API server for tests: etcd and kube-apiserver started
//! by `../shared/tools/k8s-test-apiserver.sh` (built by
//! `install-kube-apiserver.sh`), optionally inside a network namespace, with
//! the generated cluster of `testdata/k8s/cluster.json` created through the
//! API. There is no kubelet: pod and node statuses are written through the
//! status subresource, as a kubelet would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use super::{root, skip};

/// A running API server; stopped (and its files removed) on drop.
#[derive(Debug)]
pub struct ApiServer {
    ns: Option<String>,
    dir: PathBuf,
    port: u16,
    apiserver: PathBuf,
}

fn script() -> PathBuf {
    root().join("../shared/tools/k8s-test-apiserver.sh")
}

/// The kube-apiserver binary `install-kube-apiserver.sh` built.
fn apiserver_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBE_APISERVER") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/k8s-test-apiserver/bin/kube-apiserver")
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl ApiServer {
    /// Starts a server named `tag` on ports `port`, `port + 1` and
    /// `port + 2` (API, etcd clients, etcd peers), inside namespace `ns`
    /// if given. `None` when the tools are missing (outside CI; in CI that
    /// fails the test).
    pub fn start(tag: &str, ns: Option<&str>, port: u16) -> Option<ApiServer> {
        let apiserver = apiserver_binary();
        let missing: Vec<&str> = [
            (!apiserver.is_file()).then_some("kube-apiserver"),
            (!on_path("etcd")).then_some("etcd"),
            (!on_path("kubectl")).then_some("kubectl"),
            (!on_path("openssl")).then_some("openssl"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !missing.is_empty() {
            skip(&format!(
                "{} not installed (../shared/tools/install-kube-apiserver.sh builds kube-apiserver \
                 and installs etcd): tests against a real API server",
                missing.join(", ")
            ));
            return None;
        }
        let dir = std::env::temp_dir().join(format!("flowspan-k8s-{tag}-{}", std::process::id()));
        let server = ApiServer {
            ns: ns.map(str::to_owned),
            dir,
            port,
            apiserver,
        };
        server.start_again();
        Some(server)
    }

    fn script(&self, action: &str) -> Output {
        let mut c = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(script());
                c
            }
            None => Command::new(script()),
        };
        c.arg(action)
            .env("K8S_TEST_DIR", &self.dir)
            .env("KUBE_APISERVER", &self.apiserver)
            .env("K8S_TEST_API_PORT", self.port.to_string())
            .env("K8S_TEST_ETCD_PORT", (self.port + 1).to_string())
            .env("K8S_TEST_ETCD_PEER_PORT", (self.port + 2).to_string())
            // The generated cluster's services are in 10.96.0.0/16.
            .env("K8S_TEST_SERVICE_CIDR", "10.96.0.0/16")
            .output()
            .expect("running k8s-test-apiserver.sh")
    }

    /// Starts it (after [`ApiServer::stop`]: with an empty etcd).
    pub fn start_again(&self) {
        let out = self.script("start");
        assert!(
            out.status.success(),
            "k8s-test-apiserver.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops etcd and the API server; etcd's data goes with them.
    pub fn stop(&self) {
        let out = self.script("stop");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The kubeconfig of the administrator.
    pub fn admin(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// The kubeconfig of the agent's user, `flow-agent`, which has only
    /// what [`ApiServer::grant_agent`] gives it.
    pub fn agent(&self) -> String {
        self.dir
            .join("agent.kubeconfig")
            .to_str()
            .expect("UTF-8 path")
            .to_owned()
    }

    /// Runs `kubectl ARGS` as the administrator, with `input` on stdin.
    pub fn kubectl(&self, args: &[&str], input: Option<&str>) -> Output {
        use std::io::Write;
        let mut c = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "kubectl"]);
                c
            }
            None => Command::new("kubectl"),
        };
        let mut child = c
            .arg("--kubeconfig")
            .arg(self.admin())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        let mut stdin = child.stdin.take().expect("stdin");
        if let Some(input) = input {
            stdin.write_all(input.as_bytes()).expect("kubectl stdin");
        }
        drop(stdin);
        child.wait_with_output().expect("kubectl")
    }

    fn kubectl_ok(&self, args: &[&str], input: Option<&str>) -> String {
        let out = self.kubectl(args, input);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Binds deploy/kubernetes/clusterrole.yaml to the agent's user.
    pub fn grant_agent(&self) {
        let role = std::fs::read_to_string(root().join("deploy/kubernetes/clusterrole.yaml"))
            .expect("deploy/kubernetes/clusterrole.yaml");
        self.kubectl_ok(&["apply", "-f", "-"], Some(&role));
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": { "name": "flowspan" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "flowspan" },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "flow-agent" }]
        });
        self.kubectl_ok(&["apply", "-f", "-"], Some(&binding.to_string()));
    }

    /// Creates `item` (an object as a List holds it, status included)
    /// through the API, then writes its status as a kubelet would.
    pub fn create(&self, item: &Value) {
        let mut object = item.clone();
        let status = object.as_object_mut().and_then(|o| o.remove("status"));
        let out = self.kubectl(&["create", "-f", "-"], Some(&object.to_string()));
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && item["kind"] == "CronJob" && err.contains("no matches for kind")
        {
            // Kubernetes before 1.21 serves CronJobs as batch/v1beta1 only.
            object["apiVersion"] = json!("batch/v1beta1");
            self.kubectl_ok(&["create", "-f", "-"], Some(&object.to_string()));
        } else {
            assert!(
                out.status.success(),
                "creating {}: {err}",
                item["metadata"]["name"]
            );
        }
        let kind = item["kind"].as_str().unwrap_or("");
        if let Some(status) = status
            && (kind == "Pod" || kind == "Node")
        {
            let name = item["metadata"]["name"].as_str().expect("name");
            let mut args = vec!["patch", kind, name, "--subresource=status", "--type=merge"];
            let ns = item["metadata"]["namespace"].as_str();
            if let Some(ns) = ns {
                args.extend(["-n", ns]);
            }
            let patch = json!({ "status": status }).to_string();
            args.extend(["-p", &patch]);
            self.kubectl_ok(&args, None);
        }
    }

    /// Deletes the object of `kind` named `name` in `ns`, at once.
    pub fn delete(&self, kind: &str, ns: &str, name: &str) {
        self.kubectl_ok(
            &[
                "delete",
                kind,
                name,
                "-n",
                ns,
                "--grace-period=0",
                "--force",
            ],
            None,
        );
    }

    /// Creates every object of the generated cluster but the `kube-system`
    /// namespace (the server has it).
    pub fn create_cluster(&self) {
        let list: Value = serde_json::from_str(&flowspan_testdata::kubernetes::cluster_json())
            .expect("cluster JSON");
        for item in list["items"].as_array().expect("items") {
            if item["kind"] == "Namespace" && item["metadata"]["name"] == "kube-system" {
                continue;
            }
            self.create(item);
        }
    }

    /// What `kubectl get … -A -o json` lists of the kinds enrichment uses:
    /// a snapshot file's contents.
    pub fn snapshot(&self) -> String {
        self.kubectl_ok(
            &[
                "get",
                "pods,services,endpoints,nodes,namespaces,replicasets,deployments,statefulsets,\
                 daemonsets,jobs,cronjobs,networkpolicies",
                "-A",
                "-o",
                "json",
            ],
            None,
        )
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.script("stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
