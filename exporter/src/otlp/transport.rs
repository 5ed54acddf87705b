//! One OTLP request on the wire: gRPC (tonic) or HTTP (reqwest), TLS,
//! headers and compression, and the classification of the outcome into
//! accepted, retryable and permanent.

use std::io::Write;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue};
use prost::Message as _;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::config::{Compression, OtlpConfig, Protocol};
use super::signal::{ExportResponse, Signal};

/// What the receiver made of a request it accepted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// `partial_success.rejected` (or `rejected_data_points`).
    pub rejected: u64,
    /// `partial_success.error_message`, if any.
    pub message: String,
}

/// A request that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Sending the same request again may succeed.
    pub retryable: bool,
    /// The delay the receiver asked for (`Retry-After`, gRPC `RetryInfo`).
    pub retry_after: Option<Duration>,
    /// One line: what failed.
    pub reason: String,
}

/// The user's request headers (gRPC metadata), which can be replaced
/// while the exporter runs (SIGHUP): each request takes the list current
/// when it is sent.
#[derive(Debug, Clone, Default)]
pub struct SharedHeaders(Arc<RwLock<Arc<Headers>>>);

/// Header names and values.
type Headers = Vec<(HeaderName, HeaderValue)>;

impl SharedHeaders {
    /// Headers for a transport of `protocol`.
    ///
    /// # Errors
    /// A header gRPC metadata cannot carry (gRPC only).
    pub fn new(
        protocol: Protocol,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<SharedHeaders, String> {
        let shared = SharedHeaders::default();
        shared.set(protocol, headers)?;
        Ok(shared)
    }

    /// Replaces the headers; requests already sent keep the old ones.
    ///
    /// # Errors
    /// A header gRPC metadata cannot carry (gRPC only); nothing changes.
    pub fn set(
        &self,
        protocol: Protocol,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<(), String> {
        if protocol == Protocol::Grpc {
            for (k, v) in &headers {
                metadata(k, v)?;
            }
        }
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(headers);
        Ok(())
    }

    fn get(&self) -> Arc<Headers> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }
}

type Metadata = (
    MetadataKey<tonic::metadata::Ascii>,
    MetadataValue<tonic::metadata::Ascii>,
);

fn metadata(k: &HeaderName, v: &HeaderValue) -> Result<Metadata, String> {
    let key =
        MetadataKey::from_bytes(k.as_str().as_bytes()).map_err(|e| format!("header {k}: {e}"))?;
    let value = MetadataValue::try_from(v.as_bytes()).map_err(|e| format!("header {k}: {e}"))?;
    Ok((key, value))
}

/// A connected-on-demand OTLP client. Clones share the connection (gRPC
/// channel, HTTP pool).
#[derive(Debug, Clone)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc {
        /// The client over a lazily connecting channel.
        client: tonic::client::Grpc<Channel>,
        /// Metadata sent with every request.
        headers: SharedHeaders,
        /// The signal: which service's `Export` to call.
        signal: Signal,
    },
    /// OTLP/HTTP.
    Http {
        /// The HTTP client (connection pool).
        client: reqwest::Client,
        /// The signal's URL (`…/v1/traces`).
        url: String,
        /// The user's headers, sent with every request.
        headers: SharedHeaders,
        /// Content type and encoding, sent with every request after the
        /// user's (so that these win).
        framing: HeaderMap,
        /// Whether bodies are gzip-compressed here.
        gzip: bool,
        /// Whether bodies are protobuf (else JSON).
        protobuf: bool,
        /// The signal: how the response names its rejected items.
        signal: Signal,
    },
}

impl Transport {
    /// Builds the client. Nothing connects until the first request, so that
    /// a collector that is down at start is retried like one that goes away.
    ///
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// The TLS material or the URL is unusable; the message names the cause.
    pub fn new(config: &OtlpConfig, headers: SharedHeaders) -> Result<Transport, String> {
        match config.protocol {
            Protocol::Grpc => {
                let mut endpoint = Endpoint::from_shared(config.url.to_string())
                    .map_err(|e| format!("{}: {e}", config.url_setting))?
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout)
                    .tcp_nodelay(true);
                if config.url.scheme_str() == Some("https") {
                    let mut tls = ClientTlsConfig::new();
                    match &config.tls.ca_pem {
                        Some(ca) => tls = tls.ca_certificate(Certificate::from_pem(ca)),
                        None => tls = tls.with_native_roots(),
                    }
                    if let Some((cert, key)) = &config.tls.identity_pem {
                        tls = tls.identity(Identity::from_pem(cert, key));
                    }
                    endpoint = endpoint
                        .tls_config(tls)
                        .map_err(|e| format!("TLS configuration: {e}"))?;
                }
                let mut client = tonic::client::Grpc::new(endpoint.connect_lazy());
                if config.compression == Compression::Gzip {
                    client = client
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                }
                Ok(Transport::Grpc {
                    client,
                    headers,
                    signal: config.signal,
                })
            }
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let protobuf = config.protocol == Protocol::HttpProtobuf;
                let mut builder = reqwest::Client::builder()
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout)
                    .tcp_nodelay(true)
                    .use_rustls_tls();
                if let Some(ca) = &config.tls.ca_pem {
                    builder = builder.tls_built_in_root_certs(false);
                    for cert in reqwest::Certificate::from_pem_bundle(ca)
                        .map_err(|e| format!("CA certificate: {e}"))?
                    {
                        builder = builder.add_root_certificate(cert);
                    }
                }
                if let Some((cert, key)) = &config.tls.identity_pem {
                    let mut pem = cert.clone();
                    pem.push(b'\n');
                    pem.extend_from_slice(key);
                    builder = builder.identity(
                        reqwest::Identity::from_pem(&pem)
                            .map_err(|e| format!("client certificate: {e}"))?,
                    );
                }
                let client = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
                let mut framing = HeaderMap::new();
                framing.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(if protobuf {
                        "application/x-protobuf"
                    } else {
                        "application/json"
                    }),
                );
                let gzip = config.compression == Compression::Gzip;
                if gzip {
                    framing.insert(
                        http::header::CONTENT_ENCODING,
                        http::HeaderValue::from_static("gzip"),
                    );
                }
                Ok(Transport::Http {
                    client,
                    url: config.url.to_string(),
                    headers,
                    framing,
                    gzip,
                    protobuf,
                    signal: config.signal,
                })
            }
        }
    }

    /// Sends one encoded request (protobuf, or JSON for http/json).
    pub async fn send(&mut self, body: Bytes) -> Result<Accepted, Failure> {
        match self {
            Transport::Grpc {
                client,
                headers,
                signal,
            } => {
                client.ready().await.map_err(|e| {
                    transport_failure(&format!("cannot connect: {}", error_chain(&e)))
                })?;
                let mut request = tonic::Request::new(body);
                for (k, v) in headers.get().iter() {
                    // Checked when set.
                    if let Ok((key, value)) = metadata(k, v) {
                        request.metadata_mut().insert(key, value);
                    }
                }
                match client
                    .unary(
                        request,
                        PathAndQuery::from_static(signal.grpc_path()),
                        RawCodec,
                    )
                    .await
                {
                    Ok(response) => Ok(accepted(response.into_inner())),
                    Err(status) => Err(grpc_failure(&status)),
                }
            }
            Transport::Http {
                client,
                url,
                headers,
                framing,
                gzip,
                protobuf,
                signal,
            } => {
                let body = if *gzip { gzip_body(&body) } else { body };
                let mut all = HeaderMap::new();
                for (k, v) in headers.get().iter() {
                    all.insert(k.clone(), v.clone());
                }
                for (k, v) in framing {
                    all.insert(k.clone(), v.clone());
                }
                let response = client
                    .post(url.as_str())
                    .headers(all)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| transport_failure(&error_chain(&e)))?;
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let bytes = response.bytes().await.unwrap_or_default();
                if status.is_success() {
                    return Ok(if *protobuf {
                        ExportResponse::decode(bytes)
                            .map(accepted)
                            .unwrap_or_default()
                    } else {
                        json_partial_success(&bytes, *signal)
                    });
                }
                let retryable = matches!(status.as_u16(), 429 | 502 | 503 | 504);
                let detail = String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect::<String>();
                Err(Failure {
                    retryable,
                    retry_after,
                    reason: if detail.trim().is_empty() || *protobuf {
                        format!("HTTP {status}")
                    } else {
                        format!("HTTP {status}: {}", detail.trim())
                    },
                })
            }
        }
    }
}

fn accepted(r: ExportResponse) -> Accepted {
    match r.partial_success {
        Some(p) => Accepted {
            rejected: u64::try_from(p.rejected).unwrap_or(0),
            message: p.error_message,
        },
        None => Accepted::default(),
    }
}

/// `{"partialSuccess":{"rejectedSpans":"3","errorMessage":"…"}}` (or
/// `rejectedDataPoints`, after `signal`); the count may be a string or a
/// number. Anything unreadable counts as full success, as the receiver
/// answered 2xx.
fn json_partial_success(body: &[u8], signal: Signal) -> Accepted {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Accepted::default();
    };
    let p = &v["partialSuccess"];
    let rejected = match &p[signal.json_rejected()] {
        serde_json::Value::String(s) => s.parse().unwrap_or(0),
        serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    };
    Accepted {
        rejected,
        message: p["errorMessage"].as_str().unwrap_or_default().to_string(),
    }
}

/// The OTLP/gRPC retry rules: transient codes are retried, and
/// RESOURCE_EXHAUSTED too (the collector's back-pressure signal). A status
/// that tonic made from a transport error (it has a source: connection
/// reset, closed, TLS alert) is retried whatever its code, because the
/// receiver never answered.
fn grpc_failure(status: &Status) -> Failure {
    let source = std::error::Error::source(status);
    let retryable = source.is_some()
        || matches!(
            status.code(),
            Code::Cancelled
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::OutOfRange
                | Code::Unavailable
                | Code::DataLoss
                | Code::ResourceExhausted
        );
    let retry_after = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay);
    // Transport failures keep the cause (e.g. "Connection refused") in the
    // source chain, which usually repeats the message.
    let message = status.message();
    let detail = match source.map(error_chain) {
        Some(chain) => one_line([message, chain.as_str()]),
        None => message.to_string(),
    };
    let reason = if detail.is_empty() {
        format!("gRPC {:?}", status.code())
    } else {
        format!("gRPC {:?}: {detail}", status.code())
    };
    if source.is_some() && not_tls(&detail) {
        return transport_failure(&reason);
    }
    Failure {
        retryable,
        retry_after,
        reason,
    }
}

/// Whether a transport error says that the receiver answered a TLS
/// handshake with something that is not TLS (rustls: "received corrupt
/// message of type InvalidContentType").
fn not_tls(chain: &str) -> bool {
    chain.contains("InvalidContentType")
}

/// A request that never got an answer (`reason` says why): retried, unless
/// the receiver does not speak TLS to an `https://` endpoint, which no retry
/// mends.
fn transport_failure(reason: &str) -> Failure {
    if not_tls(reason) {
        return Failure {
            retryable: false,
            retry_after: None,
            reason: format!("{reason} ({NOT_TLS_HINT})"),
        };
    }
    Failure {
        retryable: true,
        retry_after: None,
        reason: reason.to_string(),
    }
}

/// What to do when an `https://` endpoint does not answer in TLS.
pub(crate) const NOT_TLS_HINT: &str =
    "the receiver does not answer in TLS: if it serves plain HTTP, use http:// instead of https://";

/// `Retry-After`: delay-seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

fn gzip_body(body: &[u8]) -> Bytes {
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(body);
    Bytes::from(gz.finish().unwrap_or_default())
}

/// The error and its causes on one line (hyper and reqwest errors keep the
/// useful part, e.g. "Connection refused", in the source chain).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut texts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        texts.push(c.to_string());
        cause = c.source();
    }
    one_line(texts.iter().map(String::as_str))
}

/// Error texts joined with ": ", each part once: the layers of hyper, tonic
/// and reqwest errors repeat each other ("tcp connect error: transport
/// error: tcp connect error: Connection refused"), and "transport error"
/// says nothing.
fn one_line<'a>(texts: impl IntoIterator<Item = &'a str>) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for text in texts {
        for part in text.split(": ") {
            let part = part.trim();
            if !part.is_empty() && part != "transport error" && !parts.contains(&part) {
                parts.push(part);
            }
        }
    }
    parts.join(": ")
}

/// Sends pre-encoded request bytes and decodes the response with prost.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportResponse;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ExportResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        ExportResponse::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16: "tcp connect error: transport error: tcp connect error"
    /// repeated itself.
    #[test]
    fn regression_16_error_layers_are_said_once() {
        assert_eq!(
            one_line([
                "tcp connect error",
                "transport error: tcp connect error: Connection refused (os error 111)"
            ]),
            "tcp connect error: Connection refused (os error 111)"
        );
        let tls = transport_failure(
            "client error (Connect): received corrupt message of type InvalidContentType",
        );
        assert!(!tls.retryable);
        assert!(
            tls.reason.ends_with("use http:// instead of https://)"),
            "{}",
            tls.reason
        );
        assert!(transport_failure("tcp connect error: Connection refused").retryable);
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn grpc_codes_are_classified() {
        assert!(grpc_failure(&Status::unavailable("down")).retryable);
        assert!(grpc_failure(&Status::resource_exhausted("full")).retryable);
        assert!(!grpc_failure(&Status::invalid_argument("bad")).retryable);
        assert!(!grpc_failure(&Status::unauthenticated("who")).retryable);
        let f = grpc_failure(&Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_millis(1500))),
        ));
        assert_eq!(f.retry_after, Some(Duration::from_millis(1500)));
        assert_eq!(f.reason, "gRPC ResourceExhausted: slow down");
    }

    #[test]
    fn json_partial_success_counts_rejections() {
        let a = json_partial_success(
            br#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"too old"}}"#,
            Signal::Traces,
        );
        assert_eq!(a.rejected, 3);
        assert_eq!(a.message, "too old");
        assert_eq!(json_partial_success(b"{}", Signal::Traces).rejected, 0);
        let metrics = br#"{"partialSuccess":{"rejectedDataPoints":5}}"#;
        assert_eq!(json_partial_success(metrics, Signal::Metrics).rejected, 5);
        assert_eq!(json_partial_success(metrics, Signal::Traces).rejected, 0);
        assert_eq!(
            json_partial_success(br#"{"partialSuccess":{"rejectedSpans":2}}"#, Signal::Traces)
                .rejected,
            2
        );
    }
}
