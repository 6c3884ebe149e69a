//! `fulcrum agent`'s flags: what the broker on a server node probes, where it reports,
//! and how it judges load. Parsed by clap; no IO here (the key file is read by
//! [`super::run`]).

// The flags' doc comments are their --help text, written for a terminal, not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::addr::{parse_listen, resolve};
use crate::duration::parse_duration;
use crate::health::config::CheckKind;
use crate::health::http::StatusSet;
use crate::rollout::config::{parse_hook, Hook};

/// `fulcrum agent` flags.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The local service to probe and report on (HOST:PORT); also the default node id.
    #[arg(long, value_parser = resolve)]
    pub service: SocketAddr,
    /// Distributor's agent address (its --agent-listen), repeatable (primary and backup).
    #[arg(long = "distributor", required = true, value_parser = parse_listen)]
    pub distributors: Vec<SocketAddr>,
    /// File holding the shared HMAC key (same as the distributor's --agent-key-file).
    #[arg(long)]
    pub key_file: PathBuf,
    /// Node id sent in heartbeats; must equal the node's address in the distributor's
    /// --backend list [default: --service].
    #[arg(long)]
    pub node_id: Option<String>,
    /// Probe of the local service: tcp or http[:PATH].
    #[arg(long, default_value = "tcp", value_parser = parse_agent_check)]
    pub check: CheckKind,
    /// HTTP statuses that pass an http probe.
    #[arg(long, default_value = "2xx,3xx", value_parser = |s: &str| s.parse::<StatusSet>().map_err(|e| e.to_string()))]
    pub check_status: StatusSet,
    /// Probe timeout.
    #[arg(long, default_value = "1s", value_parser = |s: &str| parse_duration(s).map_err(|e| e.to_string()))]
    pub check_timeout: Duration,
    /// Heartbeat interval (the distributor's --agent-interval must match).
    #[arg(long, default_value = "1s", value_parser = |s: &str| parse_duration(s).map_err(|e| e.to_string()))]
    pub interval: Duration,
    /// Report "overloaded" when the 1-minute load average per CPU exceeds this.
    #[arg(long, default_value_t = 2.0)]
    pub overload: f64,
    /// Where the load average is read from (first field).
    #[arg(long, default_value = "/proc/loadavg")]
    pub loadavg_file: PathBuf,
    /// While this file exists, report "drain" (no new flows; existing ones finish).
    #[arg(long)]
    pub drain_file: Option<PathBuf>,
    /// Also report a weight percentage that falls as load rises past half the overload
    /// threshold (never above the configured weight).
    #[arg(long)]
    pub dynamic_weight: bool,
    /// A task the distributor may ask this node to run, as NAME=COMMAND (repeatable);
    /// run through /bin/sh -c with FULCRUM_TASK, FULCRUM_TASK_ID and FULCRUM_NODE set,
    /// at most once per request id, killed at the request's deadline. Requests come
    /// authenticated with --key-file; nothing undeclared can run.
    #[arg(long = "task", value_name = "NAME=COMMAND", value_parser = parse_task)]
    pub tasks: Vec<Hook>,
}

fn parse_task(s: &str) -> Result<Hook, String> {
    let t = parse_hook(s)?;
    if t.name == "status" {
        return Err("\"status\" is reserved (fulcrum ctl task status)".into());
    }
    Ok(t)
}

fn parse_agent_check(s: &str) -> Result<CheckKind, String> {
    match crate::health::config::parse_check(s)? {
        CheckKind::None => Err("the agent needs a probe: tcp, http or http:/PATH".into()),
        k => Ok(k),
    }
}
