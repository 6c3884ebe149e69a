//! TOML text → [`Document`]: the file's keys, checked against [`KEYS`](super::keys::KEYS)
//! (known, in the right place, of the right TOML type) and turned into flag arguments,
//! each remembering its line and how it was written.
//!
//! The layout: global keys at the top; `[defaults]` with per-service keys; one
//! `[[service]]` table per service, with a `name` and per-service keys.
//!
//! What it does not do: judge values. `"2x"` for a duration passes here and is refused
//! by the flag's own clap value parser ([`super::args`]), which names the line.

use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{line_of, FileError, FileErrors};
use super::keys::{lookup, suggest, Key, Kind, Scope};

/// One flag argument from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    /// The key as written (`preempt`).
    pub(crate) key: &'static str,
    /// The flag it became (`no-preempt` for `preempt = false`).
    pub(crate) flag: &'static str,
    /// The flag's value; `None` for a flag without one.
    pub(crate) value: Option<String>,
    /// The TOML value as written (`"10.0.0.1"`), for errors.
    pub(crate) shown: String,
    /// 1-based line of the value.
    pub(crate) line: usize,
}

impl Item {
    /// The command-line argument: `--flag=value` (one argument, so a value that starts
    /// with `-` is never read as a flag) or `--flag`.
    pub(crate) fn arg(&self) -> std::ffi::OsString {
        match &self.value {
            Some(v) => format!("--{}={v}", self.flag).into(),
            None => format!("--{}", self.flag).into(),
        }
    }
}

/// One key and what it became (a list key gives several items; `false` for a switch
/// with no opposite would give none).
#[derive(Debug, Clone)]
pub(crate) struct Setting {
    /// The key.
    pub(crate) key: &'static Key,
    /// Its flag arguments.
    pub(crate) items: Vec<Item>,
}

/// One `[[service]]` table.
#[derive(Debug, Clone)]
pub(crate) struct RawService {
    /// Its `name`.
    pub(crate) name: String,
    /// Line of the table (its `name`, else its first key).
    pub(crate) line: usize,
    /// Its per-service keys.
    pub(crate) settings: Vec<Setting>,
}

impl RawService {
    /// Whether the service sets `key` itself.
    pub(crate) fn sets(&self, key: &str) -> bool {
        self.settings.iter().any(|s| s.key.name == key)
    }
}

/// The file, structurally checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct Document {
    /// Global keys (top of the file).
    pub(crate) globals: Vec<Setting>,
    /// `[defaults]`: per-service keys for every service that does not set them.
    pub(crate) defaults: Vec<Setting>,
    /// The services, in file order.
    pub(crate) services: Vec<RawService>,
}

/// Longest service name: it will name the service in commands and metrics.
const MAX_NAME: usize = 64;

/// Parses and checks the structure; every problem is added to `errors`, and what could
/// be read is returned (so later stages can report their errors too).
pub(crate) fn parse(path: &Path, text: &str, errors: &mut FileErrors) -> Document {
    let root = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let at = e.span().map_or(0, |s| s.start);
            let line = line_of(text, at);
            let col = column_of(text, at);
            errors.push(FileError::line(
                path,
                line,
                format!("TOML syntax, column {col}: {}", e.message().trim_end()),
            ));
            return Document::default();
        }
    };
    let cx = Cx { path, text };
    let mut doc = Document::default();
    for (k, v) in sorted(root.get_ref()) {
        let name = k.get_ref().as_ref();
        match name {
            "service" => cx.services(v, &mut doc.services, errors),
            "defaults" => match v.get_ref() {
                DeValue::Table(t) => {
                    for (k, v) in sorted(t) {
                        if k.get_ref() == "name" {
                            errors.push(cx.at_key(
                                k,
                                v,
                                "a name belongs in each [[service]], not in [defaults]",
                            ));
                            continue;
                        }
                        if let Some(s) = cx.setting(k, v, Scope::Service, "[defaults]", errors) {
                            doc.defaults.push(s);
                        }
                    }
                }
                other => errors.push(cx.at_key(
                    k,
                    v,
                    format!("expected a table ([defaults]), got {}", type_name(other)),
                )),
            },
            _ => {
                if let Some(s) = cx.setting(k, v, Scope::Global, "the top of the file", errors) {
                    doc.globals.push(s);
                }
            }
        }
    }
    if doc.services.is_empty() && errors.is_empty() {
        errors.push(FileError::file(
            path,
            "no [[service]] table (give at least one, with name, listen and backend)",
        ));
    }
    doc
}

/// A table's entries in file order (the parsed map is sorted by key).
fn sorted<'a, 'i>(
    t: &'a DeTable<'i>,
) -> Vec<(
    &'a Spanned<toml::de::DeString<'i>>,
    &'a Spanned<DeValue<'i>>,
)> {
    let mut v: Vec<_> = t.iter().collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

/// 1-based column (in chars) of byte `offset`.
fn column_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    let start = text.as_bytes()[..end]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    1 + text.get(start..end).map_or(0, |s| s.chars().count())
}

/// The TOML type, as an error names it.
fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// What every check needs: the file's path and text.
struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    fn line(&self, span: std::ops::Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    /// How a value is written in the file.
    fn shown(&self, span: std::ops::Range<usize>) -> String {
        self.text.get(span).unwrap_or("?").trim().to_string()
    }

    /// An error of `key = value`, at the value's line.
    fn at_key(
        &self,
        k: &Spanned<toml::de::DeString<'_>>,
        v: &Spanned<DeValue<'_>>,
        msg: impl Into<String>,
    ) -> FileError {
        FileError::key(
            self.path,
            self.line(k.span()),
            k.get_ref(),
            &self.shown(v.span()),
            msg,
        )
    }

    /// The `service` key: an array of tables.
    fn services(
        &self,
        v: &Spanned<DeValue<'_>>,
        out: &mut Vec<RawService>,
        errors: &mut FileErrors,
    ) {
        let tables = match v.get_ref() {
            DeValue::Array(a) => a.iter().collect::<Vec<_>>(),
            DeValue::Table(_) => {
                errors.push(FileError::line(
                    self.path,
                    self.line(v.span()),
                    "write each service as [[service]] (an array of tables), not [service]",
                ));
                return;
            }
            other => {
                errors.push(FileError::line(
                    self.path,
                    self.line(v.span()),
                    format!(
                        "service: expected [[service]] tables, got {}",
                        type_name(other)
                    ),
                ));
                return;
            }
        };
        for t in tables {
            let DeValue::Table(table) = t.get_ref() else {
                errors.push(FileError::line(
                    self.path,
                    self.line(t.span()),
                    format!(
                        "service: expected [[service]] tables, got {}",
                        type_name(t.get_ref())
                    ),
                ));
                continue;
            };
            let entries = sorted(table);
            let first = entries
                .first()
                .map_or(t.span().start, |(k, _)| k.span().start);
            let mut svc = RawService {
                name: String::new(),
                line: line_of(self.text, first),
                settings: Vec::new(),
            };
            let mut named = false;
            for (k, v) in entries {
                if k.get_ref() != "name" {
                    if let Some(s) = self.setting(k, v, Scope::Service, "[[service]]", errors) {
                        svc.settings.push(s);
                    }
                    continue;
                }
                named = true;
                svc.line = self.line(k.span());
                let DeValue::String(name) = v.get_ref() else {
                    errors.push(self.at_key(
                        k,
                        v,
                        format!("expected a string, got {}", type_name(v.get_ref())),
                    ));
                    continue;
                };
                if let Err(why) = check_name(name) {
                    errors.push(self.at_key(k, v, why));
                    continue;
                }
                if let Some(other) = out.iter().find(|o| o.name == name.as_ref()) {
                    errors.push(self.at_key(
                        k,
                        v,
                        format!(
                            "service name already used at line {} (each service once)",
                            other.line
                        ),
                    ));
                }
                svc.name = name.to_string();
            }
            if !named {
                errors.push(FileError::line(
                    self.path,
                    svc.line,
                    "a [[service]] has no name (name = \"web\")",
                ));
            }
            out.push(svc);
        }
    }

    /// One key in a table where keys of `scope` belong (`place` names it for errors).
    fn setting(
        &self,
        k: &Spanned<toml::de::DeString<'_>>,
        v: &Spanned<DeValue<'_>>,
        scope: Scope,
        place: &str,
        errors: &mut FileErrors,
    ) -> Option<Setting> {
        let name = k.get_ref().as_ref();
        let Some(key) = lookup(name) else {
            let hint = match suggest(name, &["service", "defaults", "name"]) {
                Some(s) => format!(" (did you mean \"{s}\"?)"),
                None => String::new(),
            };
            let what = if super::keys::NOT_KEYS.contains(&name) {
                "a configuration file cannot name another".to_string()
            } else {
                format!("unknown key{hint}")
            };
            errors.push(self.at_key(k, v, what));
            return None;
        };
        if key.scope != scope {
            let msg = match key.scope {
                Scope::Global => format!(
                    "{name} is a global key: write it at the top of the file, before any table \
                     (here it is in {place})"
                ),
                Scope::Service => format!(
                    "{name} is a per-service key: write it in a [[service]] table, or in \
                     [defaults] for every service"
                ),
            };
            errors.push(self.at_key(k, v, msg));
            return None;
        }
        match self.items(key, v) {
            Ok(items) => Some(Setting { key, items }),
            Err(msg) => {
                errors.push(self.at_key(k, v, msg));
                None
            }
        }
    }

    /// The flag arguments of one key's value, or what is wrong with its TOML type.
    fn items(&self, key: &'static Key, v: &Spanned<DeValue<'_>>) -> Result<Vec<Item>, String> {
        let item = |flag: &'static str, value: Option<String>, span: std::ops::Range<usize>| Item {
            key: key.name,
            flag,
            value,
            shown: self.shown(span.clone()),
            line: self.line(span),
        };
        let got = type_name(v.get_ref());
        match key.kind {
            Kind::Value => match scalar(v.get_ref()) {
                Some(s) => Ok(vec![item(key.name, Some(s), v.span())]),
                None => Err(format!("expected a string, got {got}")),
            },
            Kind::OnOff => match v.get_ref() {
                DeValue::Boolean(b) => {
                    let s = if *b { "on" } else { "off" };
                    Ok(vec![item(key.name, Some(s.into()), v.span())])
                }
                DeValue::String(s) => Ok(vec![item(key.name, Some(s.to_string()), v.span())]),
                _ => Err(format!("expected true or false, got {got}")),
            },
            Kind::Flag => match v.get_ref() {
                DeValue::Boolean(true) => Ok(vec![item(key.name, None, v.span())]),
                DeValue::Boolean(false) => Ok(Vec::new()),
                _ => Err(format!("expected true or false, got {got}")),
            },
            Kind::Switch { off, .. } => match v.get_ref() {
                DeValue::Boolean(true) => Ok(vec![item(key.name, None, v.span())]),
                DeValue::Boolean(false) => Ok(vec![item(off, None, v.span())]),
                _ => Err(format!("expected true or false, got {got}")),
            },
            Kind::List => match v.get_ref() {
                DeValue::String(s) => Ok(vec![item(key.name, Some(s.to_string()), v.span())]),
                DeValue::Array(a) => a
                    .iter()
                    .map(|e| match e.get_ref() {
                        DeValue::String(s) => Ok(item(key.name, Some(s.to_string()), e.span())),
                        other => Err(format!(
                            "expected an array of strings, got {} in it ({})",
                            type_name(other),
                            self.shown(e.span())
                        )),
                    })
                    .collect(),
                _ => Err(format!("expected an array of strings, got {got}")),
            },
        }
    }
}

/// A string, or an integer in decimal (TOML allows `0x`, `0o`, `0b` and `_`).
fn scalar(v: &DeValue<'_>) -> Option<String> {
    match v {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(|n| n.to_string()),
        _ => None,
    }
}

/// A service name: it will name the service in commands and metrics, so it is short
/// and made of characters that need no quoting.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("a service name has 1 to {MAX_NAME} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "character {c:?} in a service name (use letters, digits, '-', '_', '.')"
        ));
    }
    Ok(())
}
