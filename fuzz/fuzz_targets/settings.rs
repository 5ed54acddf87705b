//! The settings parsers the library holds: `--local-net` networks (which
//! must print back as they parse), the OTLP export settings from flags and
//! environment variables, and `OTEL_RESOURCE_ATTRIBUTES` lists.
#![no_main]

use std::time::Duration;

use engine::IpNet;
use exporter::otlp::{OtlpConfig, OtlpFlags, Signal};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    net: String,
    endpoint: Option<String>,
    protocol: Option<String>,
    headers: Vec<String>,
    compression: Option<String>,
    timeout_ms: Option<u32>,
    env: Vec<(String, String)>,
    resource: String,
}

fuzz_target!(|input: Input| {
    if let Ok(net) = input.net.parse::<IpNet>() {
        let printed = net.to_string();
        assert_eq!(printed.parse::<IpNet>().as_ref(), Ok(&net), "{printed}");
    }
    let flags = OtlpFlags {
        endpoint: input.endpoint,
        protocol: input.protocol,
        headers: input.headers,
        compression: input.compression,
        timeout: input
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms))),
        ..OtlpFlags::default()
    };
    let env = |k: &str| {
        input
            .env
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    let _ = OtlpConfig::resolve(Signal::Traces, &flags, &env);
    let _ = exporter::resource::parse_key_values(&input.resource);
});
