//! The rolling-maintenance commands of the control grammar (issue #13), without IO:
//!
//! ```text
//! rollout start (hook NAME | task NAME) [service S] [batch N] [min-ready N]
//!               [healthy-timeout DUR] [drain-timeout DUR]
//! rollout status [--json]
//! rollout abort
//! rollout resume
//! task NAME [service S] [when-idle] [all | ADDR ...]
//! task status [--json]
//! ```
//!
//! The options of `start` come in any order, each at most once. A hook is named, never
//! given: the command it stands for is what `fulcrum serve --hook NAME=COMMAND`
//! declared, looked up by the shell; a name that was not declared runs nothing. A task
//! is named too: the node's agent runs it only if it declared it (`fulcrum agent
//! --task NAME=COMMAND`). `task` without nodes, or with `all`, runs on every node of
//! the service.

use std::fmt;
use std::time::Duration;

use std::net::SocketAddr;

use super::{parse_duration, Command, ParseError};
use crate::duration::format_duration;
use crate::rollout::config::valid_name;
use crate::rollout::Action;

/// Largest `batch` or `min-ready` accepted (far above any pool).
pub const MAX_COUNT: usize = 100_000;

/// A `rollout …` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutCommand {
    /// `rollout start …`
    Start(StartSpec),
    /// `rollout status [--json]`
    Status {
        /// Reply in JSON.
        json: bool,
    },
    /// `rollout abort`
    Abort,
    /// `rollout resume`
    Resume,
    /// `task NAME …`
    Task(TaskSpec),
    /// `task status [--json]`
    TaskStatus {
        /// Reply in JSON.
        json: bool,
    },
}

/// What `task NAME …` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskSpec {
    /// The task's name, as the agents declare it.
    pub task: String,
    /// The service (needed when there are several).
    pub service: Option<String>,
    /// Drain each node first and run once it is idle, one node at a time.
    pub when_idle: bool,
    /// The nodes, in order; empty: every node of the service (`all`).
    pub nodes: Vec<SocketAddr>,
}

/// What `rollout start` asks for; `None` takes the shell's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartSpec {
    /// The declared hook or the agents' task to run on each node.
    pub action: Action,
    /// The service (needed when there are several).
    pub service: Option<String>,
    /// Nodes out at once.
    pub batch: Option<usize>,
    /// Fewest usable nodes left in the service.
    pub min_ready: Option<usize>,
    /// How long a node may take to pass its checks after the hook.
    pub healthy_timeout: Option<Duration>,
    /// How long a node may take to drain before its flows are cut.
    pub drain_timeout: Option<Duration>,
}

impl fmt::Display for RolloutCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RolloutCommand::Start(s) => {
                write!(f, "rollout start {}", s.action)?;
                if let Some(v) = &s.service {
                    write!(f, " service {v}")?;
                }
                if let Some(v) = s.batch {
                    write!(f, " batch {v}")?;
                }
                if let Some(v) = s.min_ready {
                    write!(f, " min-ready {v}")?;
                }
                if let Some(v) = s.healthy_timeout {
                    write!(f, " healthy-timeout {}", format_duration(v))?;
                }
                if let Some(v) = s.drain_timeout {
                    write!(f, " drain-timeout {}", format_duration(v))?;
                }
                Ok(())
            }
            RolloutCommand::Status { json } => {
                write!(f, "rollout status{}", if *json { " --json" } else { "" })
            }
            RolloutCommand::Abort => f.write_str("rollout abort"),
            RolloutCommand::Resume => f.write_str("rollout resume"),
            RolloutCommand::Task(t) => {
                write!(f, "task {}", t.task)?;
                if let Some(v) = &t.service {
                    write!(f, " service {v}")?;
                }
                if t.when_idle {
                    f.write_str(" when-idle")?;
                }
                if t.nodes.is_empty() {
                    f.write_str(" all")?;
                }
                for n in &t.nodes {
                    write!(f, " {n}")?;
                }
                Ok(())
            }
            RolloutCommand::TaskStatus { json } => {
                write!(f, "task status{}", if *json { " --json" } else { "" })
            }
        }
    }
}

/// `rollout start`'s options, after the two command words.
pub(super) fn parse_start(args: &[&str]) -> Result<Command, ParseError> {
    const CMD: &str = "rollout start";
    let mut s = StartSpec {
        action: Action::Hook(String::new()),
        service: None,
        batch: None,
        min_ready: None,
        healthy_timeout: None,
        drain_timeout: None,
    };
    let mut hook: Option<Action> = None;
    let mut it = args.iter();
    while let Some(&opt) = it.next() {
        let (name, seen): (&'static str, bool) = match opt {
            "hook" | "task" if hook.is_some() => {
                return Err(ParseError::Duplicate {
                    command: CMD,
                    option: "hook or task",
                })
            }
            "hook" => ("hook", false),
            "task" => ("task", false),
            "service" => ("service", s.service.is_some()),
            "batch" => ("batch", s.batch.is_some()),
            "min-ready" => ("min-ready", s.min_ready.is_some()),
            "healthy-timeout" => ("healthy-timeout", s.healthy_timeout.is_some()),
            "drain-timeout" => ("drain-timeout", s.drain_timeout.is_some()),
            other => {
                return Err(ParseError::Unexpected {
                    command: CMD,
                    arg: other.to_owned(),
                })
            }
        };
        if seen {
            return Err(ParseError::Duplicate {
                command: CMD,
                option: name,
            });
        }
        let value = *it.next().ok_or(ParseError::Missing {
            command: CMD,
            what: name,
        })?;
        match name {
            "hook" | "task" => {
                if !valid_name(value) {
                    return Err(ParseError::BadHook(value.to_owned()));
                }
                hook = Some(if name == "hook" {
                    Action::Hook(value.to_owned())
                } else {
                    Action::Task(value.to_owned())
                });
            }
            "service" => {
                super::scope::check_service(value)?;
                s.service = Some(value.to_owned());
            }
            "batch" => s.batch = Some(count(name, value)?),
            "min-ready" => s.min_ready = Some(count(name, value)?),
            _ => {
                let d = parse_duration(value).map_err(|error| ParseError::BadTimeout {
                    command: CMD,
                    error,
                })?;
                if name == "healthy-timeout" {
                    s.healthy_timeout = Some(d);
                } else {
                    s.drain_timeout = Some(d);
                }
            }
        }
    }
    s.action = hook.ok_or(ParseError::Missing {
        command: CMD,
        what: "hook NAME or task NAME",
    })?;
    Ok(Command::Rollout(RolloutCommand::Start(s)))
}

/// `task`'s arguments, after the word `task` (`status` is handled by the caller).
pub(super) fn parse_task(args: &[&str]) -> Result<Command, ParseError> {
    const CMD: &str = "task";
    let (&name, rest) = args.split_first().ok_or(ParseError::Missing {
        command: CMD,
        what: "NAME",
    })?;
    if !valid_name(name) {
        return Err(ParseError::BadHook(name.to_owned()));
    }
    let mut t = TaskSpec {
        task: name.to_owned(),
        ..TaskSpec::default()
    };
    let mut all = false;
    let mut it = rest.iter();
    while let Some(&word) = it.next() {
        match word {
            "service" if t.service.is_some() => {
                return Err(ParseError::Duplicate {
                    command: CMD,
                    option: "service",
                })
            }
            "service" => {
                let v = *it.next().ok_or(ParseError::Missing {
                    command: CMD,
                    what: "service",
                })?;
                super::scope::check_service(v)?;
                t.service = Some(v.to_owned());
            }
            "when-idle" if t.when_idle => {
                return Err(ParseError::Duplicate {
                    command: CMD,
                    option: "when-idle",
                })
            }
            "when-idle" => t.when_idle = true,
            "all" => all = true,
            addr => {
                let a: SocketAddr = addr.parse().map_err(|_| ParseError::Unexpected {
                    command: CMD,
                    arg: addr.to_owned(),
                })?;
                if t.nodes.contains(&a) {
                    return Err(ParseError::Duplicate {
                        command: CMD,
                        option: "a node",
                    });
                }
                t.nodes.push(a);
            }
        }
    }
    if all && !t.nodes.is_empty() {
        return Err(ParseError::Unexpected {
            command: CMD,
            arg: "all (with nodes named)".into(),
        });
    }
    Ok(Command::Rollout(RolloutCommand::Task(t)))
}

fn count(option: &'static str, value: &str) -> Result<usize, ParseError> {
    match value.parse::<usize>() {
        Ok(n) if n <= MAX_COUNT && value.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(ParseError::BadNumber {
            command: "rollout start",
            option,
            value: value.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let full = "rollout start hook deploy service web batch 2 min-ready 1 \
                    healthy-timeout 30s drain-timeout 1m";
        let want = Command::Rollout(RolloutCommand::Start(StartSpec {
            action: Action::Hook("deploy".into()),
            service: Some("web".into()),
            batch: Some(2),
            min_ready: Some(1),
            healthy_timeout: Some(Duration::from_secs(30)),
            drain_timeout: Some(Duration::from_secs(60)),
        }));
        assert_eq!(parse(full), Ok(want.clone()));
        assert_eq!(parse(&want.to_string()), Ok(want));
        // Any order.
        let c = parse("rollout start batch 3 hook x.y").unwrap();
        assert_eq!(c.to_string(), "rollout start hook x.y batch 3");
        for (line, cmd) in [
            ("rollout status", RolloutCommand::Status { json: false }),
            (
                "rollout status --json",
                RolloutCommand::Status { json: true },
            ),
            ("rollout abort", RolloutCommand::Abort),
            ("rollout resume", RolloutCommand::Resume),
        ] {
            assert_eq!(parse(line), Ok(Command::Rollout(cmd.clone())), "{line}");
            assert_eq!(Command::Rollout(cmd).to_string(), line);
        }
        let task = parse("rollout start task deploy batch 2").unwrap();
        assert_eq!(task.to_string(), "rollout start task deploy batch 2");
        for (line, canonical) in [
            ("task rotate", "task rotate all"),
            ("task rotate all when-idle", "task rotate when-idle all"),
            (
                "task rotate 10.0.0.2:80 service web 10.0.0.1:80",
                "task rotate service web 10.0.0.2:80 10.0.0.1:80",
            ),
        ] {
            let c = parse(line).unwrap();
            assert_eq!(c.to_string(), canonical, "{line}");
            assert_eq!(parse(canonical), Ok(c.clone()));
            assert!(c.is_mutating());
        }
        assert_eq!(
            parse("task status --json"),
            Ok(Command::Rollout(RolloutCommand::TaskStatus { json: true }))
        );
        assert!(!parse("task status").unwrap().is_mutating());
        for bad in [
            "task",
            "task /bin/sh",
            "task x all 10.0.0.1:80",
            "task x 10.0.0.1:80 10.0.0.1:80",
            "task x nodes",
            "task x when-idle when-idle",
            "rollout start hook a task b",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("rollout start hook a").unwrap().is_mutating());
        assert!(parse("rollout abort").unwrap().is_mutating());
        assert!(parse("rollout resume").unwrap().is_mutating());
        assert!(!parse("rollout status").unwrap().is_mutating());
    }

    #[test]
    fn errors_name_the_option_and_value() {
        let cases = [
            (
                "rollout",
                "rollout: missing argument (expected start, status, abort or resume)",
            ),
            (
                "rollout go",
                r#"rollout: unknown argument "go" (expected start, status, abort or resume)"#,
            ),
            (
                "rollout start",
                "rollout start: missing hook NAME or task NAME",
            ),
            (
                "rollout start batch 2",
                "rollout start: missing hook NAME or task NAME",
            ),
            ("rollout start hook", "rollout start: missing hook"),
            (
                "rollout start hook a hook b",
                r#"rollout start: "hook or task" given twice"#,
            ),
            (
                "rollout start hook /bin/rm",
                r#"bad hook name "/bin/rm" (expected a declared hook's name: letters, digits, '-', '_', '.')"#,
            ),
            (
                "rollout start hook a batch x",
                r#"rollout start: bad batch "x" (expected a whole number up to 100000)"#,
            ),
            (
                "rollout start hook a min-ready -1",
                r#"rollout start: bad min-ready "-1" (expected a whole number up to 100000)"#,
            ),
            (
                "rollout start hook a drain-timeout 5",
                r#"rollout start: bad timeout "5": missing unit (expected us, ms, s, m or h, e.g. 200ms)"#,
            ),
            (
                "rollout start hook a service w$b",
                r#"bad service "w$b" (expected a service name: letters, digits, '-', '_', '.')"#,
            ),
            (
                "rollout start hook a now",
                r#"unexpected argument "now" after "rollout start""#,
            ),
            (
                "rollout abort now",
                r#"unexpected argument "now" after "rollout abort""#,
            ),
            (
                "rollout abort --json",
                r#"rollout abort: "--json" is only accepted by show commands"#,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line).unwrap_err().to_string(), want, "{line}");
        }
    }
}
