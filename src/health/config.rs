//! Health-check settings: what the distributor's checks and node-agent receiver are
//! told to do. Pure data and validation, no IO; the driver is [`super::checker`].

use std::net::SocketAddr;
use std::time::Duration;

use super::http::StatusSet;
use super::interval::IntervalPolicy;
use super::state::Thresholds;

/// What an active check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// No active checks (passive failures are then ignored too: nothing would bring a
    /// node back).
    None,
    /// TCP connect.
    Tcp,
    /// HTTP/1.1 GET of `path`, status in the expected set.
    Http {
        /// Request path, e.g. `/health`.
        path: String,
    },
}

/// Node-agent settings on the distributor side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// UDP address heartbeats arrive on.
    pub listen: SocketAddr,
    /// Shared HMAC key.
    pub key: crate::secret::Secret,
    /// Interval the agents send at.
    pub interval: Duration,
    /// Missed heartbeats before a node's agent counts as missing.
    pub misses: u32,
}

/// Health-check settings (from `--check*`, `--rise/--warn/--fall`, `--slow-start`, `--agent-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Probe kind.
    pub kind: CheckKind,
    /// Intervals (adaptive, fast, down).
    pub policy: IntervalPolicy,
    /// Rise/warn/fall.
    pub thresholds: Thresholds,
    /// Probe timeout.
    pub timeout: Duration,
    /// Expected HTTP statuses.
    pub statuses: StatusSet,
    /// HTTP Host header; default the node's IP.
    pub host: Option<String>,
    /// Jitter seed.
    pub seed: u64,
    /// Ramp-up time of a node coming back up; zero = off.
    pub slow_start: Duration,
    /// Node agents, if any.
    pub agent: Option<AgentConfig>,
    /// Nodes expect a PROXY protocol header: HTTP checks send a LOCAL one first.
    pub send_proxy: Option<crate::wire::proxy_protocol::Version>,
}

/// Parses `none`, `tcp`, `http` or `http:/PATH`.
pub fn parse_check(s: &str) -> Result<CheckKind, String> {
    match s {
        "none" => Ok(CheckKind::None),
        "tcp" => Ok(CheckKind::Tcp),
        "http" => Ok(CheckKind::Http { path: "/".into() }),
        _ => match s.strip_prefix("http:") {
            Some(path) => {
                super::http::validate_path(path)
                    .map_err(|e| format!("bad path \"{path}\": {e}"))?;
                Ok(CheckKind::Http {
                    path: path.to_string(),
                })
            }
            None => Err(format!(
                "\"{s}\" is not a check (expected none, tcp, http or http:/PATH)"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_kinds_parse() {
        assert_eq!(parse_check("none"), Ok(CheckKind::None));
        assert_eq!(parse_check("tcp"), Ok(CheckKind::Tcp));
        assert_eq!(
            parse_check("http"),
            Ok(CheckKind::Http { path: "/".into() })
        );
        assert_eq!(
            parse_check("http:/health"),
            Ok(CheckKind::Http {
                path: "/health".into()
            })
        );
        assert!(parse_check("udp").is_err());
        assert!(parse_check("http:no-slash").is_err());
    }
}
