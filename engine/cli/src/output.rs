//! Where spans go: OTLP JSON lines (file or standard output) and/or an OTLP
//! exporter, each a [`RecordSink`] that receives every record in the same
//! order. Records arrive already mapped and encoded by the flow workers
//! ([`Mapped`]); this thread only batches bytes and writes or submits them.
//!
//! JSON lines from a capture file are cut by size only, so that it always
//! gives the same bytes. Live, the line under way is also ended and the
//! output flushed after each batch of records, so that a reader of the file
//! or pipe (`tail -f`, `engine -i … | consumer`) gets spans as flows end,
//! and a crash loses at most one batch. Export requests are cut by size or when the oldest span in the
//! batch has waited `interval`, so spans reach the collector promptly even
//! when flows end slowly.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use engine::Records;
use engine::pipeline::RecvTimeoutError;
use engine::registry::OutputSlot;
use exporter::RequestEncoder;
use exporter::json::OtlpJsonWriter;
use exporter::metrics::{Aggregator, Collection};
use exporter::otlp::{OtlpExporter, Protocol, Signal};
use exporter::resource::Resource;
use exporter::sink::{Mapped, RecordSink, SinkEnd};

/// Flow metrics made for one output: the aggregator, and what every
/// request carries.
pub struct MetricsFeed {
    /// Adds the records' samples into series.
    pub aggregator: Aggregator,
    /// The resource of every request.
    pub resource: Resource,
    /// The output, for messages.
    pub target: String,
    /// Where the data points made and the records in the overflow series
    /// are counted.
    pub slot: OutputSlot,
}

impl MetricsFeed {
    fn publish(&self) {
        let stats = self.aggregator.stats();
        self.slot.publish_written(stats.points);
        self.slot.publish_overflowed(stats.overflowed);
    }

    /// Adds `item`'s sample. A collection that it ends (a sample of a
    /// later interval, from a capture file) goes to `emit` with the
    /// resource, one request's worth at a time.
    fn add(
        &mut self,
        item: &Mapped,
        mut emit: impl FnMut(&Resource, Collection) -> io::Result<()>,
    ) -> io::Result<()> {
        let Some(sample) = &item.metric else {
            return Ok(());
        };
        let resource = &self.resource;
        let done = self.aggregator.add(sample, |c| emit(resource, c));
        if self.aggregator.take_overflow_news() {
            warning!(
                "flow metrics to {}: more than {} series (--metrics-cardinality-limit {}); \
                 records of further dimension values are counted in the series with \
                 otel.metric.overflow=true",
                self.target,
                self.aggregator
                    .settings()
                    .cardinality_limit
                    .saturating_sub(1),
                self.aggregator.settings().cardinality_limit
            );
        }
        done
    }

    /// Live: the collection due now, if it is, to `emit` as for
    /// [`add`](Self::add).
    fn collect_due(
        &mut self,
        mut emit: impl FnMut(&Resource, Collection) -> io::Result<()>,
    ) -> io::Result<()> {
        let resource = &self.resource;
        self.aggregator.collect_due(|c| emit(resource, c))
    }

    /// The last collection, to `emit` as for [`add`](Self::add); then the
    /// counts are published.
    fn finish(
        &mut self,
        mut emit: impl FnMut(&Resource, Collection) -> io::Result<()>,
    ) -> io::Result<()> {
        let resource = &self.resource;
        let done = self.aggregator.finish(|c| emit(resource, c));
        self.publish();
        done
    }

    fn end(&self) -> SinkEnd {
        SinkEnd::Metrics {
            target: self.target.clone(),
            stats: self.aggregator.stats(),
        }
    }
}

/// Spans, and flow metrics if they are on, as OTLP JSON lines.
pub struct JsonSink {
    /// Writes JSON lines.
    pub writer: OtlpJsonWriter<Box<dyn Write + Send>>,
    /// Where the spans written are counted.
    pub slot: OutputSlot,
    /// Live capture: end the line and flush after each batch of records.
    pub flush_each_batch: bool,
    /// Flow metrics, written as lines of their own between span lines.
    pub metrics: Option<MetricsFeed>,
}

/// Writes one request of flow metrics as a JSON line of its own.
fn write_metrics(
    writer: &mut OtlpJsonWriter<Box<dyn Write + Send>>,
    resource: &Resource,
    c: &Collection,
) -> io::Result<()> {
    let mut line = Vec::with_capacity(4096);
    c.write_json(&mut line, resource);
    line.push(b'\n');
    writer.write_line(&line)
}

impl RecordSink for JsonSink {
    fn take(&mut self, item: &Mapped) -> io::Result<()> {
        self.writer.write_encoded(&item.span)?;
        let Self {
            writer, metrics, ..
        } = self;
        match metrics {
            Some(m) => m.add(item, |r, c| write_metrics(writer, r, &c)),
            None => Ok(()),
        }
    }

    fn due(&self) -> Option<Instant> {
        self.metrics.as_ref().and_then(|m| m.aggregator.due())
    }

    fn flush_due(&mut self) -> io::Result<()> {
        let Self {
            writer, metrics, ..
        } = self;
        if let Some(m) = metrics {
            m.collect_due(|r, c| write_metrics(writer, r, &c))?;
        }
        if self.flush_each_batch {
            self.writer.flush()?;
        }
        Ok(())
    }

    fn publish(&self, taken: u64) {
        self.slot.publish_written(taken);
        if let Some(m) = &self.metrics {
            m.publish();
        }
    }

    fn finish(mut self: Box<Self>, _: Duration) -> Vec<SinkEnd> {
        let Self {
            writer, metrics, ..
        } = &mut *self;
        let result = match metrics {
            Some(m) => m.finish(|r, c| write_metrics(writer, r, &c)),
            None => Ok(()),
        };
        let metrics = self.metrics.as_ref().map(MetricsFeed::end);
        let result = result.and(self.writer.finish().map(drop));
        let mut ends = vec![SinkEnd::Written(result)];
        ends.extend(metrics);
        ends
    }
}

/// Spans exported over OTLP.
pub struct OtlpSink {
    /// Sends the requests.
    pub exporter: OtlpExporter,
    /// Builds requests in the configured protocol's encoding.
    pub encoder: Box<dyn RequestEncoder + Send>,
    /// Spans per request at most.
    pub batch_size: usize,
    /// Longest a span waits for its batch to fill.
    pub interval: Duration,
    /// When the first span of the current batch arrived.
    pub batch_started: Option<Instant>,
    /// The endpoint and protocol, for messages.
    pub target: String,
    /// Where the spans handed to the exporter are counted.
    pub slot: OutputSlot,
}

impl OtlpSink {
    fn cut(&mut self) {
        let n = self.encoder.spans();
        if n == 0 {
            return;
        }
        let mut body = Vec::new();
        self.encoder.take_request(&mut body);
        self.batch_started = None;
        self.exporter.submit(body, n as u64);
    }
}

impl RecordSink for OtlpSink {
    fn take(&mut self, item: &Mapped) -> io::Result<()> {
        self.encoder.push_encoded(&item.span);
        if self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
        if self.encoder.spans() >= self.batch_size {
            self.cut();
        }
        Ok(())
    }

    fn due(&self) -> Option<Instant> {
        self.batch_started.map(|t| t + self.interval)
    }

    fn flush_due(&mut self) -> io::Result<()> {
        if self.due().is_some_and(|t| t <= Instant::now()) {
            self.cut();
        }
        Ok(())
    }

    fn publish(&self, taken: u64) {
        self.slot.publish_written(taken);
    }

    fn finish(mut self: Box<Self>, shutdown: Duration) -> Vec<SinkEnd> {
        self.cut();
        vec![SinkEnd::Exported {
            signal: Signal::Traces,
            target: self.target,
            report: Box::new(self.exporter.finish(shutdown)),
        }]
    }
}

/// Flow metrics exported over OTLP: a request per collection.
pub struct OtlpMetricsSink {
    /// Sends the requests.
    pub exporter: OtlpExporter,
    /// The protocol, for the encoding.
    pub protocol: Protocol,
    /// The metrics.
    pub feed: MetricsFeed,
}

/// Hands one request of flow metrics to `exporter`, in `protocol`'s
/// encoding.
fn submit_metrics(
    exporter: &OtlpExporter,
    protocol: Protocol,
    resource: &Resource,
    c: &Collection,
) -> io::Result<()> {
    let body = match protocol {
        Protocol::HttpJson => {
            let mut b = Vec::new();
            c.write_json(&mut b, resource);
            b
        }
        Protocol::Grpc | Protocol::HttpProtobuf => c.to_proto(resource),
    };
    exporter.submit(body, c.points);
    Ok(())
}

impl RecordSink for OtlpMetricsSink {
    fn take(&mut self, item: &Mapped) -> io::Result<()> {
        let (exporter, protocol) = (&self.exporter, self.protocol);
        self.feed
            .add(item, |r, c| submit_metrics(exporter, protocol, r, &c))
    }

    fn due(&self) -> Option<Instant> {
        self.feed.aggregator.due()
    }

    fn flush_due(&mut self) -> io::Result<()> {
        let (exporter, protocol) = (&self.exporter, self.protocol);
        self.feed
            .collect_due(|r, c| submit_metrics(exporter, protocol, r, &c))
    }

    fn publish(&self, _: u64) {
        self.feed.publish();
    }

    fn finish(mut self: Box<Self>, shutdown: Duration) -> Vec<SinkEnd> {
        let (exporter, protocol) = (&self.exporter, self.protocol);
        // Submitting cannot fail: what the receiver does not take is in the
        // exporter's report.
        let _ = self
            .feed
            .finish(|r, c| submit_metrics(exporter, protocol, r, &c));
        let metrics = self.feed.end();
        vec![
            SinkEnd::Exported {
                signal: Signal::Metrics,
                target: self.feed.target,
                report: Box::new(self.exporter.finish(shutdown)),
            },
            metrics,
        ]
    }
}

/// Consumes the pipeline's records until it closes, handing each to every
/// sink, then ends every sink (an exporter's queue within
/// `shutdown_timeout`). A sink that fails is ended at once and the others
/// go on; when none is left, consuming stops, which stops the pipeline.
pub fn run(
    mut records: Records<Mapped>,
    mut sinks: Vec<Box<dyn RecordSink>>,
    shutdown_timeout: Duration,
) -> Vec<SinkEnd> {
    let mut taken = 0u64;
    let mut ended = Vec::new();
    'run: loop {
        let wait = sinks
            .iter()
            .filter_map(|s| s.due())
            .min()
            .map_or(Duration::from_secs(3600), |t| {
                t.saturating_duration_since(Instant::now())
            });
        match records.recv_timeout(wait) {
            Ok(batch) => {
                for item in &batch {
                    taken += 1;
                    let mut k = 0;
                    while k < sinks.len() {
                        match sinks[k].take(item) {
                            Ok(()) => k += 1,
                            Err(e) => {
                                let failed = sinks.remove(k);
                                end_failed(failed, e, taken - 1, shutdown_timeout, &mut ended);
                            }
                        }
                    }
                    if sinks.is_empty() {
                        break 'run;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let mut k = 0;
        while k < sinks.len() {
            match sinks[k].flush_due() {
                Ok(()) => {
                    sinks[k].publish(taken);
                    k += 1;
                }
                Err(e) => {
                    let failed = sinks.remove(k);
                    end_failed(failed, e, taken, shutdown_timeout, &mut ended);
                }
            }
        }
        if sinks.is_empty() {
            break;
        }
    }
    for s in sinks {
        s.publish(taken);
        ended.extend(s.finish(shutdown_timeout));
    }
    ended
}

/// Ends a sink that failed with `e` after taking `taken` items; `e` is its
/// account of the run.
fn end_failed(
    failed: Box<dyn RecordSink>,
    e: io::Error,
    taken: u64,
    shutdown_timeout: Duration,
    ended: &mut Vec<SinkEnd>,
) {
    failed.publish(taken);
    drop(failed.finish(shutdown_timeout));
    ended.push(SinkEnd::Written(Err(e)));
}
