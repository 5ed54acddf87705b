//! Record filters: keep and drop rules on span attributes, evaluated on
//! each span as it is mapped (after enrichment), before it is encoded.
//!
//! A rule is one condition, `NAME=VALUES` or `NAME!=VALUES`, where VALUES
//! is one value or several separated by commas (any of them matches):
//!
//! - an integer or a range, `443` or `8000-8999`, for integer attributes
//!   (a string attribute matches the integer's text);
//! - an address or a network, `10.1.2.3` or `10.0.0.0/8`, for address
//!   attributes;
//! - otherwise a string, where `*` stands for any characters
//!   (`kube-*`).
//!
//! An array attribute matches if any of its strings does. An attribute the
//! span does not carry equals nothing, so `NAME!=V` holds for it.
//!
//! A span is kept when every keep rule holds and no drop rule does.

use std::fmt;
use std::net::IpAddr;

use engine::IpNet;

use crate::span::{FlowSpan, Value};

/// The namespaces of span attributes (the semantic conventions', and
/// `process.*` / `container.*` of enrichment); a rule naming anything else
/// is a mistake.
pub(crate) const NAMESPACES: [&str; 7] = [
    "flow.",
    "source.",
    "destination.",
    "network.",
    "tunnel.",
    "process.",
    "container.",
];

/// One value of a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// An integer range (a single integer is `n..=n`), and its text.
    Range(i64, i64, String),
    /// An address or network.
    Net(IpNet),
    /// A string, with `*` wildcards.
    Text(String),
}

impl Pattern {
    fn parse(s: &str) -> Result<Pattern, String> {
        if s.is_empty() {
            return Err("an empty value".into());
        }
        let int = |t: &str| -> Option<i64> {
            (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse().ok())
                .flatten()
        };
        if let Some(n) = int(s) {
            return Ok(Pattern::Range(n, n, s.to_owned()));
        }
        if let Some((a, b)) = s.split_once('-')
            && let (Some(a), Some(b)) = (int(a), int(b))
        {
            if a > b {
                return Err(format!("range {s} runs backwards"));
            }
            return Ok(Pattern::Range(a, b, s.to_owned()));
        }
        if s.parse::<IpAddr>().is_ok() || (s.contains('/') && s.contains(['.', ':'])) {
            return s.parse().map(Pattern::Net).map_err(|e| format!("{e}"));
        }
        Ok(Pattern::Text(s.to_owned()))
    }

    fn matches_str(&self, v: &str) -> bool {
        match self {
            Pattern::Range(a, b, text) => a == b && v == text,
            Pattern::Net(net) => v.parse::<IpAddr>().is_ok_and(|ip| net.contains(ip)),
            Pattern::Text(p) => glob(p, v),
        }
    }

    fn matches(&self, v: &Value) -> bool {
        match v {
            Value::Str(t) => self.matches_str(t.as_str()),
            Value::Int(n) => matches!(self, Pattern::Range(a, b, _) if (a..=b).contains(&n)),
            Value::StrArray(xs) => xs.iter().any(|x| self.matches_str(x)),
            Value::SharedArray(xs) => xs.iter().any(|x| self.matches_str(x)),
        }
    }
}

/// Whether `text` matches `pattern`, where `*` in the pattern stands for
/// any characters.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// One condition on a span attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    name: String,
    negated: bool,
    any_of: Vec<Pattern>,
    text: String,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Condition {
    type Err = String;

    /// Parses `NAME=VALUES` or `NAME!=VALUES`.
    fn from_str(s: &str) -> Result<Condition, String> {
        let (name, negated, values) = match s.split_once('=') {
            Some((n, v)) if n.ends_with('!') => (&n[..n.len() - 1], true, v),
            Some((n, v)) => (n, false, v),
            None => {
                return Err(format!(
                    "{s:?} is not NAME=VALUES or NAME!=VALUES (e.g. network.transport=tcp)"
                ));
            }
        };
        let name = name.trim();
        if !NAMESPACES.iter().any(|ns| name.starts_with(ns)) || name.contains(char::is_whitespace) {
            return Err(format!(
                "{name:?} is not a span attribute name (one of {}…)",
                NAMESPACES.join("…, ")
            ));
        }
        let any_of = values
            .split(',')
            .map(|v| Pattern::parse(v.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{s:?}: {e}"))?;
        Ok(Condition {
            name: name.to_owned(),
            negated,
            any_of,
            text: s.to_owned(),
        })
    }
}

impl Condition {
    /// Whether `span` meets the condition.
    pub fn holds(&self, span: &FlowSpan) -> bool {
        let found = span
            .attributes
            .iter()
            .find(|a| a.key == self.name)
            .is_some_and(|a| self.any_of.iter().any(|p| p.matches(&a.value)));
        found != self.negated
    }
}

/// Keep and drop rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordRules {
    /// Every one must hold for a span to be kept.
    pub keep: Vec<Condition>,
    /// A span for which any holds is dropped.
    pub drop: Vec<Condition>,
}

impl RecordRules {
    /// Whether there is any rule.
    pub fn is_empty(&self) -> bool {
        self.keep.is_empty() && self.drop.is_empty()
    }

    /// Whether `span` is kept.
    pub fn keeps(&self, span: &FlowSpan) -> bool {
        self.keep.iter().all(|c| c.holds(span)) && !self.drop.iter().any(|c| c.holds(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{Attribute, Text};

    fn span(attrs: &[(&'static str, Value)]) -> FlowSpan {
        FlowSpan {
            attributes: attrs
                .iter()
                .map(|(k, v)| Attribute {
                    key: k,
                    value: v.clone(),
                })
                .collect(),
            ..FlowSpan::default()
        }
    }

    fn s(v: &'static str) -> Value {
        Value::Str(Text::Static(v))
    }

    fn c(rule: &str) -> Condition {
        rule.parse().unwrap()
    }

    #[test]
    fn conditions_match_strings_ports_ranges_and_networks() {
        let sp = span(&[
            ("network.transport", s("tcp")),
            ("destination.port", Value::Int(8443)),
            ("source.address", s("10.1.2.3")),
            ("destination.k8s.namespace.name", s("kube-system")),
            (
                "network.policy.ingress",
                Value::StrArray(&["deny-all", "web"]),
            ),
        ]);
        for yes in [
            "network.transport=tcp",
            "network.transport=udp,tcp",
            "destination.port=8000-8999",
            "destination.port=8443",
            "source.address=10.0.0.0/8",
            "source.address=10.1.2.3",
            "destination.k8s.namespace.name=kube-*",
            "destination.k8s.namespace.name=*system",
            "destination.k8s.namespace.name=k*-s*m",
            "network.policy.ingress=web",
            "network.transport!=udp",
            "source.k8s.pod.name!=anything",
        ] {
            assert!(c(yes).holds(&sp), "{yes}");
        }
        for no in [
            "network.transport=udp",
            "destination.port=1-1000",
            "source.address=192.168.0.0/16",
            "source.address=2001:db8::/32",
            "destination.k8s.namespace.name=kube",
            "destination.k8s.namespace.name=*-sys",
            "network.policy.ingress=db",
            "network.transport!=tcp",
            "source.k8s.pod.name=anything",
        ] {
            assert!(!c(no).holds(&sp), "{no}");
        }
    }

    #[test]
    fn a_span_is_kept_when_every_keep_holds_and_no_drop() {
        let sp = span(&[
            ("network.transport", s("tcp")),
            ("destination.port", Value::Int(53)),
        ]);
        let rules = |keep: &[&str], drop: &[&str]| RecordRules {
            keep: keep.iter().map(|r| c(r)).collect(),
            drop: drop.iter().map(|r| c(r)).collect(),
        };
        assert!(rules(&[], &[]).keeps(&sp));
        assert!(rules(&["network.transport=tcp"], &[]).keeps(&sp));
        assert!(!rules(&["network.transport=tcp", "destination.port=443"], &[]).keeps(&sp));
        assert!(!rules(&["network.transport=tcp"], &["destination.port=53"]).keeps(&sp));
        assert!(rules(&[], &["destination.port=54-60"]).keeps(&sp));
    }

    #[test]
    fn bad_rules_say_what_was_expected() {
        let e = |r: &str| r.parse::<Condition>().unwrap_err();
        assert!(e("network.transport").contains("NAME=VALUES"));
        assert!(e("transport=tcp").contains("not a span attribute name"));
        assert!(e("destination.port=9-1").contains("runs backwards"));
        assert!(
            e("source.address=10.0.0.1/8").contains("10.0.0.0/8"),
            "{}",
            e("source.address=10.0.0.1/8")
        );
        assert!(e("network.transport=tcp,").contains("empty value"));
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("a*", "a"));
        assert!(glob("*a*a*", "banana"));
        assert!(!glob("a*a", "a"));
        assert!(glob("", ""));
        assert!(!glob("", "x"));
    }
}
