//! The OpenTelemetry resource every request carries: who produced the spans.
//!
//! Attributes, lowest precedence first: `service.name=flowspan`,
//! `service.version`, `host.name` (the kernel's host name) and `host.id`
//! (`/etc/machine-id`), then `OTEL_RESOURCE_ATTRIBUTES`, then
//! `OTEL_SERVICE_NAME`, then attributes given on the command line. A later
//! value replaces an earlier one in place, so the order stays stable.

use std::fs;

/// Resource attributes (all strings), in output order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `(key, value)` pairs, keys unique.
    pub attributes: Vec<(String, String)>,
}

impl Default for Resource {
    /// `service.name=flowspan` and `service.version`, nothing about the host.
    fn default() -> Self {
        Resource {
            attributes: vec![
                ("service.name".into(), "flowspan".into()),
                ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
            ],
        }
    }
}

impl Resource {
    /// The default resource plus `host.name` and `host.id` where the system
    /// provides them.
    pub fn detect() -> Self {
        let mut r = Resource::default();
        let first_line = |path: &str| {
            fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        if let Some(name) = first_line("/proc/sys/kernel/hostname") {
            r.set("host.name", &name);
        }
        if let Some(id) =
            first_line("/etc/machine-id").or_else(|| first_line("/var/lib/dbus/machine-id"))
        {
            r.set("host.id", &id);
        }
        r
    }

    /// Sets `key` to `value`, replacing an existing value in place.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.attributes.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_string(),
            None => self.attributes.push((key.to_string(), value.to_string())),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the `key1=value1,key2=value2` lists of `OTEL_RESOURCE_ATTRIBUTES`
/// and `OTEL_EXPORTER_OTLP_HEADERS`: whitespace around items is ignored and
/// values are percent-decoded.
///
/// # Errors
/// An item without `=`, an empty key, or a bad percent escape; the message
/// says which item.
pub fn parse_key_values(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in list.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("{item:?} is not key=value"));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("{item:?} has an empty key"));
        }
        let v = percent_decode(v.trim()).ok_or_else(|| format!("{item:?}: bad %-escape"))?;
        out.push((k.to_string(), v));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_lists_are_split_trimmed_and_decoded() {
        let kv = parse_key_values(" a=1, b = x%20y ,,c=%3D").unwrap();
        assert_eq!(
            kv,
            [
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "x y".to_string()),
                ("c".to_string(), "=".to_string())
            ]
        );
        assert!(parse_key_values("novalue").unwrap_err().contains("novalue"));
        assert!(parse_key_values("=v").is_err());
        assert!(parse_key_values("a=%zz").is_err());
        assert!(parse_key_values("a=%4").is_err());
    }

    #[test]
    fn set_replaces_in_place() {
        let mut r = Resource::default();
        r.set("service.name", "edge");
        r.set("k8s.node.name", "n1");
        assert_eq!(r.attributes[0], ("service.name".into(), "edge".into()));
        assert_eq!(r.get("k8s.node.name"), Some("n1"));
    }
}
