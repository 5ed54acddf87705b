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
use engine::registry::{METRIC_POINTS, SPANS};
use exporter::RequestEncoder;
use exporter::json::JsonEncoder;
use exporter::metrics::{
    Aggregator, Clock, Dimensions, MIN_INTERVAL, MetricsSettings, Temporality,
};
use exporter::otlp::{
    ExportOptions, OtlpConfig, OtlpExporter, OtlpFlags, Probe, Protocol, QueuePolicy, Signal,
};
use exporter::proto::ProtoEncoder;
use exporter::resource::{Resource, parse_key_values};

use crate::output::{MetricsFeed, OtlpMetricsSink, OtlpSink};
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

/// The OTLP export settings of `signal`, or `None` if no endpoint is set
/// for it.
pub fn otlp_config(args: &Args, signal: Signal) -> anyhow::Result<Option<OtlpConfig>> {
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
    OtlpConfig::resolve(signal, &flags, &|k| std::env::var(k).ok()).map_err(|e| anyhow!(e))
}

/// How flow metrics are collected, from --metrics-* and the standard
/// variables: `None` without --metrics. `kubernetes`: enrichment is on (it
/// adds to the default dimensions); `clock`: packet time for files.
pub fn metrics_settings(
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
    kubernetes: bool,
    clock: Clock,
) -> anyhow::Result<Option<MetricsSettings>> {
    if !args.metrics {
        // Settable in a config file that leaves metrics off until a flag
        // turns them on: not an error, but not silent either.
        for (set, name) in [
            (!args.metrics_dimensions.is_empty(), "--metrics-dimension"),
            (args.metrics_interval.is_some(), "--metrics-interval"),
            (args.metrics_temporality.is_some(), "--metrics-temporality"),
        ] {
            if set {
                warning!("{name} has no effect: flow metrics are off (--metrics turns them on)");
            }
        }
        return Ok(None);
    }
    let dimensions = if args.metrics_dimensions.is_empty() {
        Dimensions::default_for(kubernetes)
    } else {
        Dimensions::new(&args.metrics_dimensions).map_err(|e| anyhow!("--metrics-dimension {e}"))?
    };
    const TEMPORALITY: &str = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
    let temporality = match (&args.metrics_temporality, env(TEMPORALITY)) {
        (Some(t), _) => Temporality::parse(t).map_err(|e| anyhow!("--metrics-temporality: {e}"))?,
        (None, Some(t)) if !t.trim().is_empty() => {
            Temporality::parse(&t).map_err(|e| anyhow!("{TEMPORALITY}: {e}"))?
        }
        _ => Temporality::default(),
    };
    const INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
    let interval = match (args.metrics_interval, env(INTERVAL)) {
        (Some(ns), _) => Duration::from_nanos(ns),
        (None, Some(ms)) if !ms.trim().is_empty() => match ms.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                return Err(anyhow!(
                    "{INTERVAL}: {ms:?} is not a number of milliseconds above 0"
                ));
            }
        },
        _ => DEFAULT_INTERVAL,
    };
    if interval < MIN_INTERVAL {
        let setting = if args.metrics_interval.is_some() {
            "--metrics-interval"
        } else {
            INTERVAL
        };
        return Err(anyhow!(
            "{setting}: {} s is shorter than the shortest collection interval, {} s",
            interval.as_secs_f64(),
            MIN_INTERVAL.as_secs_f64()
        ));
    }
    Ok(Some(MetricsSettings {
        dimensions,
        temporality,
        interval,
        cardinality_limit: args.metrics_cardinality_limit as usize,
        clock,
    }))
}

/// The collection interval without --metrics-interval or
/// OTEL_METRIC_EXPORT_INTERVAL (OpenTelemetry's default).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Starts an exporter of `config.signal` after checking that the endpoint
/// can be reached at all (a host that does not resolve or has no route is
/// a configuration error; a refused connection is a collector that is not
/// up yet); also what messages call it.
fn start_exporter(
    config: &OtlpConfig,
    queue_requests: usize,
    live: bool,
    concurrency: u16,
) -> anyhow::Result<(OtlpExporter, String)> {
    let target = config.target();
    match exporter::otlp::probe(config, config.timeout.min(Duration::from_secs(3)))
        .map_err(|e| anyhow!(e))?
    {
        Probe::Listening => {}
        Probe::Refused => warning!(
            "OTLP export to {target}: connection refused; \
             {} wait in the queue and delivery is retried",
            config.signal.items()
        ),
    }
    let options = ExportOptions {
        queue_requests,
        // A file waits for the collector; live traffic cannot, so requests
        // beyond the queue are dropped (and counted).
        policy: if live {
            QueuePolicy::DropWhenFull
        } else {
            QueuePolicy::Block
        },
        concurrency: usize::from(concurrency),
    };
    let log: exporter::otlp::Log = Arc::new(|line: &str| warning!("{line}"));
    let exporter = OtlpExporter::start(config, options, log)
        .map_err(|e| anyhow!("{}: {e}", config.url_setting))?;
    Ok((exporter, target))
}

/// Starts the export of spans.
pub fn start_export(
    config: &OtlpConfig,
    args: &Args,
    resource: &Resource,
    live: bool,
    registry: &Registry,
) -> anyhow::Result<OtlpSink> {
    let queue_requests =
        usize::try_from(args.queue_size.div_ceil(args.batch_size.into())).unwrap_or(usize::MAX);
    let (exporter, target) = start_exporter(config, queue_requests, live, args.otlp_concurrency)?;
    let encoder: Box<dyn RequestEncoder + Send> = match config.protocol {
        Protocol::HttpJson => Box::new(JsonEncoder::new(resource)),
        Protocol::Grpc | Protocol::HttpProtobuf => Box::new(ProtoEncoder::new(resource)),
    };
    let slot = registry.output(SPANS, &target, Some(Arc::new(exporter.status())));
    Ok(OtlpSink {
        exporter,
        encoder,
        batch_size: args.batch_size as usize,
        interval: Duration::from_nanos(args.batch_interval),
        batch_started: None,
        target,
        slot,
    })
}

/// Collections waiting for delivery at most: one request each. A capture
/// file's run waits when it is full; a live one drops (and counts) the
/// request, as for spans.
const METRICS_QUEUE_REQUESTS: usize = 64;

/// Starts the export of flow metrics.
pub fn start_metrics_export(
    config: &OtlpConfig,
    args: &Args,
    settings: MetricsSettings,
    resource: &Resource,
    live: bool,
    registry: &Registry,
) -> anyhow::Result<OtlpMetricsSink> {
    let (exporter, target) =
        start_exporter(config, METRICS_QUEUE_REQUESTS, live, args.otlp_concurrency)?;
    let slot = registry.output(METRIC_POINTS, &target, Some(Arc::new(exporter.status())));
    Ok(OtlpMetricsSink {
        exporter,
        protocol: config.protocol,
        feed: MetricsFeed {
            aggregator: Aggregator::new(settings),
            resource: resource.clone(),
            target,
            slot,
        },
    })
}
