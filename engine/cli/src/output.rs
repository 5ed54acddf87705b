//! Where spans go: OTLP JSON lines (file or standard output) and/or an OTLP
//! exporter. Both receive every span in the same order. Spans arrive already
//! mapped and encoded by the flow workers ([`EncodedSpan`]); this thread only
//! batches bytes and writes or submits them.
//!
//! JSON lines are cut by size only, so a capture file always gives the same
//! bytes. Export requests are cut by size or when the oldest span in the
//! batch has waited `interval`, so spans reach the collector promptly even
//! when flows end slowly.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use engine::registry::OutputSlot;
use exporter::json::OtlpJsonWriter;
use exporter::otlp::{ExportReport, OtlpExporter};
use exporter::{EncodedSpan, RequestEncoder};

/// The OTLP half of the output.
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

/// The OTLP JSON half of the output.
pub struct JsonSink {
    /// Writes JSON lines.
    pub writer: OtlpJsonWriter<Box<dyn Write + Send>>,
    /// Where the spans written are counted.
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

/// What the output thread produced.
pub struct Written {
    /// The JSON side's result: `Err` if writing failed.
    pub json: io::Result<()>,
    /// The exporter's final counts, if exporting.
    pub export: Option<ExportReport>,
    /// The export target, if exporting.
    pub export_target: Option<String>,
}

/// Consumes the pipeline's records until it closes, then writes the last
/// partial batches and shuts the exporter down within `shutdown_timeout`.
pub fn run(
    records: Receiver<Vec<EncodedSpan>>,
    mut json: Option<JsonSink>,
    mut otlp: Option<OtlpSink>,
    shutdown_timeout: Duration,
) -> Written {
    let mut spans = 0u64;
    let mut json_result = Ok(());
    loop {
        let wait = otlp
            .as_ref()
            .and_then(|o| {
                o.batch_started
                    .map(|t| (t + o.interval).saturating_duration_since(Instant::now()))
            })
            .unwrap_or(Duration::from_secs(3600));
        match records.recv_timeout(wait) {
            Ok(batch) => {
                for span in &batch {
                    spans += 1;
                    if let Some(w) = &mut json
                        && let Err(e) = w.writer.write_encoded(span)
                    {
                        json_result = Err(e);
                        json = None;
                        if otlp.is_none() {
                            // Nothing left to write to: stop consuming, which
                            // stops the pipeline.
                            return Written {
                                json: json_result,
                                export: None,
                                export_target: None,
                            };
                        }
                    }
                    if let Some(o) = &mut otlp {
                        o.encoder.push_encoded(span);
                        if o.batch_started.is_none() {
                            o.batch_started = Some(Instant::now());
                        }
                        if o.encoder.spans() >= o.batch_size {
                            o.cut();
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Some(o) = &mut otlp
            && o.batch_started.is_some_and(|t| t.elapsed() >= o.interval)
        {
            o.cut();
        }
        publish(spans, &json, &otlp);
    }
    publish(spans, &json, &otlp);
    if let Some(w) = json {
        json_result = json_result.and(w.writer.finish().map(drop));
    }
    let export_target = otlp.as_ref().map(|o| o.target.clone());
    let export = otlp.map(|mut o| {
        o.cut();
        o.exporter.finish(shutdown_timeout)
    });
    Written {
        json: json_result,
        export,
        export_target,
    }
}

/// Publishes the spans taken so far: each went to every sink.
fn publish(spans: u64, json: &Option<JsonSink>, otlp: &Option<OtlpSink>) {
    if let Some(j) = json {
        j.slot.publish_written(spans);
    }
    if let Some(o) = otlp {
        o.slot.publish_written(spans);
    }
}
