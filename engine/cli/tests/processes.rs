//! Process attribution in live capture (as root, on a veth pair between two
//! namespaces of the test's own): a known process (python3) in one
//! namespace opens TCP connections to a server in the other while
//! `engine -i` captures. Connections that stay open across scans must all
//! carry the client's pid and name with either backend; of 100 short-lived
//! ones, a scan every second sees none (AF_PACKET: the test reports the
//! count), and the eBPF backend's connect tracepoint every one.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use capture_afpacket::testnet::{LEFT_IP, RIGHT_IP, Setup, VethPair};
use common::live::{interrupt, start_in};
use common::{attrs, spans};

const PORT: u16 = 7000;

/// A child killed (if still running) when dropped: a failed assertion
/// leaves no server behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// python3 running `script` in namespace `ns`; `ip netns exec` execs it,
/// so the child's pid is python's.
fn python(ns: &str, script: &str) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3")
}

/// A server that accepts and reads until the peer closes, one thread per
/// connection; prints "ready" once listening.
fn server_script() -> String {
    format!(
        "import socket, threading\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{RIGHT_IP}', {PORT})); s.listen(512); print('ready', flush=True)\n\
         def serve(c):\n    \
             while c.recv(4096): pass\n    \
             c.close()\n\
         while True:\n    \
             c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()\n"
    )
}

/// `long` connections held open for 3 s together, then `short` ones
/// opened, written to and closed one after the other; each from its own
/// source port, which the script prints, "long" or "short" first.
fn client_script(long: usize, short: usize) -> String {
    format!(
        "import socket, time\n\
         held = []\n\
         for i in range({long}):\n    \
             c = socket.create_connection(('{RIGHT_IP}', {PORT})); c.sendall(b'x')\n    \
             print('long', c.getsockname()[1], flush=True); held.append(c)\n\
         time.sleep(3)\n\
         for c in held: c.close()\n\
         for i in range({short}):\n    \
             c = socket.create_connection(('{RIGHT_IP}', {PORT})); c.sendall(b'x')\n    \
             print('short', c.getsockname()[1], flush=True); c.close()\n"
    )
}

/// Runs the connections with `engine -i b EXTRA…` capturing; returns, for
/// the long and the short connections, how many spans had the client's pid
/// and name, how many the server's (the client's socket unseen: the span's
/// process is then the destination's), and the number of spans.
fn attributed(ns: &VethPair, extra: &[&str]) -> [(usize, usize, usize); 2] {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!(
        "flowspan-proc-{}-{}",
        extra.len(),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("spans.json");
    let o = out.to_str().expect("UTF-8");
    let mut server = Killed(python(&ns.right, &server_script()));
    let mut line = String::new();
    std::io::BufReader::new(server.0.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("server ready");
    assert_eq!(line.trim(), "ready");
    let mut args = vec!["-i", &ns.b, "-o", o, "--idle-timeout", "5"];
    args.extend_from_slice(extra);
    let (engine, reader) = start_in(ns, &args);
    let server_pid = server.0.id();
    let client = python(&ns.left, &client_script(10, 100));
    let pid = client.id();
    let printed = client.wait_with_output().expect("client");
    assert!(printed.status.success());
    std::thread::sleep(Duration::from_secs(3));
    let (status, stderr) = interrupt(engine, reader);
    drop(server);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("  processes: "))
        .unwrap_or_else(|| panic!("no processes line: {stderr}"));
    eprintln!("{extra:?}: {summary}");
    for l in stderr.lines().filter(|l| l.contains("warning")) {
        eprintln!("{extra:?}: {l}");
    }
    let ports: Vec<(String, u16)> = String::from_utf8_lossy(&printed.stdout)
        .lines()
        .filter_map(|l| {
            let (kind, port) = l.split_once(' ')?;
            Some((kind.to_owned(), port.parse().ok()?))
        })
        .collect();
    assert_eq!(ports.len(), 110, "the client's connections");
    let output = std::fs::read(&out).expect("engine output");
    let _ = std::fs::remove_dir_all(&dir);
    let mut counts = [(0, 0, 0); 2];
    for span in spans(&output) {
        let a = attrs(&span);
        let text = |k: &str| {
            a.get(k)
                .and_then(|v| v["stringValue"].as_str())
                .map(str::to_owned)
        };
        let int = |k: &str| {
            a.get(k)
                .and_then(|v| v["intValue"].as_str()?.parse::<u32>().ok())
        };
        if text("source.address").as_deref() != Some(LEFT_IP)
            || int("destination.port") != Some(u32::from(PORT))
        {
            continue;
        }
        let port = int("source.port").expect("source.port") as u16;
        let Some((kind, _)) = ports.iter().find(|(_, p)| *p == port) else {
            continue;
        };
        let slot = usize::from(kind == "short");
        counts[slot].2 += 1;
        let (got_pid, name) = (int("process.pid"), text("process.executable.name"));
        match got_pid {
            Some(p) if p == pid && name.as_deref() == Some("python3") => counts[slot].0 += 1,
            Some(p) if p == server_pid && name.as_deref() == Some("python3") => counts[slot].1 += 1,
            None => {}
            // Never a third process.
            Some(other) => panic!(
                "port {port}: pid {other} ({name:?}), not the client's {pid} nor the server's {server_pid}"
            ),
        }
    }
    counts
}

#[test]
fn connections_are_attributed_to_the_process_that_opened_them() {
    let setup = Setup {
        addresses: true,
        ..Setup::default()
    };
    let Some(ns) = VethPair::for_test("proc", setup) else {
        return;
    };
    let mut report = Vec::new();
    let ebpf = capture_ebpf::available();
    let backends: &[(&str, &[&str])] = &[("afpacket", &[]), ("ebpf", &["--backend", "ebpf"])];
    for (name, extra) in backends {
        if *name == "ebpf"
            && let Err(e) = &ebpf
        {
            capture_afpacket::testnet::skip(&e.to_string());
            continue;
        }
        let [(long_ok, _, long), (short_ok, short_server, short)] = attributed(&ns, extra);
        assert_eq!(long, 10, "{name}: a span per long connection");
        assert_eq!(
            long_ok, 10,
            "{name}: every long connection attributed to the client"
        );
        assert_eq!(short, 100, "{name}: a span per short connection");
        if *name == "ebpf" {
            // The connect tracepoint names the process of every connection.
            assert_eq!(
                short_ok, 100,
                "{name}: every short connection attributed to the client"
            );
        }
        report.push(format!(
            "{name}: long-lived {long_ok}/{long} with the client's pid and name; short-lived \
             {short_ok}/{short} with the client's, {short_server} with the server's (whose \
             listening socket every scan sees)"
        ));
    }
    // The figures the README gives.
    eprintln!("process attribution: {}", report.join("; "));
}
