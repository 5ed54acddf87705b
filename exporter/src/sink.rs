//! Record sinks: where the ordered record stream goes, one sink per output
//! (OTLP JSON lines, an OTLP export of spans, an OTLP export of flow
//! metrics).
//!
//! The flow workers turn each record into a [`Mapped`] in parallel: every
//! signal's encoding made once, whatever the number of sinks that use it.
//! The output thread hands each [`Mapped`] to every sink in output order;
//! sinks only batch bytes and write or submit them.

use std::io;
use std::time::{Duration, Instant};

use crate::EncodedSpan;
use crate::metrics::{AggregatorStats, Sample};
use crate::otlp::{ExportReport, Signal};

/// What the workers made of one record, for every sink.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// The record's span, in the encodings the sinks asked for.
    pub span: EncodedSpan,
    /// What the record adds to the flow metrics, when they are on. Boxed:
    /// items are moved through the merge, and without metrics an inline
    /// sample made every item 120 bytes larger (1.6 % more CPU, issue 22).
    pub metric: Option<Box<Sample>>,
}

/// How a sink ended.
#[derive(Debug)]
pub enum SinkEnd {
    /// A writer (file, standard output): whether every write succeeded.
    Written(io::Result<()>),
    /// An OTLP export: where to, and where every item ended up.
    Exported {
        /// Spans or metric data points.
        signal: Signal,
        /// The endpoint and protocol.
        target: String,
        /// The exporter's final accounting (boxed: it holds a histogram).
        report: Box<ExportReport>,
    },
    /// Flow metrics made for an output: what was collected.
    Metrics {
        /// The output, for messages.
        target: String,
        /// Records, series, collections, points.
        stats: AggregatorStats,
    },
}

/// One output of the record stream.
pub trait RecordSink: Send {
    /// Takes the next record's outputs, in output order.
    ///
    /// # Errors
    /// This sink cannot go on (e.g. its file cannot be written); the
    /// others do.
    fn take(&mut self, item: &Mapped) -> io::Result<()>;

    /// When this sink wants [`flush_due`](Self::flush_due) called: a
    /// partial batch that must not wait longer. (It is also called after
    /// every batch of records taken.)
    fn due(&self) -> Option<Instant> {
        None
    }

    /// Sends or writes out what has waited long enough.
    ///
    /// # Errors
    /// As [`take`](Self::take).
    fn flush_due(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Publishes the number of items taken so far into the sink's counters.
    fn publish(&self, taken: u64);

    /// Writes or sends what is left, waiting at most `shutdown` for an
    /// exporter's queue: how the output ended, and what its flow metrics
    /// collected if it had any.
    fn finish(self: Box<Self>, shutdown: Duration) -> Vec<SinkEnd>;
}
