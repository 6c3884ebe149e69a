//! The one table of configuration-file keys: every `fulcrum serve` flag, whether it is
//! global (top of the file) or per service (`[[service]]` and `[defaults]`), and how a
//! TOML value becomes the flag's argument.
//!
//! What it owns: [`KEYS`], the lookup and the closest-key suggestion, and the generated
//! key list of `docs/configuration.md` (`docs_table`, built for the tests). Unit tests
//! check the table against the clap definition of `ServeArgs` (same names, same kinds),
//! so a new flag without a key fails the tests, not an operator.
//!
//! What it does not do: parse values. The clap value parsers of [`ServeArgs`] do, once,
//! for flags and file alike.

#[cfg(test)]
use clap::ArgAction;
use clap::{Args, Command};

use crate::config::ServeArgs;

/// Where a key may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// At the top of the file, before any table: one value for the whole process.
    Global,
    /// In a `[[service]]` table, or in `[defaults]` for every service.
    Service,
}

/// How a TOML value turns into the flag's argument(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One value: a string (or an integer, written in decimal): `--key=VALUE`.
    Value,
    /// A repeatable flag: an array of strings (one string is taken as a one-element
    /// array): `--key=A --key=B`.
    List,
    /// A value flag that reads `on`/`off` (`--splice`): a boolean becomes `on`/`off`;
    /// a string is passed as it is.
    OnOff,
    /// A flag without a value, alone (`--access-log`): `true` gives the flag, `false`
    /// nothing (the flag's default, off).
    Flag,
    /// A flag without a value, one of a pair (`--preempt`/`--no-preempt`): `true` gives
    /// the flag, `false` gives its opposite `off`. `primary` marks the one of the pair
    /// that `fulcrum check` prints.
    Switch {
        /// The flag of the pair that means the opposite.
        off: &'static str,
        /// Printed by `fulcrum check` (the other is folded into it).
        primary: bool,
    },
}

/// One key of the configuration file: a `fulcrum serve` flag without its dashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    /// The flag's long name, which is the key's name.
    pub(crate) name: &'static str,
    /// Global or per service.
    pub(crate) scope: Scope,
    /// TOML value → flag argument.
    pub(crate) kind: Kind,
}

const fn key(name: &'static str, scope: Scope, kind: Kind) -> Key {
    Key { name, scope, kind }
}

use Kind::{List, OnOff, Value};
use Scope::{Global, Service};

/// Every key, in the order `fulcrum check` prints them and `docs/configuration.md`
/// lists them.
///
/// Global: what one process has once — its threads, descriptor budget, control and HTTP
/// interfaces, alerts, the node agents' UDP socket and key, reload, and failover (the
/// VIPs and the interface they live on). Per service: what describes one pool of nodes
/// in front of one set of listeners — addresses, scheduling, forwarding mode, timeouts,
/// limits per client, PROXY protocol and health checks.
pub(crate) const KEYS: &[Key] = &[
    // Process.
    key("workers", Global, Value),
    key("max-conns", Global, Value),
    key("drain-timeout", Global, Value),
    key("interface", Global, Value),
    key("ring", Global, Value),
    key("host-sink", Global, OnOff),
    key("offload", Global, OnOff),
    key("control", Global, Value),
    key("listeners-from", Global, Value),
    key("state-file", Global, Value),
    key("http", Global, Value),
    key("http-token-file", Global, Value),
    key("deadline", Global, Value),
    key("notify", Global, Value),
    key("notify-timeout", Global, Value),
    key("agent-listen", Global, Value),
    key("agent-key-file", Global, Value),
    key("agent-interval", Global, Value),
    key("agent-misses", Global, Value),
    // Failover.
    key("vip", Global, List),
    key("peer", Global, List),
    key("ha-port", Global, Value),
    key("priority", Global, Value),
    key("advert-interval", Global, Value),
    key(
        "preempt",
        Global,
        Kind::Switch {
            off: "no-preempt",
            primary: true,
        },
    ),
    key(
        "no-preempt",
        Global,
        Kind::Switch {
            off: "preempt",
            primary: false,
        },
    ),
    key("ha-key-file", Global, Value),
    key("ha-group", Global, Value),
    // Scale-out (BGP, BFD).
    key("bgp-as", Global, Value),
    key("bgp-peer", Global, List),
    key("bgp-router-id", Global, Value),
    key("announce", Global, List),
    key("announce-min-healthy", Global, Value),
    key("announce-hold-down", Global, Value),
    key("bgp-shutdown-delay", Global, Value),
    key("bfd-interval", Global, Value),
    key("bfd-multiplier", Global, Value),
    // Rolling maintenance.
    key("hook", Global, List),
    key("hook-timeout", Global, Value),
    // One service.
    key("listen", Service, List),
    key("backend", Service, List),
    key("scheduler", Service, Value),
    key("mode", Service, Value),
    key("hash-seed", Service, Value),
    key("connect-timeout", Service, Value),
    key("idle-timeout", Service, Value),
    key("max-conns-per-source", Service, Value),
    key("retries", Service, Value),
    key("backlog", Service, Value),
    key("splice", Service, OnOff),
    key("send-proxy", Service, Value),
    key("check", Service, Value),
    key("check-interval", Service, Value),
    key("check-max-interval", Service, Value),
    key("check-multiplier", Service, Value),
    key("check-fast-interval", Service, Value),
    key("check-down-interval", Service, Value),
    key("check-timeout", Service, Value),
    key("check-status", Service, Value),
    key("check-host", Service, Value),
    key("check-seed", Service, Value),
    key("rise", Service, Value),
    key("warn", Service, Value),
    key("fall", Service, Value),
    key("slow-start", Service, Value),
    key("access-log", Service, Kind::Flag),
];

/// The `serve` flags that are not keys: `--config` itself (a file does not include
/// another).
pub(crate) const NOT_KEYS: &[&str] = &["config"];

/// The key named `name`.
pub(crate) fn lookup(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The known key (or table name) closest to `name`, if one is close enough to be a
/// likely typo (`check_interval`, `chek-interval`, `backends`).
pub(crate) fn suggest(name: &str, extra: &[&'static str]) -> Option<&'static str> {
    let limit = (name.chars().count() / 3).clamp(1, 4);
    KEYS.iter()
        .map(|k| k.name)
        .chain(extra.iter().copied())
        .map(|k| (edit_distance(&name.replace('_', "-"), k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over chars (short strings: keys are at most ~25 chars, and
/// an unknown key longer than 64 chars is not compared).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The `serve` flags as clap defines them, for their ids, defaults and help.
pub(crate) fn serve_command() -> Command {
    ServeArgs::augment_args(
        Command::new("serve")
            .no_binary_name(true)
            .color(clap::ColorChoice::Never),
    )
}

/// The key list of `docs/configuration.md`, generated from [`KEYS`] and the flags'
/// clap definitions (defaults and help), so the document cannot drift from the code:
/// a unit test compares it with the text between the document's markers.
#[cfg(test)]
pub(crate) fn docs_table() -> String {
    let cmd = serve_command();
    let mut out =
        String::from("| key | where | TOML value | default | meaning |\n|---|---|---|---|---|\n");
    for k in KEYS {
        let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(k.name)) else {
            continue;
        };
        let scope = match k.scope {
            Global => "top",
            Service => "service",
        };
        let value = match k.kind {
            // clap derive names every value after its field (`FALL`): only a chosen name
            // (`v1|v2`, `IFACE`) says more than "string".
            Value => match arg
                .get_value_names()
                .and_then(|n| n.first())
                .filter(|n| n.as_str() != arg.get_id().as_str().to_uppercase())
            {
                Some(name) => format!("string `{}`", name.as_str().replace('|', "\\|")),
                None => "string".to_string(),
            },
            List => "array of strings".to_string(),
            OnOff => "boolean, or `\"on\"`/`\"off\"`".to_string(),
            Kind::Switch { .. } | Kind::Flag => "boolean".to_string(),
        };
        let default: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = match (default.is_empty(), k.kind) {
            (_, Kind::Switch { .. } | Kind::Flag) => String::new(),
            (true, _) => String::new(),
            (false, _) => format!("`{}`", default.join(", ")),
        };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace('|', "\\|");
        out.push_str(&format!(
            "| `{}` | {scope} | {value} | {default} | {help} |\n",
            k.name
        ));
    }
    out
}

/// Whether clap's action for a flag agrees with the key's kind.
#[cfg(test)]
pub(crate) fn kind_matches(kind: Kind, action: &ArgAction) -> bool {
    matches!(
        (kind, action),
        (Value | OnOff, ArgAction::Set)
            | (List, ArgAction::Append)
            | (Kind::Switch { .. } | Kind::Flag, ArgAction::SetTrue)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `serve` flag is a key (or deliberately not), and no key lacks its flag: a
    /// new flag fails here until it is given a scope.
    #[test]
    fn every_serve_flag_is_a_key_of_the_same_kind() {
        let cmd = serve_command();
        let mut flags = Vec::new();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" || NOT_KEYS.contains(&long) {
                continue;
            }
            let k = lookup(long).unwrap_or_else(|| panic!("--{long} has no key in KEYS"));
            assert!(
                kind_matches(k.kind, arg.get_action()),
                "--{long}: key kind {:?} but clap action {:?}",
                k.kind,
                arg.get_action()
            );
            flags.push(long);
        }
        for k in KEYS {
            assert!(
                flags.contains(&k.name),
                "key {} has no --{} flag",
                k.name,
                k.name
            );
            assert_eq!(
                KEYS.iter().filter(|o| o.name == k.name).count(),
                1,
                "{} listed twice",
                k.name
            );
            if let Kind::Switch { off, primary } = k.kind {
                let o = lookup(off).expect("the pair's other flag is a key");
                assert_eq!(
                    o.kind,
                    Kind::Switch {
                        off: k.name,
                        primary: !primary
                    }
                );
            }
        }
    }

    #[test]
    fn scopes_follow_the_rule() {
        for g in [
            "workers",
            "control",
            "http",
            "notify",
            "drain-timeout",
            "vip",
            "peer",
            "priority",
        ] {
            assert_eq!(lookup(g).unwrap().scope, Global, "{g}");
        }
        for s in [
            "listen",
            "backend",
            "scheduler",
            "mode",
            "check",
            "rise",
            "slow-start",
            "retries",
            "connect-timeout",
            "send-proxy",
            "hash-seed",
            "max-conns-per-source",
        ] {
            assert_eq!(lookup(s).unwrap().scope, Service, "{s}");
        }
    }

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(suggest("check_interval", &[]), Some("check-interval"));
        assert_eq!(suggest("backends", &[]), Some("backend"));
        assert_eq!(suggest("chek", &[]), Some("check"));
        assert_eq!(
            suggest("services", &["service", "defaults"]),
            Some("service")
        );
        assert_eq!(suggest("zzzzzzzz", &[]), None);
        assert_eq!(suggest(&"x".repeat(10_000), &[]), None);
    }

    /// The key list in docs/configuration.md is the generated one.
    #[test]
    fn docs_list_every_key() {
        let doc = include_str!("../../docs/configuration.md");
        let begin = "<!-- keys:begin (generated by config_file::keys::docs_table) -->\n";
        let end = "<!-- keys:end -->";
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc[start..].find(end).expect("end marker") + start;
        let want = docs_table();
        assert!(
            doc[start..stop] == want,
            "docs/configuration.md's key list is stale; replace it with:\n{want}"
        );
        for k in KEYS {
            assert!(doc.contains(&format!("| `{}` |", k.name)), "{}", k.name);
        }
    }
}
