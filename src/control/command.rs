//! The control line protocol: grammar, plus framing and application.
//!
//! Three sans-IO pieces, in the order a request meets them:
//! - [`LineBuffer`] frames a byte stream into lines of at most [`MAX_LINE`]
//!   bytes, without ever buffering an over-long line (`command/framing.rs`);
//! - [`parse`] turns one line into a typed [`Command`] or a [`ParseError`]
//!   that names the command, the field and the rejected value (this file);
//! - [`apply()`] validates a command against a [`NodeTable`] and returns the
//!   [`Effect`] it would have, without mutating anything;
//!   [`NodeTable::commit`] then applies that effect (`command/apply.rs`).
//!
//! All three are re-exported here, so users name everything as
//! `crate::control::command::X`.
//!
//! Grammar (tokens separated by whitespace, keywords lowercase and
//! case-sensitive; see [`HELP`]):
//! ```text
//! show nodes [SERVICE] [--json]
//! show services|stats|config|bgp [--json]
//! add node ADDR [weight 0..=256] [backup]
//! remove node ADDR
//! set weight ADDR 0..=256
//! set state ADDR ready|drain|maint
//! set state ADDR maint at TIME [for DUR]   TIME: +DUR or YYYY-MM-DDTHH:MM:SSZ
//! cancel maint ADDR
//! set scheduler rr|wrr|lc|wlc|maglev
//! wait drained ADDR [TIMEOUT]        TIMEOUT: 200ms, 2s, 1.5s, 1m
//! rollout start (hook NAME | task NAME) [service S] [batch N] [min-ready N]
//!               [healthy-timeout DUR] [drain-timeout DUR]
//! rollout status [--json] | rollout abort | rollout resume
//! task NAME [service S] [when-idle] [all | ADDR ...] | task status [--json]
//! disable | enable | help
//! ```
//! ADDR is `IP:PORT`, IPv6 as `[::1]:80`, optionally `SERVICE/ADDR`; host names are
//! not resolved here. `disable`, `enable` and `set scheduler [SERVICE] KIND` take an
//! optional service ([`scope`]).
//!
//! Nothing here does I/O, reads a clock or holds live counters: the control
//! shell owns the socket, authentication, the wait for drained connections
//! and the publication of node-set snapshots to the workers.

mod apply;
mod framing;
mod rollout;
mod scope;

pub use apply::{apply, ApplyError, Effect, NodeEntry, NodeTable};
pub use framing::{LineBuffer, LineError, MAX_LINE};
pub use rollout::{RolloutCommand, StartSpec, TaskSpec};
pub use scope::{parse_scoped, Scoped};

use std::error::Error;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::control::snapshot::AdminState;
use crate::duration::format_duration;
pub use crate::duration::{parse_duration, DurationError};
pub use crate::rollout::window::At;
pub use crate::scheduler::SchedulerKind;

/// Largest weight a node may have; 0 is allowed and means "no new flows",
/// as in HAProxy.
pub const MAX_WEIGHT: u32 = 256;

/// Weight of a node added without `weight N` (ipvsadm and HAProxy use 1).
pub const DEFAULT_WEIGHT: u32 = 1;

/// How long `wait drained ADDR` waits when no TIMEOUT is given.
pub const DEFAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Longest rendering of an operator-supplied value inside an error message;
/// longer values are cut so an error reply stays one short line.
const MAX_ECHO: usize = 64;

/// The reply to `help`: the grammar, one command per line.
pub const HELP: &str = "\
show services [--json]               one line per service
show nodes [SERVICE] [--json]        per-node state and counters
show stats [--json]                  distributor-wide counters
show config [--json]                 running configuration
show bgp [--json]                    BGP peers, announced routes, BFD (scale-out)
add node ADDR [weight N] [backup]    add a node (weight 0..=256, default 1)
remove node ADDR                     stop new flows, remove once idle
set weight ADDR N                    set weight 0..=256 (0 = no new flows)
set state ADDR ready|drain|maint     set the admin state (ready cancels a removal)
set state ADDR maint at TIME [for DUR]
                                     a maintenance window: drained ahead (--deadline),
                                     maint from TIME (+10m, or 2026-12-01T02:00:00Z UTC),
                                     ready again after DUR
cancel maint ADDR                    drop the window (ready again if it began)
set scheduler [SERVICE] rr|wrr|lc|wlc|maglev
                                     switch the scheduling algorithm
wait drained ADDR [TIMEOUT]          wait until ADDR has no connections, or was removed
                                     (TIMEOUT default 60s, e.g. 5m)
disable [SERVICE]                    refuse new connections
enable [SERVICE]                     distribute new connections again
rollout start hook NAME|task NAME [service S] [batch N] [min-ready N]
        [healthy-timeout DUR] [drain-timeout DUR]
                                     drain, run the declared hook (or the node agent's
                                     declared task), wait healthy, ready:
                                     batch nodes at a time, never fewer than min-ready
                                     usable (defaults: batch 1, min-ready 1, healthy-
                                     timeout 60s, drain-timeout --deadline; socket only)
rollout status [--json]              the last rollout, per node, with the hook's output
rollout abort                        stop: nothing new starts, the current node stays maint
rollout resume                       re-run the stopped nodes, then carry on (socket only)
task NAME [service S] [when-idle] [all|ADDR...]
                                     run the agents' declared task NAME on the nodes;
                                     when-idle: one node at a time, drained first, run
                                     once it has no connection, then ready (socket only)
task status [--json]                 the last task jobs, per node, with the output
shutdown                             drain and exit, as on SIGTERM (control socket only)
bgp withdraw | bgp announce          withdraw the BGP routes and keep serving, or undo (socket only)
expose listeners                     hand the listeners to a reloading process (socket only)
help                                 this text
ADDR is IP:PORT (IPv6 as [::1]:80) or SERVICE/ADDR, needed when several services
have that address; disable, enable and set scheduler without SERVICE act on every
service. TIMEOUT is a number with a unit: us, ms, s, m or h.
";

/// One parsed control command.
///
/// `Display` renders the canonical line, which [`parse`] accepts back
/// unchanged; `fulcrum ctl` can build commands as values and send them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `show services [--json]`
    ShowServices {
        /// Reply in JSON instead of an aligned table.
        json: bool,
    },
    /// `show nodes [--json]`
    ShowNodes {
        /// Reply in JSON instead of an aligned table.
        json: bool,
    },
    /// `show stats [--json]`
    ShowStats {
        /// Reply in JSON instead of `key: value` lines.
        json: bool,
    },
    /// `show config [--json]`
    ShowConfig {
        /// Reply in JSON instead of text.
        json: bool,
    },
    /// `show bgp [--json]`
    ShowBgp {
        /// Reply in JSON instead of text.
        json: bool,
    },
    /// `add node ADDR [weight N] [backup]`
    AddNode {
        /// The node to add.
        addr: SocketAddr,
        /// Its weight; `None` means [`DEFAULT_WEIGHT`].
        weight: Option<u32>,
        /// Whether it is a backup node.
        backup: bool,
    },
    /// `remove node ADDR`
    RemoveNode {
        /// The node to remove.
        addr: SocketAddr,
    },
    /// `set weight ADDR N`
    SetWeight {
        /// The node to change.
        addr: SocketAddr,
        /// The new weight, `0..=256`.
        weight: u32,
    },
    /// `set state ADDR ready|drain|maint`
    SetState {
        /// The node to change.
        addr: SocketAddr,
        /// The new admin state.
        state: AdminState,
    },
    /// `disable`: refuse new connections.
    Disable,
    /// `enable`: distribute new connections.
    Enable,
    /// `set scheduler KIND`
    SetScheduler(SchedulerKind),
    /// `wait drained ADDR [TIMEOUT]`
    WaitDrained {
        /// The node to wait for.
        addr: SocketAddr,
        /// Give up after this long; `None` waits for the shell's default.
        timeout: Option<Duration>,
    },
    /// `rollout start|status|abort|resume`
    Rollout(RolloutCommand),
    /// `set state ADDR maint at TIME [for DUR]`: a maintenance window.
    ScheduleMaint {
        /// The node.
        addr: SocketAddr,
        /// When the window opens.
        at: At,
        /// How long it stays open; `None`: until the node is set ready.
        length: Option<Duration>,
    },
    /// `cancel maint ADDR`: drop the node's window (ready again if it began).
    CancelMaint {
        /// The node.
        addr: SocketAddr,
    },
    /// `help`
    Help,
}

impl Command {
    /// Whether the command changes state, so the shell must authenticate it.
    /// `wait drained` only observes and is not mutating.
    pub fn is_mutating(&self) -> bool {
        matches!(
            self,
            Command::AddNode { .. }
                | Command::RemoveNode { .. }
                | Command::SetWeight { .. }
                | Command::SetState { .. }
                | Command::Disable
                | Command::Enable
                | Command::SetScheduler(_)
                | Command::ScheduleMaint { .. }
                | Command::CancelMaint { .. }
                | Command::Rollout(
                    RolloutCommand::Start(_)
                        | RolloutCommand::Abort
                        | RolloutCommand::Resume
                        | RolloutCommand::Task(_)
                )
        )
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |f: &mut fmt::Formatter<'_>, what: &str, json: bool| {
            write!(f, "show {what}{}", if json { " --json" } else { "" })
        };
        match self {
            Command::ShowServices { json } => show(f, "services", *json),
            Command::ShowNodes { json } => show(f, "nodes", *json),
            Command::ShowStats { json } => show(f, "stats", *json),
            Command::ShowConfig { json } => show(f, "config", *json),
            Command::ShowBgp { json } => show(f, "bgp", *json),
            Command::AddNode {
                addr,
                weight,
                backup,
            } => {
                write!(f, "add node {addr}")?;
                if let Some(w) = weight {
                    write!(f, " weight {w}")?;
                }
                if *backup {
                    f.write_str(" backup")?;
                }
                Ok(())
            }
            Command::RemoveNode { addr } => write!(f, "remove node {addr}"),
            Command::SetWeight { addr, weight } => write!(f, "set weight {addr} {weight}"),
            Command::SetState { addr, state } => write!(f, "set state {addr} {state}"),
            Command::Disable => f.write_str("disable"),
            Command::Enable => f.write_str("enable"),
            Command::SetScheduler(kind) => write!(f, "set scheduler {kind}"),
            Command::WaitDrained { addr, timeout } => {
                write!(f, "wait drained {addr}")?;
                match timeout {
                    Some(t) => write!(f, " {}", format_duration(*t)),
                    None => Ok(()),
                }
            }
            Command::Rollout(r) => r.fmt(f),
            Command::ScheduleMaint { addr, at, length } => {
                write!(f, "set state {addr} maint at {at}")?;
                match length {
                    Some(l) => write!(f, " for {}", format_duration(*l)),
                    None => Ok(()),
                }
            }
            Command::CancelMaint { addr } => write!(f, "cancel maint {addr}"),
            Command::Help => f.write_str("help"),
        }
    }
}

/// Why a line is not a valid command. Every variant names the command and,
/// where there is one, the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The line holds no tokens.
    Empty,
    /// The first token is not a command keyword.
    UnknownCommand(String),
    /// A two-word command is missing its second word.
    MissingSubcommand {
        /// The first word, e.g. `"show"`.
        command: &'static str,
        /// The accepted second words.
        expected: &'static str,
    },
    /// A two-word command's second word is unknown.
    UnknownSubcommand {
        /// The first word, e.g. `"show"`.
        command: &'static str,
        /// The rejected second word.
        word: String,
        /// The accepted second words.
        expected: &'static str,
    },
    /// A required argument is absent.
    Missing {
        /// The command, e.g. `"add node"`.
        command: &'static str,
        /// The missing argument, e.g. `"address"`.
        what: &'static str,
    },
    /// A service word that cannot be a service's name.
    BadService(String),
    /// Not `IP:PORT`.
    BadAddress {
        /// The command.
        command: &'static str,
        /// The rejected token.
        value: String,
    },
    /// Not an integer in `0..=256`.
    BadWeight {
        /// The command.
        command: &'static str,
        /// The rejected token.
        value: String,
    },
    /// Not `ready`, `drain` or `maint`.
    BadState {
        /// The command.
        command: &'static str,
        /// The rejected token.
        value: String,
    },
    /// Not `rr`, `wrr`, `lc` or `wlc`.
    BadScheduler {
        /// The command.
        command: &'static str,
        /// The rejected token.
        value: String,
    },
    /// Not a duration; see [`parse_duration`].
    BadTimeout {
        /// The command.
        command: &'static str,
        /// What was wrong with it.
        error: DurationError,
    },
    /// An option was given twice.
    Duplicate {
        /// The command.
        command: &'static str,
        /// The repeated option keyword.
        option: &'static str,
    },
    /// A token left over after a complete command.
    Unexpected {
        /// The command.
        command: &'static str,
        /// The first extra token.
        arg: String,
    },
    /// `--json` given to a show command but not as the last token.
    JsonNotLast {
        /// The command.
        command: &'static str,
    },
    /// `--json` given to a command that is not a show command.
    JsonNotAllowed {
        /// The command.
        command: &'static str,
    },
    /// Not a hook's name.
    BadHook(String),
    /// Not a window's opening time.
    BadTime {
        /// The command.
        command: &'static str,
        /// The rejected token.
        value: String,
        /// What was expected.
        why: String,
    },
    /// Not a whole number in range.
    BadNumber {
        /// The command.
        command: &'static str,
        /// The option.
        option: &'static str,
        /// The rejected token.
        value: String,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("empty command"),
            ParseError::UnknownCommand(word) => write!(f, "unknown command {}", Echo(word)),
            ParseError::MissingSubcommand { command, expected } => {
                write!(f, "{command}: missing argument (expected {expected})")
            }
            ParseError::UnknownSubcommand {
                command,
                word,
                expected,
            } => write!(
                f,
                "{command}: unknown argument {} (expected {expected})",
                Echo(word)
            ),
            ParseError::Missing { command, what } => write!(f, "{command}: missing {what}"),
            ParseError::BadService(s) => write!(
                f,
                "bad service {} (expected a service name: letters, digits, '-', '_', '.')",
                Echo(s)
            ),
            ParseError::BadAddress { command, value } => write!(
                f,
                "{command}: bad address {} (expected IP:PORT, IPv6 as [::1]:80)",
                Echo(value)
            ),
            ParseError::BadWeight { command, value } => write!(
                f,
                "{command}: bad weight {} (expected 0..={MAX_WEIGHT})",
                Echo(value)
            ),
            ParseError::BadState { command, value } => write!(
                f,
                "{command}: bad state {} (expected ready, drain or maint)",
                Echo(value)
            ),
            ParseError::BadScheduler { command, value } => write!(
                f,
                "{command}: bad scheduler {} (expected rr, wrr, lc, wlc or maglev)",
                Echo(value)
            ),
            ParseError::BadTimeout { command, error } => write!(
                f,
                "{command}: bad timeout {}: {}",
                Echo(&error.input),
                error.kind
            ),
            ParseError::Duplicate { command, option } => {
                write!(f, "{command}: {option:?} given twice")
            }
            ParseError::Unexpected { command, arg } => {
                write!(f, "unexpected argument {} after {command:?}", Echo(arg))
            }
            ParseError::JsonNotLast { command } => {
                write!(f, "{command}: \"--json\" must be the last argument")
            }
            ParseError::JsonNotAllowed { command } => {
                write!(f, "{command}: \"--json\" is only accepted by show commands")
            }
            ParseError::BadTime {
                command,
                value,
                why,
            } => write!(f, "{command}: bad time {}: {why}", Echo(value)),
            ParseError::BadHook(h) => write!(
                f,
                "bad hook name {} (expected a declared hook's name: letters, digits, '-', '_', '.')",
                Echo(h)
            ),
            ParseError::BadNumber {
                command,
                option,
                value,
            } => write!(
                f,
                "{command}: bad {option} {} (expected a whole number up to {})",
                Echo(value),
                rollout::MAX_COUNT
            ),
        }
    }
}

impl Error for ParseError {}

/// Operator input quoted and escaped for an error message, cut to
/// [`MAX_ECHO`] characters so a huge token cannot bloat the reply.
struct Echo<'a>(&'a str);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(MAX_ECHO) {
            // `{:?}` quotes and escapes control characters, so a hostile
            // token cannot inject a newline into the one-line reply.
            Some((cut, _)) => write!(f, "{:?}...", self.0.get(..cut).unwrap_or("")),
            None => write!(f, "{:?}", self.0),
        }
    }
}

/// Parses one line (without its newline) into a [`Command`].
///
/// Tokens are separated by any whitespace; keywords are lowercase and
/// case-sensitive; `--json` is accepted only as the last token of a show
/// command. The line is not required to be shorter than [`MAX_LINE`]; that
/// is [`LineBuffer`]'s job.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let (first, rest) = tokens.split_first().ok_or(ParseError::Empty)?;
    let (command, args) = command_name(first, rest)?;

    // `--json` is only meaningful as the very last token of a show command.
    let is_show =
        command.starts_with("show ") || command == "rollout status" || command == "task status";
    let (json, args) = match args.split_last() {
        Some((&"--json", init)) if is_show => (true, init),
        _ => (false, args),
    };
    if args.contains(&"--json") {
        return Err(if is_show {
            ParseError::JsonNotLast { command }
        } else {
            ParseError::JsonNotAllowed { command }
        });
    }

    if command == "rollout start" {
        return rollout::parse_start(args);
    }
    if command == "task" {
        return rollout::parse_task(args);
    }
    let mut args = Args {
        command,
        rest: args.iter(),
    };
    let parsed = match command {
        "show services" => Command::ShowServices { json },
        "show nodes" => Command::ShowNodes { json },
        "show stats" => Command::ShowStats { json },
        "show config" => Command::ShowConfig { json },
        "show bgp" => Command::ShowBgp { json },
        "add node" => parse_add_node(&mut args)?,
        "remove node" => Command::RemoveNode { addr: args.addr()? },
        "set weight" => Command::SetWeight {
            addr: args.addr()?,
            weight: args.weight()?,
        },
        "set state" => {
            let addr = args.addr()?;
            let value = args.required("state")?;
            let state = value.parse().map_err(|_| ParseError::BadState {
                command,
                value: value.to_owned(),
            })?;
            match args.rest.as_slice().first() {
                Some(&"at") if state == AdminState::Maint => {
                    args.rest.next();
                    let value = args.required("time")?;
                    let at = At::parse(value).map_err(|why| ParseError::BadTime {
                        command,
                        value: value.to_owned(),
                        why,
                    })?;
                    let length = match args.rest.as_slice().first() {
                        Some(&"for") => {
                            args.rest.next();
                            let d = args.required("duration")?;
                            Some(
                                parse_duration(d)
                                    .map_err(|error| ParseError::BadTimeout { command, error })?,
                            )
                        }
                        _ => None,
                    };
                    Command::ScheduleMaint { addr, at, length }
                }
                _ => Command::SetState { addr, state },
            }
        }
        "cancel maint" => Command::CancelMaint { addr: args.addr()? },
        "set scheduler" => {
            let value = args.required("scheduler")?;
            let kind = value.parse().map_err(|_| ParseError::BadScheduler {
                command,
                value: value.to_owned(),
            })?;
            Command::SetScheduler(kind)
        }
        "wait drained" => {
            let addr = args.addr()?;
            let timeout = match args.rest.next() {
                Some(t) => Some(
                    parse_duration(t).map_err(|error| ParseError::BadTimeout { command, error })?,
                ),
                None => None,
            };
            Command::WaitDrained { addr, timeout }
        }
        "rollout status" => Command::Rollout(RolloutCommand::Status { json }),
        "rollout abort" => Command::Rollout(RolloutCommand::Abort),
        "rollout resume" => Command::Rollout(RolloutCommand::Resume),
        "task status" => Command::Rollout(RolloutCommand::TaskStatus { json }),
        "disable" => Command::Disable,
        "enable" => Command::Enable,
        // `command_name` returns only the names matched above, and "help".
        _ => Command::Help,
    };
    args.end()?;
    Ok(parsed)
}

/// Resolves the one- or two-word command name and returns the remaining
/// arguments. The returned name is one of the arms matched in [`parse`].
fn command_name<'t, 'a>(
    first: &str,
    rest: &'t [&'a str],
) -> Result<(&'static str, &'t [&'a str]), ParseError> {
    let table: (&'static str, &[(&str, &'static str)], &'static str) = match first {
        "disable" => return Ok(("disable", rest)),
        "enable" => return Ok(("enable", rest)),
        "help" => return Ok(("help", rest)),
        "task" => {
            return Ok(match rest.split_first() {
                Some((&"status", more)) => ("task status", more),
                _ => ("task", rest),
            })
        }
        "show" => (
            "show",
            &[
                ("services", "show services"),
                ("nodes", "show nodes"),
                ("stats", "show stats"),
                ("config", "show config"),
                ("bgp", "show bgp"),
            ],
            "services, nodes, stats, config or bgp",
        ),
        "add" => ("add", &[("node", "add node")], "node"),
        "remove" => ("remove", &[("node", "remove node")], "node"),
        "set" => (
            "set",
            &[
                ("weight", "set weight"),
                ("state", "set state"),
                ("scheduler", "set scheduler"),
            ],
            "weight, state or scheduler",
        ),
        "wait" => ("wait", &[("drained", "wait drained")], "drained"),
        "cancel" => ("cancel", &[("maint", "cancel maint")], "maint"),
        "rollout" => (
            "rollout",
            &[
                ("start", "rollout start"),
                ("status", "rollout status"),
                ("abort", "rollout abort"),
                ("resume", "rollout resume"),
            ],
            "start, status, abort or resume",
        ),
        _ => return Err(ParseError::UnknownCommand(first.to_owned())),
    };
    let (command, subs, expected) = table;
    let (second, rest) = rest
        .split_first()
        .ok_or(ParseError::MissingSubcommand { command, expected })?;
    match subs.iter().find(|(word, _)| word == second) {
        Some((_, full)) => Ok((full, rest)),
        None => Err(ParseError::UnknownSubcommand {
            command,
            word: (*second).to_owned(),
            expected,
        }),
    }
}

/// `add node ADDR [weight N] [backup]`, options in any order, each once.
fn parse_add_node(args: &mut Args<'_, '_>) -> Result<Command, ParseError> {
    let addr = args.addr()?;
    let mut weight = None;
    let mut backup = false;
    while let Some(&token) = args.rest.as_slice().first() {
        match token {
            "weight" if weight.is_some() => return Err(args.duplicate("weight")),
            "backup" if backup => return Err(args.duplicate("backup")),
            "weight" => {
                args.rest.next();
                weight = Some(args.weight()?);
            }
            "backup" => {
                args.rest.next();
                backup = true;
            }
            // Anything else is reported by `Args::end`.
            _ => break,
        }
    }
    Ok(Command::AddNode {
        addr,
        weight,
        backup,
    })
}

/// Cursor over a command's arguments that knows the command's name, so
/// every error it builds names it.
struct Args<'t, 'a> {
    command: &'static str,
    rest: std::slice::Iter<'t, &'a str>,
}

impl<'a> Args<'_, 'a> {
    fn required(&mut self, what: &'static str) -> Result<&'a str, ParseError> {
        self.rest.next().copied().ok_or(ParseError::Missing {
            command: self.command,
            what,
        })
    }

    fn addr(&mut self) -> Result<SocketAddr, ParseError> {
        let value = self.required("address")?;
        value.parse().map_err(|_| ParseError::BadAddress {
            command: self.command,
            value: value.to_owned(),
        })
    }

    fn weight(&mut self) -> Result<u32, ParseError> {
        let value = self.required("weight")?;
        // Digits only: `u32::from_str` would also accept a leading `+`.
        match value.parse::<u32>() {
            Ok(w) if w <= MAX_WEIGHT && value.bytes().all(|b| b.is_ascii_digit()) => Ok(w),
            _ => Err(ParseError::BadWeight {
                command: self.command,
                value: value.to_owned(),
            }),
        }
    }

    fn duplicate(&self, option: &'static str) -> ParseError {
        ParseError::Duplicate {
            command: self.command,
            option,
        }
    }

    fn end(&mut self) -> Result<(), ParseError> {
        match self.rest.next() {
            None => Ok(()),
            Some(arg) => Err(ParseError::Unexpected {
                command: self.command,
                arg: (*arg).to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn err(line: &str) -> String {
        parse(line).unwrap_err().to_string()
    }

    #[test]
    fn parses_every_command() {
        let a = sa("127.0.0.1:9000");
        let v6 = sa("[::1]:80");
        let cases: &[(&str, Command)] = &[
            ("show nodes", Command::ShowNodes { json: false }),
            ("  show\tnodes   --json ", Command::ShowNodes { json: true }),
            ("show stats --json", Command::ShowStats { json: true }),
            ("show config", Command::ShowConfig { json: false }),
            (
                "add node 127.0.0.1:9000",
                Command::AddNode {
                    addr: a,
                    weight: None,
                    backup: false,
                },
            ),
            (
                "add node [::1]:80 backup weight 0",
                Command::AddNode {
                    addr: v6,
                    weight: Some(0),
                    backup: true,
                },
            ),
            ("remove node [::1]:80", Command::RemoveNode { addr: v6 }),
            (
                "set weight 127.0.0.1:9000 256",
                Command::SetWeight {
                    addr: a,
                    weight: 256,
                },
            ),
            (
                "set state 127.0.0.1:9000 drain",
                Command::SetState {
                    addr: a,
                    state: AdminState::Drain,
                },
            ),
            (
                "set scheduler wlc",
                Command::SetScheduler(SchedulerKind::Wlc),
            ),
            (
                "wait drained 127.0.0.1:9000 5s",
                Command::WaitDrained {
                    addr: a,
                    timeout: Some(Duration::from_secs(5)),
                },
            ),
            (
                "wait drained 127.0.0.1:9000",
                Command::WaitDrained {
                    addr: a,
                    timeout: None,
                },
            ),
            ("disable", Command::Disable),
            ("enable", Command::Enable),
            ("help", Command::Help),
            (
                "set state 127.0.0.1:9000 maint at +3s for 1m",
                Command::ScheduleMaint {
                    addr: a,
                    at: At::In(Duration::from_secs(3)),
                    length: Some(Duration::from_secs(60)),
                },
            ),
            (
                "set state [::1]:80 maint at 2026-12-01T02:00:00Z",
                Command::ScheduleMaint {
                    addr: v6,
                    at: At::parse("2026-12-01T02:00:00Z").unwrap(),
                    length: None,
                },
            ),
            ("cancel maint [::1]:80", Command::CancelMaint { addr: v6 }),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line).as_ref(), Ok(want), "{line}");
            // The canonical rendering parses back to the same command.
            assert_eq!(parse(&want.to_string()).as_ref(), Ok(want), "{want}");
        }
    }

    #[test]
    fn errors_name_what_was_wrong() {
        let cases = [
            ("", "empty command"),
            ("shwo nodes", r#"unknown command "shwo""#),
            ("SHOW nodes", r#"unknown command "SHOW""#),
            (
                "show",
                "show: missing argument (expected services, nodes, stats, config or bgp)",
            ),
            (
                "show nodez",
                r#"show: unknown argument "nodez" (expected services, nodes, stats, config or bgp)"#,
            ),
            (
                "set weight 127.0.0.1:9000 abc",
                r#"set weight: bad weight "abc" (expected 0..=256)"#,
            ),
            (
                "set weight 127.0.0.1:9000 257",
                r#"set weight: bad weight "257" (expected 0..=256)"#,
            ),
            (
                "set weight 127.0.0.1:9000 +5",
                r#"set weight: bad weight "+5" (expected 0..=256)"#,
            ),
            ("add node", "add node: missing address"),
            ("add node 127.0.0.1:9000 weight", "add node: missing weight"),
            (
                "add node localhost:80",
                r#"add node: bad address "localhost:80" (expected IP:PORT, IPv6 as [::1]:80)"#,
            ),
            (
                "add node ::1:80",
                r#"add node: bad address "::1:80" (expected IP:PORT, IPv6 as [::1]:80)"#,
            ),
            (
                "add node 1.2.3.4:80 backup backup",
                r#"add node: "backup" given twice"#,
            ),
            ("enable x", r#"unexpected argument "x" after "enable""#),
            (
                "remove node 1.2.3.4:80 now",
                r#"unexpected argument "now" after "remove node""#,
            ),
            (
                "show nodes x",
                r#"unexpected argument "x" after "show nodes""#,
            ),
            (
                "show nodes --json x",
                r#"show nodes: "--json" must be the last argument"#,
            ),
            (
                "enable --json",
                r#"enable: "--json" is only accepted by show commands"#,
            ),
            (
                "set state 1.2.3.4:80 Maint",
                r#"set state: bad state "Maint" (expected ready, drain or maint)"#,
            ),
            (
                "set scheduler maglevv",
                r#"set scheduler: bad scheduler "maglevv" (expected rr, wrr, lc, wlc or maglev)"#,
            ),
            (
                "wait drained 1.2.3.4:80 5",
                r#"wait drained: bad timeout "5": missing unit (expected us, ms, s, m or h, e.g. 200ms)"#,
            ),
            (
                "set state 1.2.3.4:80 maint at 3s",
                r#"set state: bad time "3s": expected +DURATION (e.g. +10m) or a UTC time YYYY-MM-DDTHH:MM:SSZ"#,
            ),
            (
                "set state 1.2.3.4:80 drain at +3s",
                r#"unexpected argument "at" after "set state""#,
            ),
            (
                "set state 1.2.3.4:80 maint at +3s for",
                "set state: missing duration",
            ),
            ("cancel maint", "cancel maint: missing address"),
            (
                "wait drained 1.2.3.4:80 5d",
                r#"wait drained: bad timeout "5d": unknown unit "d" (expected us, ms, s, m or h)"#,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(err(line), want, "{line}");
        }
    }

    #[test]
    fn echoed_values_are_escaped_and_cut() {
        assert_eq!(err("sh\x1bow"), r#"unknown command "sh\u{1b}ow""#);
        let long = "x".repeat(1000);
        let msg = err(&long);
        assert_eq!(msg, format!("unknown command {:?}...", "x".repeat(64)));
    }

    #[test]
    fn mutating_commands_are_flagged() {
        assert!(parse("set weight 1.2.3.4:5 1").unwrap().is_mutating());
        assert!(parse("disable").unwrap().is_mutating());
        assert!(!parse("show nodes --json").unwrap().is_mutating());
        assert!(!parse("wait drained 1.2.3.4:5").unwrap().is_mutating());
    }

    #[test]
    fn random_token_sequences_never_panic_and_round_trip() {
        const VOCAB: [&str; 22] = [
            "show",
            "nodes",
            "stats",
            "--json",
            "add",
            "node",
            "weight",
            "backup",
            "set",
            "state",
            "scheduler",
            "remove",
            "wait",
            "drained",
            "1.2.3.4:80",
            "[::1]:80",
            "256",
            "257",
            "1.5s",
            "drain",
            "wlc",
            "\u{0}é",
        ];
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut accepted = 0;
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let mut r = rng;
            let len = (r % 6) as usize;
            let mut line = Vec::new();
            for _ in 0..len {
                r /= 23;
                line.push(VOCAB[(r % 22) as usize]);
            }
            let line = line.join(" ");
            if let Ok(cmd) = parse(&line) {
                accepted += 1;
                assert_eq!(parse(&cmd.to_string()), Ok(cmd), "{line}");
            }
        }
        assert!(accepted > 0);
    }
}
