//! `fulcrum check`'s output: the normalised configuration, written back as TOML in
//! the file's own format — every key in [`KEYS`](super::keys::KEYS) order, with the value
//! in force (clap's default when the file does not set it, marked `# default`), one
//! `[[service]]` per service with `[defaults]` folded in. Two files that mean the same
//! give the same text, so it diffs; and the output is itself a valid file.
//!
//! Values are the flags' raw values, so they read as the operator wrote them (`2s`, not
//! a number of nanoseconds); secrets are never printed, only the files' paths.

use std::fmt::Write;

use super::args::KeyValue;
use super::keys::{Kind, Scope};
use super::FileConfig;

/// The normalised configuration of `file`.
pub(crate) fn render(file: &FileConfig) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Normalised by `fulcrum check` from {}:\n\
         # every key with the value in force; \"# default\" marks a value the file leaves\n\
         # to its default, and keys without a value are shown commented out.",
        file.path.display()
    );
    let services = file.services();
    if let Some(first) = services.first() {
        // Global keys are the same in every service: print them once.
        out.push('\n');
        keys(&mut out, &first.values, Scope::Global);
    }
    for s in services {
        let _ = write!(out, "\n[[service]]\nname = {}\n", string(&s.name));
        keys(&mut out, &s.values, Scope::Service);
        let _ = writeln!(out, "# in force: {}", s.config.summary());
        if let Some(ha) = &s.config.ha {
            let _ = writeln!(out, "# {}", ha.summary());
        }
    }
    out
}

/// The keys of `scope`, one line each.
fn keys(out: &mut String, values: &[KeyValue], scope: Scope) {
    for v in values.iter().filter(|v| v.key.scope == scope) {
        let name = v.key.name;
        let rendered = match (v.key.kind, &v.raw) {
            (Kind::Switch { primary: false, .. }, _) => continue,
            // The pair is printed as its primary flag: `preempt = false` is
            // `--no-preempt`.
            (Kind::Switch { off, .. }, _) => {
                let off_given = values
                    .iter()
                    .find(|o| o.key.name == off)
                    .is_some_and(|o| o.raw.as_deref() == Some(&["true".to_string()][..]));
                let defaulted = v.defaulted
                    && values
                        .iter()
                        .find(|o| o.key.name == off)
                        .is_none_or(|o| o.defaulted);
                line(out, name, &(!off_given).to_string(), defaulted);
                continue;
            }
            (Kind::Flag, vals) => {
                let on = vals.as_deref() == Some(&["true".to_string()][..]);
                line(out, name, &on.to_string(), v.defaulted);
                continue;
            }
            (_, None) => {
                let _ = writeln!(out, "# {name}: not set");
                continue;
            }
            (Kind::List, Some(vals)) => {
                let items: Vec<String> = vals.iter().map(|s| string(s)).collect();
                format!("[{}]", items.join(", "))
            }
            (Kind::OnOff, Some(vals)) => match vals.first().map(String::as_str) {
                Some("on" | "true" | "yes") => "true".into(),
                Some("off" | "false" | "no") => "false".into(),
                Some(other) => string(other),
                None => continue,
            },
            (Kind::Value, Some(vals)) => match vals.first() {
                Some(s) => scalar(s),
                None => continue,
            },
        };
        line(out, name, &rendered, v.defaulted);
    }
}

fn line(out: &mut String, name: &str, value: &str, defaulted: bool) {
    let _ = if defaulted {
        writeln!(out, "{name} = {value}  # default")
    } else {
        writeln!(out, "{name} = {value}")
    };
}

/// A decimal integer as a TOML integer (when it reads back the same), else a string.
fn scalar(s: &str) -> String {
    match s.parse::<i64>() {
        Ok(n) if n.to_string() == s => s.to_string(),
        _ => string(s),
    }
}

/// A TOML basic string.
pub(crate) fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_for_toml() {
        assert_eq!(string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
        assert_eq!(scalar("42"), "42");
        assert_eq!(scalar("042"), "\"042\"");
        assert_eq!(scalar("2s"), "\"2s\"");
        assert_eq!(scalar("18446744073709551615"), "\"18446744073709551615\"");
    }
}
