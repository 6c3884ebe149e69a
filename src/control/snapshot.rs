//! Plain-data snapshots that the distributor hands to the control renderers.
//!
//! This file owns the two state axes of a node — [`AdminState`] (what the
//! operator asked for) and [`HealthState`] (what the checks observed) — and
//! the copied-out views of a node ([`NodeSnapshot`]), of its last health
//! check ([`CheckSnapshot`]) and of the whole distributor ([`StatsSnapshot`]).
//!
//! It deliberately holds no atomics, no clocks and no references into live
//! state: the distributor reads its counters once, fills these structs and
//! passes them to `crate::control::render`, so rendering can never race the
//! hot path or block a worker.

use std::net::SocketAddr;

pub use crate::pool::{AdminState, HealthState};

/// The outcome of the most recent active health check of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSnapshot {
    /// Whether the check passed.
    pub ok: bool,
    /// Short human-readable outcome, e.g. `"connect refused"` or `"HTTP 503"`.
    /// May come from the network: renderers escape it.
    pub detail: String,
    /// Milliseconds since the check completed, relative to the snapshot time.
    pub age_ms: u64,
    /// Round-trip time of the check in microseconds, when it got that far.
    pub rtt_us: Option<u64>,
}

/// A copied-out view of one server node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// The node's service.
    pub service: std::sync::Arc<str>,
    /// The node's address (IP and port).
    pub addr: SocketAddr,
    /// Configured weight, `0..=256`; 0 means no new flows.
    pub weight: u32,
    /// Weight the scheduler is using now (may differ during slow start or
    /// after an agent report).
    pub effective_weight: u32,
    /// Used only when no non-backup node is eligible.
    pub backup: bool,
    /// Maximum concurrent connections; 0 means no limit.
    pub maxconn: u32,
    /// Operator intent.
    pub admin: AdminState,
    /// Being removed (`remove node`): `admin` is drain until it leaves the pool.
    pub removing: bool,
    /// Observed health.
    pub health: HealthState,
    /// Connections open now.
    pub active: u64,
    /// Connections ever forwarded to this node.
    pub total: u64,
    /// Bytes received from clients and sent to this node.
    pub bytes_in: u64,
    /// Bytes received from this node and sent to clients.
    pub bytes_out: u64,
    /// Connection attempts to this node that failed.
    pub connect_failures: u64,
    /// The last active check, if one has completed.
    pub last_check: Option<CheckSnapshot>,
    /// The node's scheduled maintenance window, in a few words.
    pub window: Option<String>,
    /// The node agent's last reported state (`ready`, `drain`, `overloaded`, `down`,
    /// `missing`), if an agent is expected for this node.
    pub agent: Option<String>,
    /// Whether the agent's verdict lets the node take new flows (always true without
    /// an agent).
    pub agent_ok: bool,
}

/// A copied-out view of one service (`show services`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSnapshot {
    /// Its name.
    pub name: std::sync::Arc<str>,
    /// Its listen addresses.
    pub listen: Vec<SocketAddr>,
    /// `proxy` or `direct`.
    pub mode: &'static str,
    /// Its scheduler.
    pub scheduler: String,
    /// Nodes that take new flows now.
    pub nodes_up: u64,
    /// Nodes in its pool.
    pub nodes_total: u64,
    /// Client connections open now.
    pub active: u64,
    /// Client connections accepted.
    pub total: u64,
    /// Bytes from clients.
    pub bytes_in: u64,
    /// Bytes to clients.
    pub bytes_out: u64,
    /// Connections closed because no node could take them.
    pub no_node: u64,
    /// Distribution switched on.
    pub enabled: bool,
}

/// A copied-out view of the whole distributor.
///
/// The `ha_*` fields are all `None` when high availability is not configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Seconds since the distributor started.
    pub uptime_s: u64,
    /// Number of forwarding worker threads.
    pub workers: u32,
    /// Current scheduler keyword, e.g. `"wrr"`.
    pub scheduler: String,
    /// Whether new connections are being distributed (`enable`/`disable`).
    pub enabled: bool,
    /// Life cycle: `serving`, `draining` (stopped accepting, flows finishing) or
    /// `stopping` (drain time over, cutting what is left).
    pub state: String,
    /// The binary's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Connections open now.
    pub active: u64,
    /// Connections ever accepted and forwarded.
    pub total: u64,
    /// Bytes received from clients.
    pub bytes_in: u64,
    /// Bytes sent to clients.
    pub bytes_out: u64,
    /// Connections refused because distribution was disabled.
    pub refused_disabled: u64,
    /// Connections refused because every eligible node was at its maxconn.
    pub refused_maxconn: u64,
    /// Connections reset because their address had `--max-conns-per-source` open.
    pub refused_per_source: u64,
    /// Connections refused because no node was eligible at all.
    pub no_node: u64,
    /// Connection attempts to nodes that failed (all nodes).
    pub connect_failures: u64,
    /// `accept(2)` errors (e.g. descriptor exhaustion).
    pub accept_errors: u64,
    /// Valid node-agent heartbeats received.
    pub agent_accepted: u64,
    /// Node-agent heartbeats rejected (bad MAC, replay, stale, malformed, unknown node).
    pub agent_rejected: u64,
    /// HA role keyword, e.g. `"master"` or `"backup"`.
    pub ha_role: Option<String>,
    /// HA election epoch.
    pub ha_epoch: Option<u64>,
    /// Times this distributor became master.
    pub ha_takeovers: Option<u64>,
    /// Milliseconds since the last valid heartbeat from the peer.
    pub ha_peer_last_ms: Option<u64>,
    /// Heartbeats rejected (bad authentication, replay, malformed).
    pub ha_rejected: Option<u64>,
    /// Direct mode's data-plane counters (`None` in proxy mode).
    pub direct: Option<DirectSnapshot>,
}

/// Direct mode's data-plane counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectSnapshot {
    /// Every counter with its value, in [`crate::direct::stats::COUNTERS`] order.
    pub counters: Vec<crate::direct::stats::CounterValue>,
    /// Frames dropped, by reason (every reason, zeros included).
    pub drops: Vec<(&'static str, u64)>,
    /// Each data-plane worker's counters, in
    /// [`crate::direct::stats::WORKER_COUNTERS`] order.
    pub workers: Vec<[u64; crate::direct::stats::WORKER_COUNTERS.len()]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_state_round_trips() {
        for s in AdminState::ALL {
            assert_eq!(s.to_string().parse::<AdminState>(), Ok(s));
        }
    }

    #[test]
    fn health_state_round_trips() {
        for s in HealthState::ALL {
            assert_eq!(s.to_string().parse::<HealthState>(), Ok(s));
        }
    }

    #[test]
    fn keywords_are_case_sensitive_and_errors_name_the_value() {
        let err = "Ready".parse::<AdminState>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown admin state "Ready" (expected ready, drain or maint)"#
        );
        let err = "".parse::<HealthState>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown health state "" (expected up, warning or down)"#
        );
    }
}
