//! Which service a command is for: the `SERVICE/ADDR` and `[SERVICE]` forms of the
//! control grammar (issue #10), parsed and printed without IO.
//!
//! A node command names its node as `ADDR` or `SERVICE/ADDR`; `disable`, `enable`,
//! `show nodes` and `set scheduler` take an optional service word. A bare address is
//! resolved by the shell: it is enough while one service has that address. The
//! canonical line ([`Scoped`]'s `Display`, which the state file and failover sync
//! carry) always names the service, except the service `default` of a configuration
//! given by flags, whose lines stay what they were before services existed.

use std::fmt;

use super::{parse, Command, ParseError};

/// A command and the service it names, if it names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scoped {
    /// The service named in the line (`None`: the shell resolves it).
    pub service: Option<String>,
    /// The command.
    pub cmd: Command,
}

impl From<Command> for Scoped {
    /// A command that names no service.
    fn from(cmd: Command) -> Scoped {
        Scoped { service: None, cmd }
    }
}

/// Longest service name accepted in a command (the configuration's limit).
const MAX_SERVICE: usize = 64;

/// The service name left out of canonical lines (flags describe one service by it).
const UNNAMED: &str = crate::config::DEFAULT_SERVICE;

impl Scoped {
    /// A command for `service`.
    pub fn new(service: Option<&str>, cmd: Command) -> Scoped {
        Scoped {
            service: service.map(str::to_owned),
            cmd,
        }
    }
}

/// Parses one line with its optional service.
pub fn parse_scoped(line: &str) -> Result<Scoped, ParseError> {
    let mut tokens: Vec<&str> = line.split_whitespace().collect();
    let mut service: Option<&str> = None;
    let words = (
        tokens.first().copied().unwrap_or(""),
        tokens.get(1).copied().unwrap_or(""),
    );
    match words {
        ("add", "node")
        | ("remove", "node")
        | ("set", "weight")
        | ("set", "state")
        | ("wait", "drained")
        | ("cancel", "maint") => {
            if let Some(t) = tokens.get_mut(2) {
                if let Some((svc, addr)) = t.split_once('/') {
                    service = Some(svc);
                    *t = addr;
                }
            }
        }
        ("disable" | "enable", _) if tokens.len() == 2 => {
            service = Some(tokens.remove(1));
        }
        ("show", "nodes") if tokens.len() >= 3 && tokens[2] != "--json" => {
            service = Some(tokens.remove(2));
        }
        ("set", "scheduler") if tokens.len() == 4 => {
            service = Some(tokens.remove(2));
        }
        _ => {}
    }
    if let Some(s) = service {
        check_service(s)?;
    }
    let cmd = parse(&tokens.join(" "))?;
    Ok(Scoped {
        service: service.map(str::to_owned),
        cmd,
    })
}

/// A service word must look like a configuration's service name.
pub(super) fn check_service(s: &str) -> Result<(), ParseError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_SERVICE
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ParseError::BadService(
            s.chars().take(MAX_SERVICE).collect(),
        ))
    }
}

impl fmt::Display for Scoped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let svc = match self.service.as_deref() {
            Some(s) if s != UNNAMED => s,
            _ => return self.cmd.fmt(f),
        };
        let line = self.cmd.to_string();
        let mut tokens: Vec<String> = line.split(' ').map(str::to_owned).collect();
        match &self.cmd {
            Command::AddNode { .. }
            | Command::RemoveNode { .. }
            | Command::SetWeight { .. }
            | Command::SetState { .. }
            | Command::WaitDrained { .. }
            | Command::ScheduleMaint { .. }
            | Command::CancelMaint { .. } => {
                if let Some(t) = tokens.get_mut(2) {
                    *t = format!("{svc}/{t}");
                }
            }
            Command::Disable | Command::Enable => tokens.push(svc.to_owned()),
            Command::ShowNodes { .. } | Command::SetScheduler(_) => {
                tokens.insert(2, svc.to_owned())
            }
            _ => {}
        }
        f.write_str(&tokens.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::AdminState;

    fn round_trip(line: &str) -> Scoped {
        let s = parse_scoped(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(s.to_string(), line, "canonical form of {line}");
        assert_eq!(parse_scoped(&s.to_string()).unwrap(), s);
        s
    }

    #[test]
    fn node_commands_take_a_service_prefix() {
        let s = round_trip("set state web/10.0.0.11:8080 drain");
        assert_eq!(s.service.as_deref(), Some("web"));
        assert_eq!(
            s.cmd,
            Command::SetState {
                addr: "10.0.0.11:8080".parse().unwrap(),
                state: AdminState::Drain
            }
        );
        round_trip("add node web/10.0.0.14:8080 weight 2");
        round_trip("remove node db/[::1]:5432");
        round_trip("set weight cache/127.0.0.1:6379 7");
        round_trip("wait drained web/127.0.0.1:80 5s");
        round_trip("set state web/127.0.0.1:80 maint at +3s for 10s");
        round_trip("cancel maint web/127.0.0.1:80");
    }

    #[test]
    fn switches_take_an_optional_service_word() {
        assert_eq!(round_trip("disable web").service.as_deref(), Some("web"));
        assert_eq!(round_trip("enable").service, None);
        let s = round_trip("set scheduler db wlc");
        assert_eq!(s.service.as_deref(), Some("db"));
        assert_eq!(
            s.cmd,
            Command::SetScheduler(crate::scheduler::SchedulerKind::Wlc)
        );
        round_trip("set scheduler rr");
        round_trip("show nodes web --json");
        round_trip("show nodes");
    }

    #[test]
    fn bare_lines_are_unchanged_and_default_is_left_out() {
        let s = round_trip("set state 127.0.0.1:9001 maint");
        assert_eq!(s.service, None);
        let d = Scoped::new(Some("default"), s.cmd.clone());
        assert_eq!(d.to_string(), "set state 127.0.0.1:9001 maint");
    }

    #[test]
    fn bad_service_words_are_refused_by_name() {
        for line in [
            "set state /10.0.0.1:80 drain",
            "disable we$b",
            "set scheduler w=b wlc",
        ] {
            let e = parse_scoped(line).unwrap_err();
            assert!(matches!(e, ParseError::BadService(_)), "{line}: {e:?}");
            assert!(e.to_string().contains("bad service"), "{e}");
        }
        // A service word where none is allowed is an extra argument.
        assert!(parse_scoped("show stats web").is_err());
        // Errors still name the address.
        let e = parse_scoped("set state web/nonsense drain").unwrap_err();
        assert!(e.to_string().contains("nonsense"), "{e}");
    }
}
