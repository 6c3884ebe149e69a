//! The declared hooks of `fulcrum serve`: `--hook NAME=COMMAND` (repeatable) and
//! `--hook-timeout DUR`, validated into one [`HookConfig`].
//!
//! What it owns: the clap definitions of both flags, the value parser of a hook (each
//! error names the value; clap adds the flag and exits with code 2) and the rule that a
//! name is declared once. The commands are the only ones a rollout can run: the control
//! grammar carries a hook's *name*, never a command, and a name that is not in
//! [`HookConfig`] is refused before anything runs.
//!
//! What it does not do: run anything ([`crate::rollout::hook`] does).

use std::time::Duration;

use clap::Args;

use crate::duration::parse_duration;

/// Longest hook name.
pub const MAX_HOOK_NAME: usize = 64;

/// Default of `--hook-timeout`.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(600);

/// One declared hook: `NAME=COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// What the operator names in `rollout start hook NAME`.
    pub name: String,
    /// Run through `/bin/sh -c`.
    pub command: String,
}

/// The hook flags as clap parses them (flattened into `fulcrum serve`).
// The fields' doc comments are their --help text, not rustdoc links.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Clone, Args)]
pub struct HookArgs {
    /// A command a rollout may run for each node, as NAME=COMMAND (repeatable); run
    /// through /bin/sh -c with FULCRUM_NODE, FULCRUM_SERVICE, FULCRUM_HOOK and
    /// FULCRUM_ROLLOUT set. Nothing else can be run from the control interface.
    #[arg(long = "hook", value_name = "NAME=COMMAND", value_parser = parse_hook)]
    pub hook: Vec<Hook>,
    /// Kill a hook (its whole process group) still running after this long; the rollout
    /// then stops with that node in maint.
    #[arg(long, default_value = "10m", value_parser = parse_hook_timeout)]
    pub hook_timeout: Duration,
}

/// The validated hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookConfig {
    /// The declared hooks, in flag order.
    pub hooks: Vec<Hook>,
    /// How long one run may last.
    pub timeout: Duration,
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            hooks: Vec::new(),
            timeout: DEFAULT_HOOK_TIMEOUT,
        }
    }
}

impl HookConfig {
    /// Checks what spans several `--hook` flags: each name once.
    pub fn from_args(a: HookArgs) -> Result<HookConfig, String> {
        for (i, h) in a.hook.iter().enumerate() {
            if a.hook[..i].iter().any(|o| o.name == h.name) {
                return Err(format!(
                    "--hook {}=…: the name {:?} is declared twice",
                    h.name, h.name
                ));
            }
        }
        Ok(HookConfig {
            hooks: a.hook,
            timeout: a.hook_timeout,
        })
    }

    /// The hook declared as `name`.
    pub fn get(&self, name: &str) -> Option<&Hook> {
        self.hooks.iter().find(|h| h.name == name)
    }

    /// The declared names, comma-separated (for error messages).
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.hooks.iter().map(|h| h.name.as_str()).collect();
        if names.is_empty() {
            "none declared: start fulcrum serve with --hook NAME=COMMAND".to_owned()
        } else {
            names.join(", ")
        }
    }
}

/// Whether `s` can be a hook's name: 1..=64 of letters, digits, `-`, `_`, `.`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_HOOK_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// `NAME=COMMAND`.
pub fn parse_hook(s: &str) -> Result<Hook, String> {
    let Some((name, command)) = s.split_once('=') else {
        return Err(format!(
            "{s:?}: expected NAME=COMMAND, e.g. deploy=/usr/local/bin/deploy"
        ));
    };
    if !valid_name(name) {
        return Err(format!(
            "{name:?}: a name is 1 to {MAX_HOOK_NAME} letters, digits, '-', '_' or '.'"
        ));
    }
    if command.trim().is_empty() {
        return Err(format!("{name}: the command is empty"));
    }
    if command.contains('\0') {
        return Err(format!("{name}: the command holds a NUL byte"));
    }
    Ok(Hook {
        name: name.to_owned(),
        command: command.to_owned(),
    })
}

fn parse_hook_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Ok(d) if d.is_zero() => Err(format!("{s:?}: every hook would be killed at once")),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hooks_and_names_bad_values() {
        let h = parse_hook("restart=systemctl restart nginx && echo a=b").unwrap();
        assert_eq!(h.name, "restart");
        assert_eq!(h.command, "systemctl restart nginx && echo a=b");
        for (bad, want) in [
            ("restart", "expected NAME=COMMAND"),
            ("=true", "a name is"),
            ("re start=true", "a name is"),
            ("restart=  ", "the command is empty"),
            ("x=a\0b", "NUL"),
        ] {
            let e = parse_hook(bad).unwrap_err();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
        assert!(parse_hook(&format!("{}=true", "a".repeat(65))).is_err());
        assert!(parse_hook_timeout("0s").is_err());
        assert_eq!(parse_hook_timeout("90s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn a_name_is_declared_once() {
        let args = |hooks: &[&str]| HookArgs {
            hook: hooks.iter().map(|h| parse_hook(h).unwrap()).collect(),
            hook_timeout: DEFAULT_HOOK_TIMEOUT,
        };
        let e = HookConfig::from_args(args(&["a=true", "b=true", "a=false"])).unwrap_err();
        assert!(e.contains("\"a\" is declared twice"), "{e}");
        let c = HookConfig::from_args(args(&["a=true", "b=false"])).unwrap();
        assert_eq!(c.get("b").map(|h| h.command.as_str()), Some("false"));
        assert!(c.get("c").is_none());
        assert_eq!(c.names(), "a, b");
    }
}
