//! The OpenTelemetry signal an exporter carries: what differs between
//! sending traces and sending metrics over the same OTLP transport.

/// An OTLP signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Spans (`ExportTraceServiceRequest`).
    Traces,
    /// Metric data points (`ExportMetricsServiceRequest`).
    Metrics,
}

impl Signal {
    /// Lower-case name: `traces`, `metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }

    /// What its requests carry, in messages and counters: `spans`, `data
    /// points`.
    pub fn items(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "data points",
        }
    }

    /// The prefix of its own environment variables, which win over the
    /// generic `OTEL_EXPORTER_OTLP_*` ones.
    pub fn env_prefix(self) -> &'static str {
        match self {
            Signal::Traces => "OTEL_EXPORTER_OTLP_TRACES_",
            Signal::Metrics => "OTEL_EXPORTER_OTLP_METRICS_",
        }
    }

    /// The path OTLP/HTTP appends to a base URL.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }

    /// The OTLP/gRPC method.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }

    /// The JSON name of the response's `partial_success` count of
    /// rejected items.
    pub fn json_rejected(self) -> &'static str {
        match self {
            Signal::Traces => "rejectedSpans",
            Signal::Metrics => "rejectedDataPoints",
        }
    }
}

/// `Export*ServiceResponse`: every signal's response has this shape
/// (`partial_success` = 1 with the rejected count = 1 and `error_message`
/// = 2), so one message decodes them all.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ExportResponse {
    /// Set when the receiver accepted only part of the request.
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<PartialSuccess>,
}

/// `Export*PartialSuccess`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PartialSuccess {
    /// `rejected_spans`, `rejected_data_points`.
    #[prost(int64, tag = "1")]
    pub rejected: i64,
    /// Why.
    #[prost(string, tag = "2")]
    pub error_message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    use prost::Message;

    #[test]
    fn the_shared_response_reads_the_trace_service_response() {
        let r = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "too old".into(),
            }),
        };
        let got = ExportResponse::decode(r.encode_to_vec().as_slice()).unwrap();
        let p = got.partial_success.unwrap();
        assert_eq!((p.rejected, p.error_message.as_str()), (3, "too old"));
    }
}
