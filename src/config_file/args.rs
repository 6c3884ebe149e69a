//! One service of a [`Document`] → the `serve` command line it stands for → the same
//! clap parser and the same validation as flags → [`ServeConfig`].
//!
//! Each argument remembers the [`Item`] it came from, so when clap or the validation
//! refuses a flag, the error is moved back to the key and its line. Flags given on the
//! command line beside `--config` ([`Overrides`]) replace the file's key of the same
//! name wherever it is written (top, `[defaults]`, `[[service]]`).

use std::ffi::OsString;
use std::path::Path;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};

use super::error::FileError;
use super::keys::{lookup, serve_command, Key, Kind, KEYS};
use super::parse::{Document, Item, RawService};
use crate::config::{ServeArgs, ServeConfig};

/// `serve` flags given on the command line with `--config`, as raw values.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    flags: Vec<(&'static Key, Vec<OsString>)>,
}

impl Overrides {
    /// The flags the operator typed (not defaults) in `serve`'s matches, but `--config`.
    pub fn from_matches(m: &ArgMatches) -> Overrides {
        let mut flags = Vec::new();
        for arg in serve_command().get_arguments() {
            let Some(key) = arg.get_long().and_then(lookup) else {
                continue;
            };
            let id = arg.get_id().as_str();
            if m.value_source(id) != Some(ValueSource::CommandLine) {
                continue;
            }
            let raw = match m.try_get_raw(id) {
                Ok(Some(vals)) => vals.map(|v| v.to_os_string()).collect(),
                _ => continue,
            };
            flags.push((key, raw));
        }
        Overrides { flags }
    }

    /// Whether the command line sets `key` (or the other flag of its pair).
    fn replaces(&self, key: &Key) -> bool {
        self.flags.iter().any(|(k, _)| {
            k.name == key.name || matches!(key.kind, Kind::Switch { off, .. } if off == k.name)
        })
    }

    /// The flags as arguments.
    fn argv(&self) -> Vec<OsString> {
        let mut out = Vec::new();
        for (k, raw) in &self.flags {
            for v in raw {
                if let Kind::Switch { .. } | Kind::Flag = k.kind {
                    if v == "true" {
                        out.push(format!("--{}", k.name).into());
                    }
                    continue;
                }
                let mut a = OsString::from(format!("--{}=", k.name));
                a.push(v);
                out.push(a);
            }
        }
        out
    }
}

/// The items that make up one service: globals, then `[defaults]` the service does not
/// set itself, then its own keys; a key given on the command line is left out.
pub(crate) fn argv_items<'d>(
    doc: &'d Document,
    svc: &'d RawService,
    ov: &Overrides,
) -> Vec<&'d Item> {
    let globals = doc.globals.iter();
    let defaults = doc.defaults.iter().filter(|s| !svc.sets(s.key.name));
    globals
        .chain(defaults)
        .chain(svc.settings.iter())
        .filter(|s| !ov.replaces(s.key))
        .flat_map(|s| s.items.iter())
        .collect()
}

/// The flag arguments of one service, as `fulcrum serve` would receive them.
pub(crate) fn argv(doc: &Document, svc: &RawService, ov: &Overrides) -> Vec<OsString> {
    let mut v: Vec<OsString> = argv_items(doc, svc, ov).iter().map(|i| i.arg()).collect();
    v.extend(ov.argv());
    v
}

/// One service, parsed and validated.
pub(crate) struct Parsed {
    /// The validated configuration.
    pub(crate) config: ServeConfig,
    /// Every key with its value(s) in force — set, or clap's default — as raw flag
    /// values; `None` for a key not set that has no default.
    pub(crate) values: Vec<KeyValue>,
}

/// Parses one service with `serve`'s own parser and validates it.
pub(crate) fn parse_service(
    path: &Path,
    doc: &Document,
    svc: &RawService,
    ov: &Overrides,
    nofile: u64,
) -> Result<Parsed, Vec<FileError>> {
    let origins = argv_items(doc, svc, ov);
    let locate = |flag: Option<&str>, value: Option<&str>, msg: String| {
        locate(path, svc, &origins, flag, value, msg)
    };
    // Each value alone first, with its flag's own value parser: so every bad value is
    // reported, not only the first clap meets.
    let cmd = serve_command();
    // (Clap parses values before it checks what is required, so a lone flag reports its
    // value's error, if any, and otherwise only what else is missing: ignored here.)
    let bad: Vec<FileError> = origins
        .iter()
        .filter_map(|i| {
            let e = cmd.clone().try_get_matches_from([i.arg()]).err()?;
            match e.kind() {
                ErrorKind::MissingRequiredArgument | ErrorKind::ArgumentConflict => None,
                _ => Some(clap_error(&e, locate)),
            }
        })
        .collect();
    if !bad.is_empty() {
        return Err(bad);
    }
    let one = |e: FileError| vec![e];
    let m = cmd
        .try_get_matches_from(argv(doc, svc, ov))
        .map_err(|e| one(clap_error(&e, locate)))?;
    let args = ServeArgs::from_arg_matches(&m).map_err(|e| one(clap_error(&e, locate)))?;
    let mut config = ServeConfig::from_args(args.clone(), nofile).map_err(|e| {
        let msg = e.0;
        let flag = flags_in(&msg)
            .into_iter()
            .find(|f| origins.iter().any(|i| i.flag == *f))
            .map(str::to_string);
        one(locate(flag.as_deref(), None, msg))
    })?;
    config.name = svc.name.clone();
    Ok(Parsed {
        config,
        values: values(&m),
    })
}

/// One key's value(s) in force in a parsed service.
#[derive(Debug, Clone)]
pub(crate) struct KeyValue {
    /// The key.
    pub(crate) key: &'static Key,
    /// Raw flag values; `None` when not set and without a default.
    pub(crate) raw: Option<Vec<String>>,
    /// Clap's default (not set in the file nor on the command line).
    pub(crate) defaulted: bool,
}

/// The value(s) of every key in `m`, in [`KEYS`] order.
fn values(m: &ArgMatches) -> Vec<KeyValue> {
    let cmd = serve_command();
    KEYS.iter()
        .map(|key| {
            let id = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(key.name))
                .map(|a| a.get_id().as_str().to_string())
                .unwrap_or_default();
            let raw = m.try_get_raw(&id).ok().flatten().map(|vals| {
                vals.map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            });
            let defaulted = !matches!(m.value_source(&id), Some(ValueSource::CommandLine));
            KeyValue {
                key,
                raw,
                defaulted,
            }
        })
        .collect()
}

/// Every `--flag` named in a message, in order.
fn flags_in(msg: &str) -> Vec<&str> {
    msg.match_indices("--")
        .filter_map(|(i, _)| {
            let rest = &msg[i + 2..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '-'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            lookup(name).map(|k| k.name)
        })
        .collect()
}

/// Turns a clap error about the synthesised command line into a file error at the key
/// it came from.
fn clap_error(
    e: &clap::Error,
    locate: impl Fn(Option<&str>, Option<&str>, String) -> FileError,
) -> FileError {
    let args: Vec<String> = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => Vec::new(),
    };
    // "--backend <BACKEND>" → "backend".
    let names: Vec<String> = args
        .iter()
        .map(|a| {
            a.trim_start_matches('-')
                .split([' ', '=', '<'])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let msg = match e.kind() {
        ErrorKind::MissingRequiredArgument => {
            format!("missing required key(s): {}", names.join(", "))
        }
        _ => match std::error::Error::source(e) {
            // A value parser's own message (what is wrong with the value).
            Some(src) => {
                let s = src.to_string();
                match value.and_then(|v| s.strip_prefix(&format!("\"{v}\" "))) {
                    Some(rest) => rest.to_string(),
                    None => s,
                }
            }
            None => e
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_string(),
        },
    };
    let flag = match e.kind() {
        ErrorKind::MissingRequiredArgument => None,
        _ => names.first().map(String::as_str),
    };
    locate(flag, value, msg)
}

/// The file error for `msg` about `flag` (with `value`): at the item that gave it if
/// the file did, else at the service's table.
fn locate(
    path: &Path,
    svc: &RawService,
    origins: &[&Item],
    flag: Option<&str>,
    value: Option<&str>,
    msg: String,
) -> FileError {
    let item = flag.and_then(|f| {
        let mut of_flag = origins.iter().filter(|i| i.flag == f);
        of_flag
            .clone()
            .find(|i| value.is_some() && i.value.as_deref() == value)
            .or_else(|| of_flag.next())
    });
    match item {
        Some(i) => {
            // The message often repeats "--flag value: "; the location already says it.
            let v = i.value.as_deref().unwrap_or_default();
            let msg = msg
                .strip_prefix(&format!("--{} {v}: ", i.flag))
                .or_else(|| msg.strip_prefix(&format!("--{}: ", i.flag)))
                .map_or_else(|| msg.clone(), str::to_string);
            FileError::key(path, i.line, i.key, &i.shown, msg)
        }
        None => FileError::line(path, svc.line, format!("service \"{}\": {msg}", svc.name)),
    }
}
