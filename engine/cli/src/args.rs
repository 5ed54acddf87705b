//! The `engine` binary's flags: what each means, its checks, and the
//! settings derived from them (the flow limit, the decoder). A library of
//! its own so that the fuzz targets can parse arbitrary command lines.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::thread;

use clap::Parser;
use engine::decode::{Decoder, TunnelPorts, UdpTunnel};
use engine::{FLOW_BYTES, FlowConfig, IpNet};
use exporter::select::Condition;
use exporter::span::OptIn;

pub const AFTER_HELP: &str = "\
Default timeouts: idle TCP 300 s, UDP 60 s, ICMP/ICMPv6 30 s, other protocols 60 s,
and 120 s (or the protocol's, if shorter) for flows that have not got going (TCP before
its handshake completes, any flow with one packet); active 60 s; TCP end of flow (FIN
from both sides, or RST) 2 s of linger.

OTLP export is on when an endpoint is given (--otlp-endpoint, OTEL_EXPORTER_OTLP_ENDPOINT
or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); JSON is then written only with -o. Also read:
OTEL_EXPORTER_OTLP_[TRACES_]{PROTOCOL,HEADERS,COMPRESSION,TIMEOUT (ms),CERTIFICATE,
CLIENT_CERTIFICATE,CLIENT_KEY}, OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME. Flags win.
Capture files are never dropped from: reading waits while the collector is away. On
end of input or SIGINT/SIGTERM the queue is flushed for up to --shutdown-timeout; a
second signal stops waiting. Spans not delivered are counted and reported.

Live capture (-i, needs CAP_NET_RAW) runs until SIGINT or SIGTERM, which flush every open
flow (forced_end) and exit 0; with OTLP export it drops spans beyond --queue-size rather
than stall. Its flow state is bounded by --flow-memory (256M by default).

Every flag is also a key of the YAML config file (--config) and a FLOWSPAN_* variable
(--workers: `workers:`, FLOWSPAN_WORKERS); defaults < file < environment < flags.
--print-config shows what is in force and where each value came from. SIGHUP reads the
file again.

Exit status: 0 success; 1 the capture is damaged (the error names the record and byte;
flows from the records before it were written), a file of several could not be read, or
every live interface went away (without an -i pattern); 2 bad flags, settings or
environment, or the input or output could not be opened, or the input is not a capture;
3 some spans were not delivered to the collector (takes precedence over 1 and 130); 130
interrupted by SIGINT or SIGTERM (open flows were flushed as forced_end).

Examples:
  engine --pcap trace.pcap                      # OTLP JSON on stdout
  engine --pcap trace.pcapng -o spans.json --local-net 10.0.0.0/8
  engine --pcap trace.pcap --otlp-endpoint http://localhost:4317
  OTEL_EXPORTER_OTLP_ENDPOINT=https://otel:4318 OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \\
    OTEL_EXPORTER_OTLP_HEADERS='authorization=Bearer%20TOKEN' engine --pcap trace.pcap
  tcpdump -w - -i eth0 | engine --pcap -
  engine --pcap 'trace-*.pcap'                  # rotated files, merged in time order
  engine -i eth0 -o spans.json                  # live, until Ctrl-C
  engine -i eth0 -i 'veth*' --metrics-address :9615   # a node agent
  engine --config /etc/flowspan/config.yaml";

/// `engine --version`: the package version and the git revision built
/// (`-dirty` when files differed from it; `unknown` outside a checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("FLOWSPAN_GIT_REV"),
    ")"
);

/// Capture files in, OpenTelemetry flow spans out (OTLP JSON, OTLP/gRPC, OTLP/HTTP).
#[derive(Debug, Parser)]
#[command(
    name = "engine",
    version = VERSION,
    about = "Capture files or live interfaces in, one OpenTelemetry span per flow record out: OTLP JSON, or OTLP/gRPC and OTLP/HTTP to a collector.",
    after_help = AFTER_HELP,
    group(clap::ArgGroup::new("input").required(true).args(["pcap", "interfaces"]))
)]
pub struct Args {
    /// Capture file to read (pcap or pcapng, any byte order); `-` reads standard input.
    /// Repeat it, or give a glob pattern (`'trace-*.pcap'`, quoted), to read several
    /// files merged in packet-time order as one stream, as mergecap joins them: flows
    /// go on across files, and a file that cannot be read, or is damaged part-way, is
    /// reported and left out from there while the others go on (exit status 1). A
    /// regular file is mapped into memory and read in place; if another program may
    /// truncate it during the run, pipe it in instead (`--pcap - < FILE`), since
    /// truncating a mapped file kills the reader (SIGBUS).
    #[arg(long, value_name = "FILE")]
    pub pcap: Vec<PathBuf>,

    /// Capture live on this interface (repeatable), or on every interface whose name
    /// matches a glob pattern (`'veth*'`, quoted): those that appear later are attached,
    /// and those that go away detached with their flows ended. Runs until SIGINT or
    /// SIGTERM, which flush every open flow (`forced_end`) and exit 0. Needs
    /// CAP_NET_RAW.
    #[arg(
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        help_heading = "Live capture"
    )]
    pub interfaces: Vec<String>,

    /// Live capture backend.
    #[arg(long, value_enum, default_value_t = Backend::Afpacket, help_heading = "Live capture")]
    pub backend: Backend,

    /// Bytes per ring block (a multiple of 4096 from 1 MiB, so that offloaded
    /// super-frames fit, to 64 MiB). Each interface has one ring per worker; all
    /// rings together may take at most 4 GiB, and at most a quarter of the
    /// memory available.
    #[arg(allow_negative_numbers = true, long, value_name = "BYTES", default_value_t = 2 << 20, value_parser = parse_block_size,
          help_heading = "Live capture")]
    pub ring_block_size: u32,

    /// Blocks per ring.
    #[arg(allow_negative_numbers = true, long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=65_536),
          help_heading = "Live capture")]
    pub ring_blocks: u32,

    /// What a flow whose packets cross several of the -i interfaces (a pod's veth and
    /// the uplink) becomes. `separate`: one flow, and so one span per record, per
    /// interface, each saying which (`network.interface.*`). `first`: one flow in
    /// total, kept by the interface its first packet was seen on; its packets on the
    /// other interfaces are left out and counted as duplicates.
    #[arg(long, value_enum, default_value_t = InterfaceFlowsArg::Separate, help_heading = "Live capture")]
    pub interface_flows: InterfaceFlowsArg,

    /// eBPF backend: flow map entries. The kernel allocates them all when the programs
    /// load, 424 bytes each (the default takes 27 MiB), memory no cgroup is
    /// charged for; at most 4194304 and a quarter of the memory available. A new flow
    /// finding the map full goes to userspace packet by packet (counted).
    #[arg(allow_negative_numbers = true, long, value_name = "N", default_value_t = 65_536,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(capture_ebpf::MAX_FLOWS)),
          help_heading = "Live capture")]
    pub ebpf_flows: u32,

    /// eBPF backend: bytes of the ring buffer that carries packets the kernel does not
    /// count to userspace (a power of two from 64K to 1G; suffixes K, M, G). A packet
    /// finding it full is counted as lost.
    #[arg(allow_negative_numbers = true, long, value_name = "BYTES", default_value = "8M",
          value_parser = parse_ebpf_ring, help_heading = "Live capture")]
    pub ebpf_ring_size: u32,

    /// eBPF backend: how to attach the programs. `auto`: TCX links on Linux 6.6 and
    /// later (they go with the process, even when it is killed), filters on a clsact
    /// qdisc before (removed at exit, and at the next start after a kill).
    #[arg(long, value_enum, default_value_t = EbpfAttach::Auto, help_heading = "Live capture")]
    pub ebpf_attach: EbpfAttach,

    /// eBPF backend: also read the whole flow map this often, in seconds (decimals
    /// allowed; 0: never). The engine reads an entry when something can be due for
    /// it (its idle timeout or TCP linger past, an active-timeout record next), and
    /// the whole map at exit and after lost notices; this adds periodic full reads,
    /// which cost CPU in proportion to the open flows.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value = "0",
          value_parser = parse_secs, help_heading = "Live capture")]
    pub ebpf_scan_interval: u64,

    /// How often to ask the kernel again for the host's addresses and listening
    /// sockets, which make flows the host answers SERVER spans and flows it opens
    /// CLIENT spans (decimals allowed).
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value = "1", value_parser = parse_positive_secs,
          help_heading = "Live capture")]
    pub host_refresh: u64,

    /// Do not attribute flows to the processes whose sockets they use
    /// (process.pid, process.executable.name and, for a container's process,
    /// container.name). Live capture scans /proc and every network namespace's
    /// sockets each --host-refresh otherwise; joining a namespace needs
    /// CAP_SYS_ADMIN.
    #[arg(long, help_heading = "Live capture")]
    pub no_processes: bool,

    /// Write OTLP JSON to FILE (`-` for standard output). Without it, JSON goes to
    /// standard output unless spans are exported over OTLP.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Flow-table worker threads. Output is byte-identical for any value.
    #[arg(allow_negative_numbers = true, long, value_name = "N", default_value_t = default_workers(),
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,

    /// Idle timeout for every protocol, in seconds (decimals allowed).
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", value_parser = parse_positive_secs)]
    pub idle_timeout: Option<u64>,

    /// Active timeout in seconds: open flows emit a record this often; 0 disables.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub active_timeout: u64,

    /// Idle timeout of flows that have not got going, in seconds: TCP flows
    /// before their handshake completes, and flows of any protocol with one
    /// packet. A protocol's own idle timeout applies if it is shorter.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value = "120", value_parser = parse_positive_secs)]
    pub unestablished_timeout: u64,

    /// Memory for flow state, e.g. 512M or 2G (bytes without a suffix): the
    /// flow limit is this divided by 300 bytes a flow. A new flow beyond it
    /// ends one with `lack_of_resources`: the least recently seen that has not
    /// got going, else the least recently seen. Default: 256M for live
    /// capture, no limit for capture files (whose output then does not
    /// depend on --workers).
    #[arg(allow_negative_numbers = true, long, value_name = "SIZE", value_parser = parse_flow_memory,
          conflicts_with = "max_flows")]
    pub flow_memory: Option<u64>,

    /// The flow limit as a number of open flows instead of --flow-memory; 0 means
    /// no limit. Split evenly among workers.
    #[arg(allow_negative_numbers = true, long, value_name = "N", value_parser = parse_flow_count)]
    pub max_flows: Option<usize>,

    /// Community ID seed (0-65535).
    #[arg(
        allow_negative_numbers = true,
        long,
        value_name = "SEED",
        default_value_t = 0
    )]
    pub community_id_seed: u16,

    /// Network of the observing host (repeatable): flows that such an address
    /// answered become SERVER spans with flow.direction `reverse`. Live capture
    /// learns the host's own addresses and listening sockets from the kernel and
    /// takes these networks as local too.
    #[arg(long = "local-net", value_name = "CIDR")]
    pub local_nets: Vec<IpNet>,

    /// Write an opt-in attribute group of the specification (repeatable):
    /// `tunnel` (tunnel.type, tunnel.id, the tunnel's and the IP-in-IP header's
    /// addresses, ports, network.type and network.transport), `ipsec`
    /// (flow.ipsec.ah.spi, flow.ipsec.esp.spi, the WireGuard
    /// flow.ipsec.sender_index and receiver_index, tunnel.ipsec.ah.spi), `k8s-uid`
    /// (source/destination.k8s.*.uid with Kubernetes enrichment), `network-policy`
    /// (network.policy.ingress: the NetworkPolicies that select the destination
    /// pod for ingress; network.policy.egress: those that select the source pod
    /// for egress), or `all`.
    /// Tunnel byte counters and tunnel.network.interface.mac are always written.
    #[arg(long = "opt-in", value_name = "GROUP", value_enum)]
    pub opt_in: Vec<OptInGroup>,

    /// UDP ports of a tunnel protocol, as KIND=PORT[,PORT...] (repeatable), replacing
    /// that protocol's defaults: vxlan (4789,8472), geneve (6081), gtpu (2152),
    /// teredo (3544, either port); KIND=none stops looking for it. Packets in
    /// tunnels are the flows of the packets inside.
    #[arg(long = "tunnel-port", value_name = "KIND=PORTS", value_parser = parse_tunnel_ports)]
    pub tunnel_ports: Vec<(UdpTunnel, Vec<u16>)>,

    /// Capture filter in tcpdump's syntax (`tcp port 443`, `vlan and net 10.0.0.0/8`),
    /// compiled by libpcap, which is loaded only then (Debian package libpcap0.8). Also
    /// taken from the words after the options, as tcpdump takes it: `engine -i eth0 tcp
    /// port 443`. Every frame is filtered as `tcpdump -r` filters a capture file, with
    /// its link-layer header and any VLAN tag in place (tagged traffic needs `vlan and
    /// …`). Live capture applies it in the kernel: AF_PACKET as a socket filter (packets it
    /// leaves out never reach the rings), eBPF as a program of its own, translated from
    /// the same code, that runs before a packet is counted.
    #[arg(
        long,
        value_name = "EXPRESSION",
        help_heading = "Filtering and sampling"
    )]
    pub filter: Option<String>,

    /// The capture filter as words after the options (`engine --pcap F tcp port 443`);
    /// the same as --filter 'tcp port 443'.
    #[arg(value_name = "EXPRESSION", help_heading = "Filtering and sampling")]
    pub filter_words: Vec<String>,

    /// Write only spans that meet this condition on an attribute (repeatable: all must
    /// hold): NAME=VALUES or NAME!=VALUES, VALUES one or more, comma-separated, of an
    /// integer or range (`destination.port=8000-8999`), an address or network
    /// (`source.address=10.0.0.0/8`), or a string with `*` wildcards
    /// (`destination.k8s.namespace.name=team-*`). Checked on each span after
    /// enrichment; an attribute the span lacks equals nothing. Spans left out are
    /// counted.
    #[arg(long = "keep", value_name = "RULE", value_parser = parse_rule,
          help_heading = "Filtering and sampling")]
    pub keep: Vec<Condition>,

    /// Leave out spans that meet this condition (repeatable: any one drops), in the
    /// syntax of --keep: `--drop destination.k8s.namespace.name=kube-system`.
    #[arg(long = "drop", value_name = "RULE", value_parser = parse_rule,
          help_heading = "Filtering and sampling")]
    pub drop: Vec<Condition>,

    /// Keep 1 in N flows, chosen by a hash of the Community ID, so that agents that see
    /// the same connection keep or drop it together; the records of a kept flow are
    /// unchanged, and carry `flow.sampling.rate` = N. Flows left out are counted.
    #[arg(allow_negative_numbers = true, long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000_000),
          help_heading = "Filtering and sampling")]
    pub sample_flows: Option<u32>,

    /// Enrich endpoints from the Kubernetes objects in FILE, a List as
    /// `kubectl get pods,services,endpoints,nodes,namespaces,replicasets,deployments,statefulsets,daemonsets,jobs,cronjobs,networkpolicies -A -o json`
    /// writes it: the same spans on every run, for tests and post-mortems.
    #[arg(long, value_name = "FILE", help_heading = "Kubernetes")]
    pub k8s_snapshot: Option<PathBuf>,

    /// Enrich endpoints from the Kubernetes API server of this kubeconfig file's
    /// current context, kept current by watches. Needs get, list and watch on
    /// the kinds in deploy/kubernetes/clusterrole.yaml.
    #[arg(long, value_name = "FILE", help_heading = "Kubernetes",
          conflicts_with_all = ["k8s_snapshot", "k8s_in_cluster"])]
    pub kubeconfig: Option<PathBuf>,

    /// Enrich endpoints from the API server of the cluster this pod runs in,
    /// with its service account (a DaemonSet).
    #[arg(long, help_heading = "Kubernetes", conflicts_with = "k8s_snapshot")]
    pub k8s_in_cluster: bool,

    /// With --kubeconfig or --k8s-in-cluster: how long to wait at start for the
    /// first list of every kind before capturing; after it, flows are enriched
    /// with what has arrived (a warning says so).
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value = "10",
          value_parser = parse_secs, help_heading = "Kubernetes")]
    pub k8s_sync_timeout: u64,

    /// The cluster's name, written as source/destination.k8s.cluster.name on
    /// every enriched endpoint.
    #[arg(long, value_name = "NAME", help_heading = "Kubernetes")]
    pub k8s_cluster_name: Option<String>,

    /// An annotation key (repeatable) whose value is written as
    /// source/destination.k8s.KIND.annotations.KEY for the endpoint's node,
    /// pod, owners (KIND: deployment, replicaset, …) and service that carry it.
    #[arg(
        long = "k8s-annotation",
        value_name = "KEY",
        help_heading = "Kubernetes"
    )]
    pub k8s_annotations: Vec<String>,

    /// Spans per OTLP request (JSON line or export request).
    #[arg(allow_negative_numbers = true, long, value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,

    /// Resource attribute added to every request (repeatable); overrides
    /// OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME and the detected host.name/host.id.
    #[arg(long = "resource-attribute", value_name = "KEY=VALUE")]
    pub resource_attributes: Vec<String>,

    /// OTLP receiver base URL, e.g. http://localhost:4317 (gRPC) or
    /// http://localhost:4318 (HTTP, `/v1/traces` is appended). Turns export on.
    #[arg(long, value_name = "URL", help_heading = "OTLP export")]
    pub otlp_endpoint: Option<String>,

    /// grpc, http/protobuf or http/json [default: grpc].
    #[arg(long, value_name = "PROTOCOL", help_heading = "OTLP export")]
    pub otlp_protocol: Option<String>,

    /// Request header / gRPC metadata, e.g. `authorization=Bearer%20x` (repeatable;
    /// values are %-decoded).
    #[arg(
        long = "otlp-header",
        value_name = "KEY=VALUE",
        help_heading = "OTLP export"
    )]
    pub otlp_headers: Vec<String>,

    /// gzip or none [default: none].
    #[arg(long, value_name = "ALGORITHM", help_heading = "OTLP export")]
    pub otlp_compression: Option<String>,

    /// Time allowed for one export request, in seconds [default: 10].
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", value_parser = parse_positive_secs,
          help_heading = "OTLP export")]
    pub otlp_timeout: Option<u64>,

    /// PEM file of CA certificates to trust for an https:// endpoint (instead of the
    /// system's).
    #[arg(long, value_name = "FILE", help_heading = "OTLP export")]
    pub otlp_ca: Option<PathBuf>,

    /// PEM client certificate chain for mutual TLS (with --otlp-client-key).
    #[arg(long, value_name = "FILE", help_heading = "OTLP export")]
    pub otlp_client_cert: Option<PathBuf>,

    /// PEM private key of --otlp-client-cert.
    #[arg(long, value_name = "FILE", help_heading = "OTLP export")]
    pub otlp_client_key: Option<PathBuf>,

    /// Send a partly filled request once its oldest span has waited this long, in
    /// seconds.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value = "1", value_parser = parse_positive_secs,
          help_heading = "OTLP export")]
    pub batch_interval: u64,

    /// Export requests in flight at once.
    #[arg(allow_negative_numbers = true, long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=256),
          help_heading = "OTLP export")]
    pub otlp_concurrency: u16,

    /// Most spans waiting for delivery. When it is full, reading a capture file waits.
    #[arg(allow_negative_numbers = true, long, value_name = "SPANS", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000),
          help_heading = "OTLP export")]
    pub queue_size: u64,

    /// At exit, how long to keep delivering queued spans before giving up on them,
    /// in seconds.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value = "10", value_parser = parse_secs,
          help_heading = "OTLP export")]
    pub shutdown_timeout: u64,

    /// Also emit flow metrics (OpenTelemetry's metrics signal) made from the same
    /// records as the spans: flow.bytes and flow.packets by the way the packets
    /// travelled, flow.records by flow.end_reason, and TCP latency histograms, by
    /// the --metrics-dimension attributes. They go where the spans go: with an OTLP
    /// endpoint to its metrics service (`/v1/metrics`, OTEL_EXPORTER_OTLP_METRICS_*
    /// variables win), and as OTLP JSON lines into the JSON output. README "Flow
    /// metrics". (Not --metrics-address, which serves the engine's own Prometheus
    /// metrics.)
    #[arg(long, help_heading = "Flow metrics")]
    pub metrics: bool,

    /// A span attribute that tells metric series apart (repeatable; replaces the
    /// default: network.transport, network.type, flow.direction, and with Kubernetes
    /// enrichment each side's k8s.namespace.name and workload name). Addresses and
    /// ports only if named here: each value is a series of its own.
    #[arg(
        long = "metrics-dimension",
        value_name = "ATTRIBUTE",
        help_heading = "Flow metrics"
    )]
    pub metrics_dimensions: Vec<String>,

    /// Collection interval, in seconds, at least 0.001 [default:
    /// OTEL_METRIC_EXPORT_INTERVAL (milliseconds), else 60]. From a capture file it
    /// is packet time: a point per interval of the capture, the same on every run.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", value_parser = parse_positive_secs,
          help_heading = "Flow metrics")]
    pub metrics_interval: Option<u64>,

    /// cumulative, delta, or lowmemory (delta for everything measured here)
    /// [default: OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, else cumulative].
    #[arg(long, value_name = "TEMPORALITY", help_heading = "Flow metrics")]
    pub metrics_temporality: Option<String>,

    /// Series per collection at most, the overflow series included: dimension
    /// values beyond it are counted in one series with otel.metric.overflow=true,
    /// and a warning says so. Delta frees the slots every interval; cumulative
    /// keeps them for the run. Each series takes under 1 KB.
    #[arg(allow_negative_numbers = true, long, value_name = "N", default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(1..=exporter::metrics::MAX_CARDINALITY_LIMIT as i64),
          help_heading = "Flow metrics")]
    pub metrics_cardinality_limit: u32,

    /// Serve Prometheus metrics on /metrics, and health on /healthz (the
    /// process answers) and /readyz (capturing, every interface named by -i
    /// there, no OTLP export failing) at ADDRESS:PORT (`:PORT`: every IPv4
    /// address), for as long as the run lasts. README "Metrics" lists them.
    #[arg(long, value_name = "ADDRESS:PORT", value_parser = parse_metrics_address)]
    pub metrics_address: Option<SocketAddr>,

    /// Read settings from this YAML file (also FLOWSPAN_CONFIG): each flag's long
    /// name is a key (`workers: 4`, `interface: [eth0, 'veth*']`, `quiet: true`).
    /// Defaults < file < environment (FLOWSPAN_WORKERS=4 for --workers, a repeatable
    /// flag's values separated by spaces; OTEL_* for the OTLP settings) < flags.
    /// SIGHUP reads it again (README "Config file").
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration, each setting with where its value came
    /// from (default, file and line, variable or flag), as a config file, and exit.
    #[arg(long)]
    pub print_config: bool,

    /// What is said on standard error besides errors: `info` (warnings, and what the
    /// engine is doing: capturing on, serving on, interfaces that come and go,
    /// reloads), `warning` (warnings only) or `error` (nothing else). Errors, and
    /// spans lost, are always said. SIGHUP applies a new level.
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// No progress line and no summary on standard error (errors are still printed).
    #[arg(short, long)]
    pub quiet: bool,
}

/// A group of opt-in attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptInGroup {
    /// tunnel.* and ipip.* identity attributes.
    Tunnel,
    /// flow.ipsec.* and tunnel.ipsec.*.
    Ipsec,
    /// source/destination.k8s.*.uid.
    K8sUid,
    /// network.policy.ingress and network.policy.egress.
    NetworkPolicy,
    /// Every group.
    All,
}

/// Parses a --keep or --drop rule.
///
/// # Errors
/// The rule is not `NAME=VALUES` or `NAME!=VALUES` with values that parse.
pub fn parse_rule(s: &str) -> Result<Condition, String> {
    s.parse()
}

impl Args {
    /// The capture filter, from --filter or from the words after the
    /// options (`None` if neither).
    ///
    /// # Errors
    /// Both are given, or a word names a file (a capture file given
    /// without --pcap would otherwise be taken for a host name).
    pub fn filter_expression(&self) -> Result<Option<String>, String> {
        if let Some(w) = self
            .filter_words
            .iter()
            .find(|w| std::path::Path::new(w).is_file())
        {
            return Err(format!(
                "{w:?} is a file, not a filter expression; give each capture file with --pcap"
            ));
        }
        match (&self.filter, self.filter_words.is_empty()) {
            (Some(_), false) => Err(format!(
                "--filter and a filter after the options ({:?}) are both given; give one",
                self.filter_words.join(" ")
            )),
            (Some(f), true) => Ok(Some(f.clone())),
            (None, false) => Ok(Some(self.filter_words.join(" "))),
            (None, true) => Ok(None),
        }
    }
}

pub fn opt_in(groups: &[OptInGroup]) -> OptIn {
    let has = |g| groups.contains(&g) || groups.contains(&OptInGroup::All);
    OptIn {
        tunnel: has(OptInGroup::Tunnel),
        ipsec: has(OptInGroup::Ipsec),
    }
}

pub fn parse_tunnel_ports(s: &str) -> Result<(UdpTunnel, Vec<u16>), String> {
    let names = || {
        UdpTunnel::ALL
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (kind, ports) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KIND=PORT[,PORT...] (KIND one of {})", names()))?;
    let tunnel = UdpTunnel::ALL
        .into_iter()
        .find(|t| t.name() == kind)
        .ok_or_else(|| format!("{kind:?} is not a UDP tunnel; expected one of {}", names()))?;
    if ports == "none" {
        return Ok((tunnel, Vec::new()));
    }
    let ports = ports
        .split(',')
        .map(|p| match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{p:?} in {s:?} is not a UDP port (1-65535)")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((tunnel, ports))
}

pub fn decoder(args: &Args) -> Decoder {
    let mut tunnel_ports = TunnelPorts::default();
    for (tunnel, ports) in &args.tunnel_ports {
        tunnel_ports.set(*tunnel, ports);
    }
    Decoder { tunnel_ports }
}

/// `--log-level`, from the least said to the most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
#[repr(u8)]
pub enum LogLevel {
    /// Errors only.
    Error = 0,
    /// Errors and warnings.
    Warning = 1,
    /// Errors, warnings and notes.
    Info = 2,
}

/// Where live packets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// AF_PACKET TPACKET_V3 rings, one per worker, in a fanout group.
    Afpacket,
    /// eBPF TC programs that count flows in the kernel (README "eBPF backend").
    Ebpf,
}

/// `--interface-flows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InterfaceFlowsArg {
    /// One flow per interface.
    Separate,
    /// One flow in total, on the first interface.
    First,
}

/// How the eBPF programs are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EbpfAttach {
    /// TCX where the kernel has it, clsact otherwise.
    Auto,
    /// TCX links (Linux 6.6 and later).
    Tcx,
    /// Filters on a clsact qdisc (netlink).
    Clsact,
}

/// `--metrics-address`: `HOST:PORT`, `[IPv6]:PORT`, or `:PORT` for every
/// IPv4 address.
pub fn parse_metrics_address(s: &str) -> Result<SocketAddr, String> {
    let full = match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_owned(),
    };
    let expected = "expected ADDRESS:PORT, e.g. 0.0.0.0:9615, 127.0.0.1:9615, [::]:9615 or :9615";
    full.to_socket_addrs()
        .map_err(|e| format!("{s:?} is not an address to listen on ({e}); {expected}"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address; {expected}"))
}

/// `--ebpf-ring-size`: a power of two from 64 KiB to 1 GiB.
pub fn parse_ebpf_ring(s: &str) -> Result<u32, String> {
    let v = parse_size(s)?;
    if !(64 << 10..=1 << 30).contains(&v) || !v.is_power_of_two() {
        return Err(format!(
            "{s:?} is not a power of two from 64K to 1G (a ring buffer's size must be one)"
        ));
    }
    u32::try_from(v).map_err(|_| format!("{s:?} is too large"))
}

pub fn default_workers() -> u16 {
    thread::available_parallelism()
        .map(|n| u16::try_from(n.get()).unwrap_or(u16::MAX))
        .unwrap_or(1)
}

pub fn parse_secs(s: &str) -> Result<u64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err(format!(
            "{s:?} is out of range (expected 0 to 1000000000 seconds)"
        ));
    }
    Ok((v * 1e9).round() as u64)
}

pub fn parse_block_size(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    capture_afpacket::RingConfig::check_block_size(v)
        .map_err(|expected| format!("{v}: {expected}"))?;
    Ok(v)
}

pub fn parse_flow_count(s: &str) -> Result<usize, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a number of flows (a whole number, 0 or more)"))
}

/// Flow memory when live capture is not given --flow-memory or --max-flows.
pub const DEFAULT_LIVE_FLOW_MEMORY: u64 = 256 << 20;

/// A size in bytes: a number, optionally followed by K, M, G or T (powers
/// of 1024; `KiB`, `MiB`... and `KB`, `MB`... mean the same).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "{s:?} is not a size (expected a number of bytes, optionally followed by K, M, G or T, e.g. 512M)"
            ));
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size (expected e.g. 512M or 2G)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

pub fn parse_flow_memory(s: &str) -> Result<u64, String> {
    let bytes = parse_size(s)?;
    const MIN: u64 = 1 << 20;
    const MAX: u64 = 1 << 40;
    if !(MIN..=MAX).contains(&bytes) {
        return Err(format!("{s:?} is out of range (expected 1M to 1T)"));
    }
    Ok(bytes)
}

/// The flow limit over all workers (0: none), and what set it.
pub fn flow_limit(args: &Args) -> (usize, String) {
    let memory = |bytes: u64, how: &str| {
        (
            FlowConfig::flows_for_memory(bytes),
            format!(
                "{how}{} MiB at {FLOW_BYTES} bytes a flow",
                bytes as f64 / f64::from(1u32 << 20)
            ),
        )
    };
    match (args.max_flows, args.flow_memory) {
        (Some(0), _) => (0, "--max-flows 0".into()),
        (Some(n), _) => (n, "--max-flows".into()),
        (None, Some(bytes)) => memory(bytes, "--flow-memory "),
        (None, None) if args.pcap.is_empty() => {
            memory(DEFAULT_LIVE_FLOW_MEMORY, "default live --flow-memory ")
        }
        (None, None) => (0, "capture files have none by default".into()),
    }
}

pub fn parse_positive_secs(s: &str) -> Result<u64, String> {
    let ns = parse_secs(s)?;
    if ns == 0 {
        return Err(format!("{s:?} must be more than 0 seconds"));
    }
    Ok(ns)
}

/// A flag error as one line, for the prefix every error has (clap's own
/// rendering spreads it over several, with a usage block); `None` for help
/// and the version, which clap prints itself.
pub fn flag_error_line(e: &clap::Error) -> Option<String> {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return None;
    }
    Some(format!(
        "{} (engine --help lists every flag)",
        clap_message(e)
    ))
}

/// clap's complaint as one line, without its usage block.
pub fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut line = String::new();
    let mut in_usage = false;
    for l in text.lines() {
        let l = l.trim();
        if l.is_empty() {
            in_usage = false;
            continue;
        }
        if l.starts_with("Usage:") {
            in_usage = true;
        }
        if in_usage || l.starts_with("For more information") {
            continue;
        }
        let l = l.strip_prefix("error: ").unwrap_or(l);
        if !line.is_empty() {
            line.push_str(if l.starts_with("tip:") { "; " } else { " " });
        }
        line.push_str(l);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes_and_refuse_the_rest() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1kb"), Ok(1024));
        for bad in ["", "M", "1.5G", "-1M", "12Q", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert!(parse_size("18446744073709551615T").is_err(), "overflow");
        assert!(parse_flow_memory("512K").is_err(), "below 1M");
        assert!(parse_flow_memory("2T").is_err(), "above 1T");
    }

    #[test]
    fn the_flow_limit_defaults_to_a_budget_live_and_to_none_for_files() {
        let limit = |argv: &[&str]| {
            let args = Args::try_parse_from([&["engine"], argv].concat()).expect("valid flags");
            flow_limit(&args).0
        };
        assert_eq!(limit(&["--pcap", "x"]), 0);
        assert_eq!(
            limit(&["-i", "eth0"]),
            FlowConfig::flows_for_memory(DEFAULT_LIVE_FLOW_MEMORY)
        );
        assert_eq!(limit(&["-i", "eth0", "--max-flows", "0"]), 0);
        assert_eq!(
            limit(&["--pcap", "x", "--flow-memory", "3M"]),
            (3 << 20) / 300
        );
        assert_eq!(limit(&["--pcap", "x", "--max-flows", "9"]), 9);
    }

    #[test]
    fn flag_errors_are_one_line() {
        for argv in [
            &["engine"][..],
            &["engine", "--pcap", "x", "--workers", "-1"],
            &[
                "engine",
                "--pcap",
                "x",
                "--flow-memory",
                "1G",
                "--max-flows",
                "2",
            ],
            &["engine", "--bogus"],
        ] {
            let e = Args::try_parse_from(argv).expect_err("refused");
            let line = flag_error_line(&e).expect("an error, not help");
            assert!(!line.contains('\n'), "{argv:?}: {line}");
        }
        let help = Args::try_parse_from(["engine", "--help"]).expect_err("help");
        assert_eq!(flag_error_line(&help), None);
    }

    #[test]
    fn addresses_take_the_usual_forms() {
        assert_eq!(
            parse_metrics_address(":9615"),
            Ok("0.0.0.0:9615".parse().expect("addr"))
        );
        assert_eq!(
            parse_metrics_address("[::1]:80"),
            Ok("[::1]:80".parse().expect("addr"))
        );
        for bad in ["9615", "localhost", "1.2.3.4:99999", ""] {
            let e = parse_metrics_address(bad).expect_err(bad);
            assert!(e.contains("expected ADDRESS:PORT"), "{e}");
        }
    }
}
