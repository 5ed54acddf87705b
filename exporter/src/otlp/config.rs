//! OTLP exporter settings: command-line values and the standard
//! OpenTelemetry environment variables, resolved into one checked
//! [`OtlpConfig`].
//!
//! Precedence for every setting: the flag, then the signal's own variable
//! (`OTEL_EXPORTER_OTLP_TRACES_*`, `OTEL_EXPORTER_OTLP_METRICS_*`), then the
//! generic one
//! (`OTEL_EXPORTER_OTLP_*`), then the default. Headers are merged key by key
//! in the same order. Errors name the flag or variable the bad value came
//! from, and all of them are reported at once.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme, Uri};
use http::{HeaderName, HeaderValue};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::signal::Signal;
use crate::resource::parse_key_values;

/// Wire protocol for OTLP export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (`ExportTraceServiceRequest` over HTTP/2).
    Grpc,
    /// OTLP/HTTP with a binary protobuf body.
    HttpProtobuf,
    /// OTLP/HTTP with a JSON body (the same bytes as the JSON output).
    HttpJson,
}

impl Protocol {
    /// The name used by `--otlp-protocol` and `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::HttpJson => "http/json",
        }
    }

    fn parse(s: &str) -> Option<Protocol> {
        match s {
            "grpc" => Some(Protocol::Grpc),
            "http/protobuf" => Some(Protocol::HttpProtobuf),
            "http/json" => Some(Protocol::HttpJson),
            _ => None,
        }
    }
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Bodies are sent as they are.
    None,
    /// Bodies are gzip-compressed (`grpc-encoding` / `Content-Encoding: gzip`).
    Gzip,
}

/// Settings given on the command line; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct OtlpFlags {
    /// `--otlp-endpoint`: base URL.
    pub endpoint: Option<String>,
    /// `--otlp-protocol`.
    pub protocol: Option<String>,
    /// `--otlp-header KEY=VALUE`, repeatable.
    pub headers: Vec<String>,
    /// `--otlp-compression`.
    pub compression: Option<String>,
    /// `--otlp-timeout`.
    pub timeout: Option<Duration>,
    /// `--otlp-ca`: PEM file of CA certificates to trust.
    pub certificate: Option<PathBuf>,
    /// `--otlp-client-cert`: PEM client certificate chain.
    pub client_certificate: Option<PathBuf>,
    /// `--otlp-client-key`: PEM private key of the client certificate.
    pub client_key: Option<PathBuf>,
}

/// PEM material for TLS, read and checked at start-up.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates (PEM) to trust instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate chain and key (PEM), for mutual TLS.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for TlsFiles {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("identity", &self.identity_pem.is_some())
            .finish()
    }
}

/// Resolved, checked OTLP export settings.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The signal the requests carry.
    pub signal: Signal,
    /// Where requests go: for gRPC the server's origin, for HTTP the full
    /// signal URL (`…/v1/traces` unless given whole).
    pub url: Uri,
    /// Which setting the URL came from, for messages.
    pub url_setting: String,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Extra request headers (gRPC metadata), names lower-case.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body compression.
    pub compression: Compression,
    /// Time allowed for one request, connecting included.
    pub timeout: Duration,
    /// TLS material (used for `https` URLs).
    pub tls: TlsFiles,
}

/// One bad setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The flag or environment variable.
    pub setting: String,
    /// What is wrong and what was expected.
    pub problem: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.problem)
    }
}

/// Every bad setting found while resolving, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<SettingError>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Default per-request timeout (the OpenTelemetry default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const GENERIC: &str = "OTEL_EXPORTER_OTLP_";

/// A value and the setting it came from.
struct Given<T> {
    value: T,
    setting: String,
}

struct Resolver<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The signal's own variables' prefix (`OTEL_EXPORTER_OTLP_TRACES_`).
    prefix: &'static str,
    errors: Vec<SettingError>,
}

impl Resolver<'_> {
    fn error(&mut self, setting: impl Into<String>, problem: impl Into<String>) {
        self.errors.push(SettingError {
            setting: setting.into(),
            problem: problem.into(),
        });
    }

    /// The flag value, else `OTEL_EXPORTER_OTLP_<SIGNAL>_<name>`, else
    /// `OTEL_EXPORTER_OTLP_<name>`; empty variables count as unset.
    fn pick<T: AsRef<std::ffi::OsStr>>(
        &self,
        flag: (&str, Option<&T>),
        name: &str,
    ) -> Option<Given<String>> {
        if let (f, Some(v)) = flag {
            return Some(Given {
                value: v.as_ref().to_string_lossy().into_owned(),
                setting: f.to_string(),
            });
        }
        for prefix in [self.prefix, GENERIC] {
            let var = format!("{prefix}{name}");
            if let Some(v) = (self.env)(&var).filter(|v| !v.trim().is_empty()) {
                return Some(Given {
                    value: v.trim().to_string(),
                    setting: var,
                });
            }
        }
        None
    }

    fn read_pem(&mut self, path: Option<Given<String>>, what: &str) -> Option<(Vec<u8>, String)> {
        let g = path?;
        match fs::read(Path::new(&g.value)) {
            Ok(bytes) => Some((bytes, g.setting)),
            Err(e) => {
                self.error(g.setting, format!("cannot read {what} {}: {e}", g.value));
                None
            }
        }
    }
}

impl OtlpConfig {
    /// Resolves flags and environment (`env` looks a variable up). `Ok(None)`
    /// when no endpoint is configured, i.e. OTLP export is off.
    ///
    /// # Errors
    /// Every malformed or unusable setting, each naming its flag or variable.
    pub fn resolve(
        signal: Signal,
        flags: &OtlpFlags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpConfig>, ConfigError> {
        let prefix = signal.env_prefix();
        let mut r = Resolver {
            env,
            prefix,
            errors: Vec::new(),
        };

        let protocol = match r.pick(("--otlp-protocol", flags.protocol.as_ref()), "PROTOCOL") {
            None => Protocol::Grpc,
            Some(g) => Protocol::parse(&g.value).unwrap_or_else(|| {
                r.error(
                    &g.setting,
                    format!(
                        "unknown protocol {:?} (expected grpc, http/protobuf or http/json)",
                        g.value
                    ),
                );
                Protocol::Grpc
            }),
        };

        // The endpoint: a base URL (flag, generic variable) or, from the
        // traces-specific variable, the full URL.
        let endpoint = if let Some(v) = &flags.endpoint {
            Some((v.clone(), "--otlp-endpoint".to_string(), false))
        } else if let Some(v) = (env)(&format!("{prefix}ENDPOINT")).filter(|v| !v.is_empty()) {
            Some((v, format!("{prefix}ENDPOINT"), true))
        } else {
            (env)("OTEL_EXPORTER_OTLP_ENDPOINT")
                .filter(|v| !v.is_empty())
                .map(|v| (v, "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), false))
        };
        let url = endpoint.and_then(|(raw, setting, whole)| {
            match endpoint_url(raw.trim(), protocol, whole, signal) {
                Ok(u) => Some((u, setting)),
                Err(problem) => {
                    r.error(setting, problem);
                    None
                }
            }
        });

        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        let mut add_headers =
            |r: &mut Resolver<'_>, setting: &str, list: &str| match parse_key_values(list) {
                Ok(kv) => {
                    for (k, v) in kv {
                        match (
                            HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
                            HeaderValue::from_str(&v),
                        ) {
                            (Ok(name), Ok(value)) => {
                                headers.retain(|(n, _)| *n != name);
                                headers.push((name, value));
                            }
                            _ => r.error(
                                setting,
                                format!("{k:?} is not a valid header name and value"),
                            ),
                        }
                    }
                }
                Err(problem) => r.error(setting, format!("{problem} (expected key=value,...)")),
            };
        for var in [format!("{GENERIC}HEADERS"), format!("{prefix}HEADERS")] {
            if let Some(list) = (r.env)(&var) {
                add_headers(&mut r, &var, &list);
            }
        }
        for h in &flags.headers {
            add_headers(&mut r, "--otlp-header", h);
        }

        let compression = match r.pick(
            ("--otlp-compression", flags.compression.as_ref()),
            "COMPRESSION",
        ) {
            None => Compression::None,
            Some(g) => match g.value.as_str() {
                "gzip" => Compression::Gzip,
                "none" => Compression::None,
                other => {
                    r.error(
                        g.setting,
                        format!("unknown compression {other:?} (expected gzip or none)"),
                    );
                    Compression::None
                }
            },
        };

        let timeout = match flags.timeout {
            Some(t) => t,
            None => match r.pick(("", None::<&String>), "TIMEOUT") {
                None => DEFAULT_TIMEOUT,
                Some(g) => match g.value.parse::<u64>() {
                    Ok(ms) if ms > 0 => Duration::from_millis(ms),
                    _ => {
                        r.error(
                            g.setting,
                            format!(
                                "{:?} is not a timeout (expected milliseconds, more than 0)",
                                g.value
                            ),
                        );
                        DEFAULT_TIMEOUT
                    }
                },
            },
        };

        let ca = r.pick(("--otlp-ca", flags.certificate.as_ref()), "CERTIFICATE");
        let ca = r.read_pem(ca, "CA certificate file");
        let cert = r.pick(
            ("--otlp-client-cert", flags.client_certificate.as_ref()),
            "CLIENT_CERTIFICATE",
        );
        let cert = r.read_pem(cert, "client certificate file");
        let key = r.pick(
            ("--otlp-client-key", flags.client_key.as_ref()),
            "CLIENT_KEY",
        );
        let key = r.read_pem(key, "client key file");
        let mut tls = TlsFiles {
            ca_pem: None,
            identity_pem: None,
        };
        if let Some((pem, setting)) = ca {
            if check_certs(&pem) {
                tls.ca_pem = Some(pem);
            } else {
                r.error(
                    setting,
                    "no PEM certificate in the file (expected -----BEGIN CERTIFICATE-----)",
                );
            }
        }
        match (cert, key) {
            (Some((c, cs)), Some((k, ks))) => {
                let mut ok = true;
                if !check_certs(&c) {
                    r.error(
                        cs,
                        "no PEM certificate in the file (expected -----BEGIN CERTIFICATE-----)",
                    );
                    ok = false;
                }
                if PrivateKeyDer::from_pem_slice(&k).is_err() {
                    r.error(
                        ks,
                        "no PEM private key in the file (expected -----BEGIN PRIVATE KEY-----)",
                    );
                    ok = false;
                }
                if ok {
                    tls.identity_pem = Some((c, k));
                }
            }
            (Some((_, s)), None) => {
                r.error(s, "a client certificate needs its key (--otlp-client-key)")
            }
            (None, Some((_, s))) => {
                r.error(s, "a client key needs its certificate (--otlp-client-cert)")
            }
            (None, None) => {}
        }

        if let Some((u, setting)) = &url
            && u.scheme() != Some(&Scheme::HTTPS)
            && (tls.ca_pem.is_some() || tls.identity_pem.is_some())
        {
            r.error(
                setting.clone(),
                "TLS certificates are configured but the endpoint is http:// (expected https://)",
            );
        }

        if !r.errors.is_empty() {
            return Err(ConfigError(r.errors));
        }
        Ok(url.map(|(url, url_setting)| OtlpConfig {
            signal,
            url,
            url_setting,
            protocol,
            headers,
            compression,
            timeout,
            tls,
        }))
    }

    /// What messages call this export: the URL and protocol, and the
    /// signal where the URL does not tell it (gRPC's is the server's
    /// origin, the same for every signal).
    pub fn target(&self) -> String {
        match (self.signal, self.protocol) {
            (Signal::Metrics, Protocol::Grpc) => format!("{} (grpc, metrics)", self.url),
            (_, protocol) => format!("{} ({})", self.url, protocol.name()),
        }
    }

    /// `host:port` of the endpoint, the port defaulted from the scheme.
    pub fn host_port(&self) -> (String, u16) {
        let host = self
            .url
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = self
            .url
            .port_u16()
            .unwrap_or(if self.url.scheme() == Some(&Scheme::HTTPS) {
                443
            } else {
                80
            });
        (host, port)
    }
}

fn check_certs(pem: &[u8]) -> bool {
    let mut any = false;
    for c in CertificateDer::pem_slice_iter(pem) {
        if c.is_err() {
            return false;
        }
        any = true;
    }
    any
}

/// Checks an endpoint URL and, for HTTP protocols given a base URL, appends
/// the signal's path (`/v1/traces`) to its path.
fn endpoint_url(raw: &str, protocol: Protocol, whole: bool, signal: Signal) -> Result<Uri, String> {
    const EXPECTED: &str = "expected a URL such as http://localhost:4317";
    let uri: Uri = raw
        .parse()
        .map_err(|e| format!("{raw:?} is not a URL ({e}); {EXPECTED}"))?;
    let scheme = uri.scheme_str();
    if scheme != Some("http") && scheme != Some("https") {
        return Err(format!(
            "{raw:?} has no http:// or https:// scheme; {EXPECTED}"
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{raw:?} has no host; {EXPECTED}"));
    }
    if protocol == Protocol::Grpc || whole {
        return Ok(uri);
    }
    let path = uri.path().trim_end_matches('/');
    let path = format!("{path}{}", signal.http_path());
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = uri.into_parts();
    parts.path_and_query =
        Some(PathAndQuery::try_from(pq.as_str()).map_err(|e| format!("{raw:?}: {e}; {EXPECTED}"))?);
    Uri::from_parts(parts).map_err(|e| format!("{raw:?}: {e}; {EXPECTED}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(
        flags: &OtlpFlags,
        vars: &[(&str, &str)],
    ) -> Result<Option<OtlpConfig>, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OtlpConfig::resolve(Signal::Traces, flags, &move |k| vars.get(k).cloned())
    }

    fn with_endpoint(url: &str) -> OtlpFlags {
        OtlpFlags {
            endpoint: Some(url.into()),
            ..OtlpFlags::default()
        }
    }

    #[test]
    fn no_endpoint_means_export_off() {
        assert!(resolve(&OtlpFlags::default(), &[]).unwrap().is_none());
    }

    #[test]
    fn each_signal_reads_its_own_variables_and_path() {
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4318/t"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "m=1"),
        ];
        let vars: std::collections::HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = move |k: &str| vars.get(k).cloned();
        let flags = OtlpFlags::default();
        let traces = OtlpConfig::resolve(Signal::Traces, &flags, &get)
            .unwrap()
            .unwrap();
        let metrics = OtlpConfig::resolve(Signal::Metrics, &flags, &get)
            .unwrap()
            .unwrap();
        assert_eq!(traces.url.to_string(), "http://t:4318/t");
        assert_eq!(metrics.url.to_string(), "http://c:4318/v1/metrics");
        assert_eq!(metrics.url_setting, "OTEL_EXPORTER_OTLP_ENDPOINT");
        assert_eq!(metrics.signal, Signal::Metrics);
        let names: Vec<(&str, &[u8])> = metrics
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        assert_eq!(names, [("m", &b"1"[..])]);
        assert!(traces.headers.is_empty());
    }

    #[test]
    fn http_base_urls_get_the_traces_path() {
        let c = resolve(
            &with_endpoint("http://c:4318/prefix/"),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.url.to_string(), "http://c:4318/prefix/v1/traces");
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        // The signal-specific variable is used whole.
        let c = resolve(
            &OtlpFlags::default(),
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:1"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.url.to_string(), "http://c:4318/custom");
        assert_eq!(c.url_setting, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        assert_eq!(c.protocol, Protocol::HttpJson);
        assert_eq!(c.host_port(), ("c".to_string(), 4318));
    }

    #[test]
    fn flags_win_over_variables() {
        let flags = OtlpFlags {
            endpoint: Some("https://flag:1".into()),
            protocol: Some("grpc".into()),
            headers: vec!["a=flag".into()],
            compression: Some("none".into()),
            timeout: Some(Duration::from_secs(3)),
            ..OtlpFlags::default()
        };
        let c = resolve(
            &flags,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:2"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "a=env,b=generic"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                    "b=traces,Authorization=Bearer%20x",
                ),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.url.to_string(), "https://flag:1/");
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.timeout, Duration::from_secs(3));
        let h: Vec<(String, String)> = c
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            h,
            [
                ("b".to_string(), "traces".to_string()),
                ("authorization".to_string(), "Bearer x".to_string()),
                ("a".to_string(), "flag".to_string()),
            ]
        );
        let c = resolve(
            &with_endpoint("http://x:1"),
            &[
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.timeout, Duration::from_millis(500));
    }

    #[test]
    fn every_bad_setting_is_named() {
        let flags = OtlpFlags {
            endpoint: Some("localhost:4317".into()),
            protocol: Some("http/xml".into()),
            certificate: Some("/nonexistent/ca.pem".into()),
            ..OtlpFlags::default()
        };
        let err = resolve(
            &flags,
            &[
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ],
        )
        .unwrap_err();
        let settings: Vec<&str> = err.0.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(
            settings,
            [
                "--otlp-protocol",
                "--otlp-endpoint",
                "OTEL_EXPORTER_OTLP_HEADERS",
                "OTEL_EXPORTER_OTLP_COMPRESSION",
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                "--otlp-ca",
            ],
            "{err}"
        );
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        assert_eq!(err.to_string().lines().count(), 6);
    }

    #[test]
    fn urls_need_a_scheme_and_host() {
        for bad in [
            "localhost:4317",
            "ftp://x:1",
            "http://",
            "http://a b:1",
            "not a url",
        ] {
            let err = resolve(&with_endpoint(bad), &[]).unwrap_err();
            assert_eq!(err.0[0].setting, "--otlp-endpoint", "{bad}");
            assert!(err.0[0].problem.contains("expected a URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn tls_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("flowspan-tls-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        fs::write(&junk, "not a certificate").unwrap();
        let flags = OtlpFlags {
            endpoint: Some("https://c:4317".into()),
            certificate: Some(junk.clone()),
            client_key: Some(junk.clone()),
            ..OtlpFlags::default()
        };
        let err = resolve(&flags, &[]).unwrap_err();
        assert_eq!(err.0[0].setting, "--otlp-ca");
        assert!(err.0[0].problem.contains("no PEM certificate"));
        assert_eq!(err.0[1].setting, "--otlp-client-key");
        assert!(err.0[1].problem.contains("needs its certificate"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
