//! Settings in layers: built-in defaults < the YAML file of `--config` <
//! environment variables (`FLOWSPAN_*`, and the standard `OTEL_*` for the
//! OTLP settings) < flags.
//!
//! Every flag is a setting, and its long name is its key in the file
//! (`workers: 4`, `interface: [eth0, 'veth*']`) and, upper-cased with `_`
//! for `-` and `FLOWSPAN_` in front, its environment variable
//! (`FLOWSPAN_WORKERS=4`; a repeatable flag's values separated by spaces).
//! The layers are turned into the flags they stand for and checked by the
//! same parser as the command line, so a key means exactly what its flag
//! does; each value is first checked alone, so that a bad one is named by
//! its file, line and key (or its variable).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};
use marked_yaml::{LoaderOptions, Node};

use crate::args::{Args, clap_message};

/// Largest config file read.
const MAX_FILE: u64 = 1 << 20;

/// Flags that are not settings.
const NOT_SETTINGS: [&str; 4] = ["config", "print-config", "help", "version"];

/// OTLP settings and the standard variables that set them (checked in
/// this order), which come between the file and the flags.
const OTEL_VARIABLES: [(&str, &[&str]); 8] = [
    (
        "otlp-endpoint",
        &[
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ],
    ),
    (
        "otlp-protocol",
        &[
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ],
    ),
    (
        "otlp-header",
        &[
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ],
    ),
    (
        "otlp-compression",
        &[
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ],
    ),
    (
        "otlp-timeout",
        &[
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ],
    ),
    (
        "otlp-ca",
        &[
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        ],
    ),
    (
        "otlp-client-cert",
        &[
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        ],
    ),
    (
        "otlp-client-key",
        &[
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        ],
    ),
];

/// Settings whose values are `KEY=VALUE` lists that an `OTEL_*` variable
/// merges with: the file's entries for keys the variable does not name
/// still apply.
const MERGED_LISTS: [(&str, &[&str]); 2] = [
    (
        "otlp-header",
        &[
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ],
    ),
    ("resource-attribute", &["OTEL_RESOURCE_ATTRIBUTES"]),
];

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nobody set it: the built-in default, or nothing.
    Default,
    /// The config file, at this line.
    File { path: PathBuf, line: usize },
    /// An environment variable.
    Env(String),
    /// The command line.
    Flag,
}

/// `line` (a message) with the flag it starts with, `--KEY`, named by
/// where the setting came from when that was not the command line: the
/// file and line, or the variable.
pub fn locate(line: &str, origins: &BTreeMap<String, Origin>) -> String {
    let Some(rest) = line.strip_prefix("--") else {
        return line.to_owned();
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(rest.len());
    let key = &rest[..end];
    match origins.get(key) {
        Some(o @ (Origin::File { .. } | Origin::Env(_))) => {
            format!("{}{}", o.name(key), &rest[end..])
        }
        _ => line.to_owned(),
    }
}

impl Origin {
    /// How a message names the origin, for setting `key`: `FILE:LINE: key
    /// KEY`, `VARIABLE`, or `--KEY`.
    pub fn name(&self, key: &str) -> String {
        match self {
            Origin::Default => format!("--{key} (default)"),
            Origin::File { path, line } => format!("{}:{line}: key {key}", path.display()),
            Origin::Env(var) => var.clone(),
            Origin::Flag => format!("--{key}"),
        }
    }
}

/// The flags, file and environment resolved into one [`Args`].
#[derive(Debug)]
pub struct Layered {
    pub args: Args,
    /// Where each setting came from, by key; settings left at their
    /// default are absent.
    pub origins: BTreeMap<String, Origin>,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    /// The effective configuration as `--print-config` shows it.
    pub effective: Vec<Setting>,
}

/// One setting of the effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    /// Its values as given (none: not set).
    pub values: Vec<String>,
    pub origin: Origin,
    /// A flag without a value (`true`/`false` in the file).
    pub switch: bool,
    /// Several values allowed.
    pub list: bool,
}

/// Why the settings cannot be used: one line.
#[derive(Debug)]
pub enum ConfigError {
    /// A flag, key, variable or combination is wrong.
    Bad(String),
    /// `--help` or `--version`: clap prints it.
    Clap(clap::Error),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Bad(s) => f.write_str(s),
            ConfigError::Clap(e) => f.write_str(&clap_message(e)),
        }
    }
}

/// The command with no input required: the file or the environment may
/// give it, and `--print-config` needs none.
fn relaxed() -> clap::Command {
    Args::command().mut_group("input", |g| g.required(false))
}

/// What an argument takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Switch,
    One,
    List,
}

/// The settings: each argument's key (its long name) and shape, in the
/// order of `--help`, with the argument's id.
fn settings() -> Vec<(String, Shape)> {
    settings_with_ids()
        .into_iter()
        .map(|(k, _, s)| (k, s))
        .collect()
}

fn settings_with_ids() -> Vec<(String, String, Shape)> {
    Args::command()
        .get_arguments()
        .filter_map(|a| {
            let key = a.get_long()?.to_owned();
            if NOT_SETTINGS.contains(&key.as_str()) {
                return None;
            }
            let shape = match a.get_action() {
                ArgAction::SetTrue => Shape::Switch,
                ArgAction::Append => Shape::List,
                _ => Shape::One,
            };
            Some((key, a.get_id().as_str().to_owned(), shape))
        })
        .collect()
}

/// The keys that cannot be given with `key`: its declared conflicts, and
/// the other inputs for an input (`pcap`, `interface`).
fn conflicts(key: &str) -> Vec<String> {
    let command = Args::command();
    let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(key)) else {
        return Vec::new();
    };
    let mut out: Vec<String> = command
        .get_arg_conflicts_with(arg)
        .iter()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    let inputs = ["pcap", "interface"];
    if inputs.contains(&key) {
        out.extend(
            inputs
                .iter()
                .filter(|k| **k != key)
                .map(|k| (*k).to_owned()),
        );
    }
    out
}

/// `FLOWSPAN_KEY_NAME` for `key-name`.
pub fn env_name(key: &str) -> String {
    format!("FLOWSPAN_{}", key.to_ascii_uppercase().replace('-', "_"))
}

/// The tokens that stand for `values` of `key` on a command line.
fn tokens(key: &str, shape: Shape, values: &[String]) -> Vec<OsString> {
    match shape {
        Shape::Switch => vec![format!("--{key}").into()],
        _ => values
            .iter()
            .map(|v| format!("--{key}={v}").into())
            .collect(),
    }
}

/// Checks `values` of `key` alone; clap's complaint as one line.
fn check(key: &str, shape: Shape, values: &[String]) -> Result<(), String> {
    let mut argv: Vec<OsString> = vec!["engine".into()];
    argv.extend(tokens(key, shape, values));
    relaxed()
        .try_get_matches_from(argv)
        .map(|_| ())
        .map_err(|e| clap_message(&e))
}

fn parse_switch(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// The closest key to an unknown one, if one is close.
fn suggestion(unknown: &str, keys: &[(String, Shape)]) -> Option<String> {
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for j in 0..b.len() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != b[j]))
                    .min(row[j] + 1)
                    .min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    };
    let normal = unknown.replace('_', "-").to_ascii_lowercase();
    keys.iter()
        .map(|(k, _)| (distance(&normal, k), k))
        .filter(|(d, k)| {
            *d <= 2 || (k.len() > 4 && (k.starts_with(&normal) || normal.starts_with(k.as_str())))
        })
        .min()
        .map(|(_, k)| k.clone())
}

/// The values of key `key` at `node`, checked for shape.
fn file_values(
    path: &Path,
    key: &str,
    shape: Shape,
    node: &Node,
) -> Result<Option<Vec<String>>, String> {
    let at = |n: &Node| n.span().start().map_or(0, |m| m.line());
    let here = |n: &Node, what: &str| format!("{}:{}: key {key}: {what}", path.display(), at(n));
    let scalar = |n: &Node| -> Result<String, String> {
        match n {
            Node::Scalar(s) => Ok(s.as_str().to_owned()),
            Node::Sequence(_) => Err(here(n, "expected a single value, not a list")),
            Node::Mapping(_) => Err(here(n, "expected a value, not a mapping")),
        }
    };
    let empty = |v: &str| matches!(v, "" | "~" | "null");
    match (shape, node) {
        (Shape::Switch, n) => {
            let v = scalar(n)?;
            match parse_switch(&v) {
                _ if empty(&v) => Ok(None),
                Some(true) => Ok(Some(Vec::new())),
                Some(false) => Ok(None),
                None => Err(here(n, &format!("expected true or false, not {v:?}"))),
            }
        }
        (Shape::One, n) => {
            let v = scalar(n)?;
            Ok((!empty(&v)).then(|| vec![v]))
        }
        (Shape::List, Node::Sequence(items)) => {
            let values = items
                .iter()
                .map(|item| scalar(item).map_err(|_| here(item, "expected a list of values")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(values))
        }
        (Shape::List, n) => {
            let v = scalar(n)?;
            Ok((!empty(&v)).then(|| vec![v]))
        }
    }
}

/// The key of each `KEY=VALUE` entry of a comma-separated list.
fn list_keys(list: &str) -> Vec<String> {
    list.split(',')
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, _)| k.trim().to_ascii_lowercase())
        })
        .collect()
}

/// Resolves the command line `argv` (program name first) with the config
/// file it names (`--config`, or `FLOWSPAN_CONFIG`) and the environment
/// (`env` looks a variable up).
///
/// # Errors
/// A flag, key, value or variable is wrong, or the file cannot be read:
/// one line naming it and what was expected. `--help` and `--version`
/// come back as [`ConfigError::Clap`].
pub fn load(
    argv: &[OsString],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Layered, ConfigError> {
    let cli = relaxed()
        .try_get_matches_from(argv)
        .map_err(ConfigError::Clap)?;
    let print_config = cli.get_flag("print_config");
    let file: Option<PathBuf> = cli.get_one::<PathBuf>("config").cloned().or_else(|| {
        env("FLOWSPAN_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let keys = settings();
    let ids: BTreeMap<String, String> = settings_with_ids()
        .into_iter()
        .map(|(k, id, _)| (k, id))
        .collect();
    let id = |key: &str| {
        ids.get(key)
            .cloned()
            .unwrap_or_else(|| key.replace('-', "_"))
    };
    let on_command_line = |key: &str| cli.value_source(&id(key)) == Some(ValueSource::CommandLine);

    let mut origins: BTreeMap<String, Origin> = BTreeMap::new();
    let mut layered: Vec<OsString> = vec![argv.first().cloned().unwrap_or_else(|| "engine".into())];

    // The environment, under the flags.
    let mut from_env: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, shape) in &keys {
        let var = env_name(key);
        let Some(value) = env(&var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        if on_command_line(key) || conflicts(key).iter().any(|k| on_command_line(k)) {
            continue;
        }
        let values: Vec<String> = match shape {
            Shape::Switch => match parse_switch(value.trim()) {
                Some(true) => Vec::new(),
                Some(false) => continue,
                None => {
                    return Err(ConfigError::Bad(format!(
                        "{var}: expected true or false, not {value:?}"
                    )));
                }
            },
            Shape::One => vec![value.trim().to_owned()],
            Shape::List => value.split_whitespace().map(str::to_owned).collect(),
        };
        check(key, *shape, &values).map_err(|e| ConfigError::Bad(format!("{var}: {e}")))?;
        layered.extend(tokens(key, *shape, &values));
        origins.insert(key.clone(), Origin::Env(var));
        from_env.insert(key.clone(), values);
    }

    // The file, under both.
    if let Some(path) = &file {
        let text = read_file(path)?;
        let root = marked_yaml::parse_yaml_with_options(
            0,
            &text,
            LoaderOptions::default().error_on_duplicate_keys(true),
        )
        .map_err(|e| ConfigError::Bad(yaml_error(path, &e)))?;
        let Node::Mapping(map) = &root else {
            return Err(ConfigError::Bad(format!(
                "{}: expected a mapping of settings (key: value)",
                path.display()
            )));
        };
        for (k, node) in map.iter() {
            let key = k.as_str();
            let line = k.span().start().map_or(0, |m| m.line());
            let Some((_, shape)) = keys.iter().find(|(name, _)| name == key) else {
                let hint = suggestion(key, &keys)
                    .map(|s| format!("; did you mean {s}?"))
                    .unwrap_or_default();
                return Err(ConfigError::Bad(format!(
                    "{}:{line}: unknown key {key:?}{hint} (the keys are the flags' long names: engine --help)",
                    path.display()
                )));
            };
            let Some(mut values) =
                file_values(path, key, *shape, node).map_err(ConfigError::Bad)?
            else {
                continue;
            };
            check(key, *shape, &values).map_err(|e| {
                ConfigError::Bad(format!("{}:{line}: key {key}: {e}", path.display()))
            })?;
            // A higher layer that sets the key, or one it cannot be given
            // with (`--pcap` over the file's `interface`), wins.
            let above = |k: &str| on_command_line(k) || from_env.contains_key(k);
            if above(key) || conflicts(key).iter().any(|k| above(k)) {
                continue;
            }
            // An OTEL_* variable overrides the key, or, for a KEY=VALUE
            // list, the entries whose keys it names.
            if let Some((_, vars)) = MERGED_LISTS.iter().find(|(k, _)| *k == key) {
                let named: Vec<String> = vars
                    .iter()
                    .filter_map(|v| env(v))
                    .flat_map(|l| list_keys(&l))
                    .collect();
                values.retain(|kv| !list_keys(kv).first().is_some_and(|k| named.contains(k)));
            } else if let Some((_, vars)) = OTEL_VARIABLES.iter().find(|(k, _)| *k == key)
                && vars.iter().any(|v| env(v).is_some_and(|v| !v.is_empty()))
            {
                continue;
            }
            layered.extend(tokens(key, *shape, &values));
            origins.insert(
                key.to_owned(),
                Origin::File {
                    path: path.clone(),
                    line,
                },
            );
        }
    }

    // The flags, on top.
    layered.extend(argv.iter().skip(1).cloned());
    for (key, _) in &keys {
        if on_command_line(key) {
            origins.insert(key.clone(), Origin::Flag);
        }
    }
    let command = if print_config {
        relaxed()
    } else {
        Args::command()
    };
    let matches = command.try_get_matches_from(&layered).map_err(|e| {
        let layers = if origins.values().any(|o| !matches!(o, Origin::Flag)) {
            " (with the settings of the config file and the environment)"
        } else {
            ""
        };
        if layers.is_empty() {
            ConfigError::Clap(e)
        } else {
            ConfigError::Bad(format!("{}{layers}", clap_message(&e)))
        }
    })?;
    let args = Args::from_arg_matches(&matches).map_err(ConfigError::Clap)?;
    let effective = keys
        .iter()
        .map(|(key, shape)| {
            let values: Vec<String> = matches
                .get_raw(&id(key))
                .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let mut setting = Setting {
                key: key.clone(),
                values,
                origin: origins.get(key).cloned().unwrap_or(Origin::Default),
                switch: *shape == Shape::Switch,
                list: *shape == Shape::List,
            };
            if *shape == Shape::Switch {
                let on = matches.get_flag(&id(key));
                setting.values = vec![on.to_string()];
            }
            // An OTLP setting the standard variables give.
            if setting.origin == Origin::Default
                && let Some((_, vars)) = OTEL_VARIABLES.iter().find(|(k, _)| k == key)
                && let Some((var, value)) = vars
                    .iter()
                    .find_map(|v| env(v).filter(|x| !x.is_empty()).map(|x| (*v, x)))
            {
                setting.values = vec![value];
                setting.origin = Origin::Env(var.to_owned());
            }
            setting
        })
        .collect();
    Ok(Layered {
        args,
        origins,
        file,
        effective,
    })
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    let bad = |what: String| ConfigError::Bad(format!("--config {}: {what}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE {
        return Err(bad(format!(
            "{} bytes; a config file may have at most {MAX_FILE}",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        bad(format!(
            "not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

fn yaml_error(path: &Path, e: &marked_yaml::LoadError) -> String {
    use marked_yaml::LoadError as E;
    let at = |m: &marked_yaml::Marker| format!("{}:{}:{}", path.display(), m.line(), m.column());
    match e {
        E::TopLevelMustBeMapping(m) => {
            format!("{}: expected a mapping of settings (key: value)", at(m))
        }
        E::DuplicateKey(d) => {
            let first = d.prev_key.span().start().map_or(0, |m| m.line());
            match d.key.span().start() {
                Some(m) => format!(
                    "{}: key {:?} given twice (first on line {first})",
                    at(m),
                    d.key.as_str()
                ),
                None => format!("{}: key {:?} given twice", path.display(), d.key.as_str()),
            }
        }
        E::ScanError(m, s) => format!("{}: not YAML: {}", at(m), s.info()),
        E::UnexpectedAnchor(m) => format!("{}: anchors and aliases are not supported", at(m)),
        E::UnexpectedTag(m) => format!("{}: tags are not supported", at(m)),
        E::MappingKeyMustBeScalar(m) => format!("{}: a key must be a plain value", at(m)),
        E::TopLevelMustBeSequence(m) => format!("{}: unexpected document shape", at(m)),
    }
}

/// Header values and secrets are not printed.
fn shown(key: &str, value: &str) -> String {
    if key == "otlp-header" {
        match value.split_once('=') {
            Some((k, _)) => format!("{k}=<redacted>"),
            None => "<redacted>".to_owned(),
        }
    } else {
        value.to_owned()
    }
}

/// A YAML scalar for `value`, quoted when plain YAML would read it
/// otherwise: in double quotes with escapes when it holds characters a
/// single-quoted scalar would not keep (line breaks, other controls).
fn yaml_scalar(value: &str) -> String {
    let breaks =
        |c: char| c.is_control() || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}');
    if value.chars().any(breaks) {
        let mut out = String::from("\"");
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if breaks(c) => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        out.push('"');
        return out;
    }
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-+".contains(c))
        && !value.starts_with(['-', '.'])
        && parse_switch(value).is_none()
        && !matches!(value, "null" | "~");
    if plain || value.parse::<f64>().is_ok() {
        value.to_owned()
    } else {
        let mut out = String::from("'");
        out.push_str(&value.replace('\'', "''"));
        out.push('\'');
        out
    }
}

/// The config file's keys as a Markdown table (README "Config file"):
/// key, environment variable, default and meaning, from the flags'
/// definitions.
pub fn reference() -> String {
    let mut out = String::from(
        "| key | environment variable | default | meaning |\n| --- | --- | --- | --- |\n",
    );
    let command = Args::command();
    for arg in command.get_arguments() {
        let Some(key) = arg.get_long() else { continue };
        if NOT_SETTINGS.contains(&key) {
            continue;
        }
        let shape = match arg.get_action() {
            ArgAction::SetTrue => "`true`/`false`",
            ArgAction::Append => "list",
            _ => "",
        };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if matches!(arg.get_action(), ArgAction::SetTrue) {
            "`false`".to_owned()
        } else if defaults.is_empty() {
            String::new()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let value = arg
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| format!(" `{v}`"))
            .unwrap_or_default();
        let choices: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        let kind = if shape.is_empty() && !choices.is_empty() {
            format!("one of {}", choices.join(", "))
        } else if shape == "list" && !choices.is_empty() {
            format!("list of {}", choices.join(", "))
        } else if shape.is_empty() {
            value.trim().to_owned()
        } else if shape == "list" {
            format!("list of{value}")
        } else {
            shape.to_owned()
        };
        let _ = writeln!(
            out,
            "| `{key}` ({kind}) | `{}` | {default} | {} |",
            env_name(key),
            help.replace('|', "\\|")
        );
    }
    out
}

/// `--print-config`: the effective configuration as a config file that
/// gives it, each setting with where its value came from.
pub fn print(layered: &Layered) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# flowspan engine: effective configuration (defaults < {} < FLOWSPAN_* and OTEL_* variables < flags)",
        layered
            .file
            .as_ref()
            .map_or_else(|| "no config file".to_owned(), |p| p.display().to_string())
    );
    for s in &layered.effective {
        let from = match &s.origin {
            Origin::Default if s.values.is_empty() => "not set".to_owned(),
            Origin::Default => "default".to_owned(),
            Origin::File { path, line } => format!("{}:{line}", path.display()),
            Origin::Env(var) => var.clone(),
            Origin::Flag => format!("--{}", s.key),
        };
        let value = if s.switch {
            s.values.first().cloned().unwrap_or_else(|| "false".into())
        } else if s.values.is_empty() {
            let _ = writeln!(out, "# {}:    # {from}", s.key);
            continue;
        } else if s.list {
            let items: Vec<String> = s
                .values
                .iter()
                .map(|v| yaml_scalar(&shown(&s.key, v)))
                .collect();
            format!("[{}]", items.join(", "))
        } else {
            yaml_scalar(&shown(&s.key, &s.values[0]))
        };
        let _ = writeln!(out, "{}: {value}    # {from}", s.key);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<OsString> {
        std::iter::once("engine")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn with_file(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("flowspan-config-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("config file");
        path
    }

    fn load_with(a: &[&str], vars: &[(&str, &str)]) -> Result<Layered, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        load(&argv(a), &|k| {
            vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn layers_stack_defaults_file_environment_flags() {
        let file = with_file(
            "layers.yaml",
            "# an agent\npcap: trace.pcap\nworkers: 3\nbatch-size: 100\nactive-timeout: 30\n\
             local-net: [10.0.0.0/8, 192.168.0.0/16]\nquiet: true\notlp-endpoint: http://file:4317\n\
             resource-attribute: [a=file, b=file]\n",
        );
        let path = file.to_str().expect("path");
        let l = load_with(
            &["--config", path, "--batch-size", "7"],
            &[
                ("FLOWSPAN_WORKERS", "2"),
                ("FLOWSPAN_ACTIVE_TIMEOUT", "15"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317"),
                ("OTEL_RESOURCE_ATTRIBUTES", "b=env"),
            ],
        )
        .expect("loads");
        let a = &l.args;
        assert_eq!(a.pcap, [PathBuf::from("trace.pcap")]);
        assert_eq!(a.workers, 2, "the environment beats the file");
        assert_eq!(a.batch_size, 7, "a flag beats both");
        assert_eq!(a.active_timeout, 15_000_000_000);
        assert_eq!(a.local_nets.len(), 2);
        assert!(a.quiet);
        assert_eq!(a.otlp_endpoint, None, "the OTEL variable beats the file");
        assert_eq!(a.resource_attributes, ["a=file"], "the variable names b");
        assert_eq!(l.origins["workers"], Origin::Env("FLOWSPAN_WORKERS".into()));
        assert_eq!(l.origins["batch-size"], Origin::Flag);
        assert_eq!(
            l.origins["pcap"],
            Origin::File {
                path: file.clone(),
                line: 2
            }
        );
        let printed = print(&l);
        for line in [
            "workers: 2    # FLOWSPAN_WORKERS".to_owned(),
            "batch-size: 7    # --batch-size".to_owned(),
            format!("local-net: [10.0.0.0/8, 192.168.0.0/16]    # {path}:6"),
            "otlp-endpoint: 'http://env:4317'    # OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            "unestablished-timeout: 120    # default".to_owned(),
            "# kubeconfig:    # not set".to_owned(),
            format!("quiet: true    # {path}:7"),
        ] {
            assert!(printed.lines().any(|l| l == line), "{line:?} in\n{printed}");
        }
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn the_printed_configuration_reads_back_the_same() {
        let file = with_file(
            "roundtrip.yaml",
            "interface: ['veth*', eth0]\notlp-header: [authorization=secret]\nk8s-annotation: [team]\n\
             tunnel-port: ['vxlan=4789,8472']\nflow-memory: 64M\nmetrics-address: ':9615'\n",
        );
        let l = load_with(&["--config", file.to_str().expect("path")], &[]).expect("loads");
        let printed = print(&l);
        assert!(
            printed.contains("otlp-header: ['authorization=<redacted>']"),
            "{printed}"
        );
        assert!(!printed.contains("secret"), "{printed}");
        // Without the redacted header, what is printed is a config file
        // that gives the same settings.
        let again = with_file(
            "printed.yaml",
            &printed
                .lines()
                .filter(|l| !l.starts_with("otlp-header"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let l2 = load_with(&["--config", again.to_str().expect("path")], &[]).expect("reads back");
        let values = |l: &Layered| -> Vec<(String, Vec<String>)> {
            l.effective
                .iter()
                .filter(|s| s.key != "otlp-header")
                .map(|s| (s.key.clone(), s.values.clone()))
                .collect()
        };
        assert_eq!(values(&l), values(&l2));
        let _ = std::fs::remove_file(file);
        let _ = std::fs::remove_file(again);
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let cases: &[(&str, &str)] = &[
            (
                "pcap: x\nworkers: 0\n",
                ":2: key workers: invalid value '0' for '--workers <N>': 0 is not in 1..=1024",
            ),
            (
                "pcap: x\nworkrs: 2\n",
                ":2: unknown key \"workrs\"; did you mean workers?",
            ),
            (
                "pcap: x\nworkers: [1, 2]\n",
                ":2: key workers: expected a single value, not a list",
            ),
            (
                "pcap: x\nquiet: maybe\n",
                ":2: key quiet: expected true or false, not \"maybe\"",
            ),
            (
                "pcap: x\n\nbatch-size: {a: 1}\n",
                ":3: key batch-size: expected a value, not a mapping",
            ),
            (
                "pcap: x\npcap: y\n",
                ":2:1: key \"pcap\" given twice (first on line 1)",
            ),
            // Found by the config_file fuzz target: a key across lines.
            (
                "{H,LL,|\n\x08\n\n?\nH\x13:,|\n\x08\n\n?\nH\x13:,}~L",
                ":5:5: key \"| \\u{8}",
            ),
            ("pcap: [x\n", ":2:1: not YAML"),
            ("- pcap\n", ":1:1: expected a mapping of settings"),
            (
                "pcap: x\nflow-memory: 12Q\n",
                ":2: key flow-memory: invalid value '12Q' for '--flow-memory <SIZE>'",
            ),
        ];
        for (k, (text, want)) in cases.iter().enumerate() {
            let file = with_file(&format!("bad{k}.yaml"), text);
            let path = file.to_str().expect("path");
            let e = load_with(&["--config", path], &[]).expect_err(text);
            assert!(e.starts_with(&format!("{path}{want}")), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
            let _ = std::fs::remove_file(file);
        }
        let e = load_with(&["--pcap", "x"], &[("FLOWSPAN_WORKERS", "lots")]).expect_err("env");
        assert!(
            e.starts_with("FLOWSPAN_WORKERS: invalid value 'lots'"),
            "{e}"
        );
        let e = load_with(&["--config", "/nonexistent/flowspan.yaml"], &[]).expect_err("missing");
        assert!(
            e.starts_with("--config /nonexistent/flowspan.yaml: cannot read"),
            "{e}"
        );
        // Within the file: two inputs.
        let file = with_file("conflict.yaml", "pcap: x\ninterface: [eth0]\n");
        let e = load_with(&["--config", file.to_str().expect("path")], &[]).expect_err("conflict");
        assert!(
            e.ends_with("(with the settings of the config file and the environment)"),
            "{e}"
        );
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn a_flag_replaces_the_settings_it_cannot_be_given_with() {
        let file = with_file(
            "agent.yaml",
            "interface: [eth0]\nk8s-in-cluster: true\nflow-memory: 1G\nworkers: 3\n",
        );
        let path = file.to_str().expect("path");
        // Reprocessing a capture with an agent's settings.
        let l = load_with(
            &[
                "--config",
                path,
                "--pcap",
                "t.pcap",
                "--k8s-snapshot",
                "s.json",
                "--max-flows",
                "5",
            ],
            &[],
        )
        .expect("the flags win");
        assert!(l.args.interfaces.is_empty());
        assert!(!l.args.k8s_in_cluster);
        assert_eq!((l.args.flow_memory, l.args.max_flows), (None, Some(5)));
        assert_eq!(l.args.workers, 3, "the rest of the file applies");
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn the_environment_replaces_what_it_cannot_be_given_with_in_the_file() {
        let file = with_file("env-over.yaml", "pcap: x\nflow-memory: 1G\n");
        let l = load_with(
            &["--config", file.to_str().expect("path")],
            &[("FLOWSPAN_MAX_FLOWS", "9")],
        )
        .expect("loads");
        assert_eq!((l.args.flow_memory, l.args.max_flows), (None, Some(9)));
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn later_errors_name_where_the_setting_came_from() {
        let mut origins = BTreeMap::new();
        origins.insert(
            "otlp-endpoint".to_owned(),
            Origin::File {
                path: "/etc/f.yaml".into(),
                line: 4,
            },
        );
        origins.insert("batch-size".to_owned(), Origin::Flag);
        origins.insert("otlp-ca".to_owned(), Origin::Env("FLOWSPAN_OTLP_CA".into()));
        assert_eq!(
            locate("--otlp-endpoint: \"x\" is not a URL", &origins),
            "/etc/f.yaml:4: key otlp-endpoint: \"x\" is not a URL"
        );
        assert_eq!(
            locate("--otlp-ca x: missing", &origins),
            "FLOWSPAN_OTLP_CA x: missing"
        );
        assert_eq!(locate("--batch-size 0: no", &origins), "--batch-size 0: no");
        assert_eq!(locate("OTEL_X: no", &origins), "OTEL_X: no");
    }

    #[test]
    fn values_with_line_breaks_print_as_they_read() {
        let file = with_file("breaks.yaml", "pcap: \"a\\nb\\t'c\\\"\\\\d\\u2028e\"\n");
        let l = load_with(
            &["--config", file.to_str().expect("path"), "--print-config"],
            &[],
        )
        .expect("loads");
        assert_eq!(l.args.pcap, [PathBuf::from("a\nb\t'c\"\\d\u{2028}e")]);
        let printed = print(&l);
        let again = with_file("breaks-printed.yaml", &printed);
        let l2 = load_with(
            &["--config", again.to_str().expect("path"), "--print-config"],
            &[],
        )
        .expect("reads back");
        assert_eq!(l2.args.pcap, l.args.pcap, "{printed}");
        let _ = std::fs::remove_file(file);
        let _ = std::fs::remove_file(again);
    }

    #[test]
    fn every_flag_is_a_key_and_a_variable() {
        let keys = settings();
        assert!(keys.len() > 40, "{}", keys.len());
        for (key, _) in &keys {
            assert!(!key.contains('_'), "{key}");
            assert!(env_name(key).starts_with("FLOWSPAN_"));
        }
        assert!(
            keys.iter()
                .any(|(k, s)| k == "interface" && *s == Shape::List)
        );
        assert!(
            keys.iter()
                .any(|(k, s)| k == "quiet" && *s == Shape::Switch)
        );
    }
}
