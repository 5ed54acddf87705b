//! Output settings: the OTLP JSON target, the resource every request
//! carries, and the OTLP exporter of spans (resolved from flags and the
//! standard environment variables, probed, started).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use engine::Registry;
use exporter::RequestEncoder;
use exporter::json::JsonEncoder;
use exporter::otlp::{
    ExportOptions, OtlpConfig, OtlpExporter, OtlpFlags, Probe, Protocol, QueuePolicy, Signal,
};
use exporter::proto::ProtoEncoder;
use exporter::resource::{Resource, parse_key_values};

use crate::output::OtlpSink;
use flowspan_cli::args::Args;

pub fn open_output(path: Option<&PathBuf>) -> anyhow::Result<Box<dyn Write + Send>> {
    Ok(match path {
        Some(p) if p.as_os_str() != "-" => Box::new(BufWriter::with_capacity(
            1 << 16,
            File::create(p).with_context(|| format!("--output {}: cannot create", p.display()))?,
        )),
        _ => Box::new(BufWriter::with_capacity(1 << 16, io::stdout())),
    })
}

/// The resource: detected host, then `OTEL_RESOURCE_ATTRIBUTES`, then
/// `OTEL_SERVICE_NAME`, then `--resource-attribute`.
pub fn resource(args: &Args) -> anyhow::Result<Resource> {
    let mut r = Resource::detect();
    if let Ok(list) = std::env::var("OTEL_RESOURCE_ATTRIBUTES") {
        for (k, v) in parse_key_values(&list)
            .map_err(|e| anyhow!("OTEL_RESOURCE_ATTRIBUTES: {e} (expected key=value,...)"))?
        {
            r.set(&k, &v);
        }
    }
    if let Ok(name) = std::env::var("OTEL_SERVICE_NAME")
        && !name.trim().is_empty()
    {
        r.set("service.name", name.trim());
    }
    for kv in &args.resource_attributes {
        match kv.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => r.set(k.trim(), v),
            _ => {
                return Err(anyhow!(
                    "--resource-attribute {kv:?}: expected KEY=VALUE, e.g. k8s.node.name=node-1"
                ));
            }
        }
    }
    Ok(r)
}

pub fn otlp_config(args: &Args) -> anyhow::Result<Option<OtlpConfig>> {
    let flags = OtlpFlags {
        endpoint: args.otlp_endpoint.clone(),
        protocol: args.otlp_protocol.clone(),
        headers: args.otlp_headers.clone(),
        compression: args.otlp_compression.clone(),
        timeout: args.otlp_timeout.map(Duration::from_nanos),
        certificate: args.otlp_ca.clone(),
        client_certificate: args.otlp_client_cert.clone(),
        client_key: args.otlp_client_key.clone(),
    };
    OtlpConfig::resolve(Signal::Traces, &flags, &|k| std::env::var(k).ok()).map_err(|e| anyhow!(e))
}

/// Starts the exporter after checking that the endpoint can be reached at
/// all (a host that does not resolve or has no route is a configuration
/// error; a refused connection is a collector that is not up yet).
pub fn start_export(
    config: &OtlpConfig,
    args: &Args,
    resource: &Resource,
    live: bool,
    registry: &Registry,
) -> anyhow::Result<OtlpSink> {
    let target = format!("{} ({})", config.url, config.protocol.name());
    match exporter::otlp::probe(config, config.timeout.min(Duration::from_secs(3)))
        .map_err(|e| anyhow!(e))?
    {
        Probe::Listening => {}
        Probe::Refused => warning!(
            "OTLP export to {target}: connection refused; \
             spans wait in the queue and delivery is retried"
        ),
    }
    let batch_size = args.batch_size as usize;
    let options = ExportOptions {
        queue_requests: usize::try_from(args.queue_size.div_ceil(args.batch_size.into()))
            .unwrap_or(usize::MAX),
        // A file waits for the collector; live traffic cannot, so spans
        // beyond the queue are dropped (and counted).
        policy: if live {
            QueuePolicy::DropWhenFull
        } else {
            QueuePolicy::Block
        },
        concurrency: usize::from(args.otlp_concurrency),
    };
    let log: exporter::otlp::Log = Arc::new(|line: &str| warning!("{line}"));
    let exporter = OtlpExporter::start(config, options, log)
        .map_err(|e| anyhow!("{}: {e}", config.url_setting))?;
    let encoder: Box<dyn RequestEncoder + Send> = match config.protocol {
        Protocol::HttpJson => Box::new(JsonEncoder::new(resource)),
        Protocol::Grpc | Protocol::HttpProtobuf => Box::new(ProtoEncoder::new(resource)),
    };
    let slot = registry.output("spans", &target, Some(Arc::new(exporter.status())));
    Ok(OtlpSink {
        exporter,
        encoder,
        batch_size,
        interval: Duration::from_nanos(args.batch_interval),
        batch_started: None,
        target,
        slot,
    })
}
