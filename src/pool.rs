//! The server nodes: identity, configuration, admin and health state, live counters.
//!
//! A [`Pool`] holds the current node list as an immutable snapshot (`Arc<[Arc<Node>]>`)
//! behind a lock that only writers and snapshot refreshes take. Workers keep their own
//! clone of the snapshot and compare a generation counter (one atomic load per new
//! connection) to learn that membership or weights changed. Per-node state that changes
//! often (admin state, health, weight, counters) lives in atomics inside [`Node`], so a
//! drain or a health flip is seen by every worker at once without a new snapshot.
//!
//! This module decides nothing: schedulers read it, health checks and the control
//! interface write it.

use std::error::Error;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

/// The operator's intent for a node; independent of its health.
///
/// Follows HAProxy's server states: `ready` takes new flows, `drain` keeps
/// established flows but takes no new ones, `maint` takes nothing new and is
/// also excluded from health-driven decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminState {
    /// Eligible for new flows (subject to health).
    Ready,
    /// Established flows continue; no new flows.
    Drain,
    /// Under maintenance: no new flows.
    Maint,
}

impl AdminState {
    /// Every state, in display order (used for one-hot metric families).
    pub const ALL: [AdminState; 3] = [AdminState::Ready, AdminState::Drain, AdminState::Maint];

    /// The lowercase keyword used on the wire, in JSON and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AdminState {
    type Err = ParseKeywordError;

    /// Accepts exactly `ready`, `drain` or `maint` (case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ready" => Ok(AdminState::Ready),
            "drain" => Ok(AdminState::Drain),
            "maint" => Ok(AdminState::Maint),
            _ => Err(ParseKeywordError::new(
                "admin state",
                s,
                "ready, drain or maint",
            )),
        }
    }
}

/// What the health checks (and passive failure counting) observed.
///
/// `warning` is the paper's "warning value": heartbeats are late, so the
/// node is skipped for new flows but not yet declared dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// Passing checks.
    Up,
    /// Failing or late, not yet past the fall threshold; skipped for new flows.
    Warning,
    /// Past the fall threshold; no new flows.
    Down,
}

impl HealthState {
    /// Every state, in display order (used for one-hot metric families).
    pub const ALL: [HealthState; 3] = [HealthState::Up, HealthState::Warning, HealthState::Down];

    /// The lowercase keyword used in text, JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Up => "up",
            HealthState::Warning => "warning",
            HealthState::Down => "down",
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HealthState {
    type Err = ParseKeywordError;

    /// Accepts exactly `up`, `warning` or `down` (case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "up" => Ok(HealthState::Up),
            "warning" => Ok(HealthState::Warning),
            "down" => Ok(HealthState::Down),
            _ => Err(ParseKeywordError::new(
                "health state",
                s,
                "up, warning or down",
            )),
        }
    }
}

/// A keyword that is not one of an enum's spellings.
///
/// Shared by every small keyword enum of the control interface (states,
/// scheduler kinds) so callers match on one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseKeywordError {
    /// What was being parsed, e.g. `"admin state"`.
    pub what: &'static str,
    /// The rejected input, verbatim.
    pub value: String,
    /// The accepted spellings, for the message, e.g. `"ready, drain or maint"`.
    pub expected: &'static str,
}

impl ParseKeywordError {
    /// Builds the error for `value`, which failed to parse as `what`.
    pub fn new(what: &'static str, value: &str, expected: &'static str) -> Self {
        ParseKeywordError {
            what,
            value: value.to_owned(),
            expected,
        }
    }
}

impl fmt::Display for ParseKeywordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?} (expected {})",
            self.what, self.value, self.expected
        )
    }
}

impl Error for ParseKeywordError {}

impl AdminState {
    fn to_u8(self) -> u8 {
        self as u8
    }
    fn from_u8(v: u8) -> Self {
        match v {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }
}

impl HealthState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => HealthState::Warning,
            2 => HealthState::Down,
            _ => HealthState::Up,
        }
    }
}

/// What the operator configured for a node (`--backend ADDR,weight=N,backup,maxconn=N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Relative weight, 0..=256 (0: no new flows).
    pub weight: u32,
    /// Only used while no normal node is usable.
    pub backup: bool,
    /// Per-node connection limit; 0 = none.
    pub maxconn: u32,
    /// Expect heartbeats from a node agent (`fulcrum agent`) for this node: a missing
    /// or unhappy agent takes the node out of scheduling.
    pub agent: bool,
}

/// Live counters of one node. Written by workers, read by stats.
#[derive(Debug, Default)]
pub struct NodeCounters {
    /// Flows currently open to this node, across all workers (least-connections reads this).
    pub active: AtomicU64,
    /// Flows ever sent to this node.
    pub total: AtomicU64,
    /// Bytes relayed client → node.
    pub bytes_in: AtomicU64,
    /// Bytes relayed node → client.
    pub bytes_out: AtomicU64,
    /// Packets forwarded client → node (direct mode; replies bypass the distributor).
    pub packets_in: AtomicU64,
    /// Connect attempts that failed (refused, timed out).
    pub connect_failures: AtomicU64,
}

/// One server node, shared by every worker.
#[derive(Debug)]
pub struct Node {
    spec: NodeSpec,
    weight: AtomicU32,
    /// Weight after slow start and agent adjustments; what schedulers use.
    effective_weight: AtomicU32,
    admin: AtomicU8,
    health: AtomicU8,
    /// The agent's view: false while the agent reports overloaded/drain/down.
    agent_ok: AtomicBool,
    /// Set once the node has been removed from the pool (in-flight flows still hold it).
    removed: AtomicBool,
    /// Workers close this node's remaining flows (a removal reached its deadline).
    cut: AtomicBool,
    /// Live counters.
    pub counters: NodeCounters,
}

impl Node {
    /// A node in state ready/up with the spec's weight.
    pub fn new(spec: NodeSpec) -> Self {
        Node {
            weight: AtomicU32::new(spec.weight),
            effective_weight: AtomicU32::new(spec.weight),
            admin: AtomicU8::new(AdminState::Ready.to_u8()),
            health: AtomicU8::new(HealthState::Up as u8),
            agent_ok: AtomicBool::new(true),
            removed: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            counters: NodeCounters::default(),
            spec,
        }
    }
    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.spec.addr
    }
    /// The configuration it was created with.
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }
    /// Backup node?
    pub fn is_backup(&self) -> bool {
        self.spec.backup
    }
    /// Configured weight.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }
    /// Weight the schedulers use (configured weight, reduced during slow start or by the agent).
    pub fn effective_weight(&self) -> u32 {
        self.effective_weight.load(Ordering::Relaxed)
    }
    /// Sets both the configured and the effective weight.
    pub fn set_weight(&self, w: u32) {
        self.weight.store(w, Ordering::Relaxed);
        self.effective_weight.store(w, Ordering::Relaxed);
    }
    /// Sets the effective weight only (slow start, agent), bounded by the configured weight.
    pub fn set_effective_weight(&self, w: u32) {
        self.effective_weight
            .store(w.min(self.weight()), Ordering::Relaxed);
    }
    /// Admin state.
    pub fn admin(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }
    /// Sets the admin state; returns the previous one.
    pub fn set_admin(&self, s: AdminState) -> AdminState {
        AdminState::from_u8(self.admin.swap(s.to_u8(), Ordering::Relaxed))
    }
    /// Health state.
    pub fn health(&self) -> HealthState {
        HealthState::from_u8(self.health.load(Ordering::Relaxed))
    }
    /// Sets the health state; returns the previous one.
    pub fn set_health(&self, s: HealthState) -> HealthState {
        HealthState::from_u8(self.health.swap(s as u8, Ordering::Relaxed))
    }
    /// Whether the node agent (if any) allows new flows.
    pub fn agent_ok(&self) -> bool {
        self.agent_ok.load(Ordering::Relaxed)
    }
    /// Sets the agent's verdict.
    pub fn set_agent_ok(&self, ok: bool) {
        self.agent_ok.store(ok, Ordering::Relaxed);
    }
    /// Marks the node as removed from the pool.
    pub fn mark_removed(&self) {
        self.removed.store(true, Ordering::Relaxed);
    }
    /// Asks workers to close this node's remaining flows.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }
    /// Lets new flows live again after [`Node::cut`]: a rollout cut a node that did not
    /// drain in time, and puts it back in service after its hook.
    pub fn clear_cut(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }
    /// Must its flows be closed?
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }
    /// Removed from the pool (only in-flight flows still reference it)?
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }
    /// Open flows right now.
    pub fn active(&self) -> u64 {
        self.counters.active.load(Ordering::Relaxed)
    }
    /// May this node take a new flow right now? Ready, up, agent happy, weight > 0,
    /// below its connection limit.
    pub fn eligible(&self) -> bool {
        self.admin() == AdminState::Ready
            && self.health() == HealthState::Up
            && self.agent_ok()
            && !self.is_removed()
            && self.effective_weight() > 0
            && (self.spec.maxconn == 0 || self.active() < u64::from(self.spec.maxconn))
    }
}

/// The shared, swappable list of nodes.
#[derive(Debug)]
pub struct Pool {
    nodes: RwLock<Arc<[Arc<Node>]>>,
    generation: AtomicU64,
}

/// Why a pool change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    /// A node with this address already exists.
    Exists(SocketAddr),
    /// No node with this address.
    NotFound(SocketAddr),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Exists(a) => write!(f, "node {a} already exists"),
            PoolError::NotFound(a) => write!(f, "no such node {a}"),
        }
    }
}

impl std::error::Error for PoolError {}

impl Pool {
    /// A pool with these nodes, in this order (the order matters for Maglev and for
    /// round-robin sequences; it is the order of the `--backend` flags).
    pub fn new(specs: &[NodeSpec]) -> Self {
        let nodes: Vec<Arc<Node>> = specs
            .iter()
            .cloned()
            .map(|s| Arc::new(Node::new(s)))
            .collect();
        Pool {
            nodes: RwLock::new(nodes.into()),
            generation: AtomicU64::new(1),
        }
    }

    /// Bumped on every change that schedulers must rebuild for (membership, weights).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Signals a change that needs scheduler rebuilds (e.g. a weight change).
    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The current node list and its generation.
    pub fn snapshot(&self) -> (Arc<[Arc<Node>]>, u64) {
        // A poisoned lock means a writer panicked mid-update; the Arc inside is still a
        // complete snapshot (writers replace it whole), so keep serving it.
        let g = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        (g.clone(), self.generation())
    }

    /// Finds a node by address.
    pub fn find(&self, addr: SocketAddr) -> Option<Arc<Node>> {
        self.snapshot().0.iter().find(|n| n.addr() == addr).cloned()
    }

    /// Adds a node at the end of the list.
    pub fn add(&self, spec: NodeSpec) -> Result<Arc<Node>, PoolError> {
        let mut g = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        if g.iter().any(|n| n.addr() == spec.addr) {
            return Err(PoolError::Exists(spec.addr));
        }
        let node = Arc::new(Node::new(spec));
        let mut v: Vec<Arc<Node>> = g.iter().cloned().collect();
        v.push(node.clone());
        *g = v.into();
        self.bump();
        Ok(node)
    }

    /// Removes a node from the list. Flows already open keep their reference and finish.
    pub fn remove(&self, addr: SocketAddr) -> Result<Arc<Node>, PoolError> {
        let mut g = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        let pos = g
            .iter()
            .position(|n| n.addr() == addr)
            .ok_or(PoolError::NotFound(addr))?;
        let node = g[pos].clone();
        node.mark_removed();
        let v: Vec<Arc<Node>> = g
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != pos)
            .map(|(_, n)| n.clone())
            .collect();
        *g = v.into();
        self.bump();
        Ok(node)
    }
}

/// Global counters of the distributor.
#[derive(Debug, Default)]
pub struct Stats {
    /// Open client connections.
    pub active: AtomicU64,
    /// Accepted client connections.
    pub total: AtomicU64,
    /// Bytes client → nodes.
    pub bytes_in: AtomicU64,
    /// Bytes nodes → clients.
    pub bytes_out: AtomicU64,
    /// Connections refused because distribution is disabled.
    pub refused_disabled: AtomicU64,
    /// Accepts deferred because `--max-conns` was reached.
    pub refused_maxconn: AtomicU64,
    /// Connections reset because their address had `--max-conns-per-source` open.
    pub refused_per_source: AtomicU64,
    /// Connections closed because no node could take them.
    pub no_node: AtomicU64,
    /// Failed connect attempts to nodes.
    pub connect_failures: AtomicU64,
    /// accept(2) errors (descriptor exhaustion and others).
    pub accept_errors: AtomicU64,
    /// Connections cut at shutdown after the drain timeout.
    pub cut_at_shutdown: AtomicU64,
    /// Valid agent heartbeats received.
    pub agent_accepted: AtomicU64,
    /// Agent heartbeats rejected (bad MAC, replay, stale, malformed, unknown node).
    pub agent_rejected: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(port: u16) -> NodeSpec {
        NodeSpec {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            weight: 1,
            backup: false,
            maxconn: 0,
            agent: false,
        }
    }

    #[test]
    fn add_remove_bump_generation() {
        let p = Pool::new(&[spec(1), spec(2)]);
        let g0 = p.generation();
        assert!(p.add(spec(2)).is_err());
        p.add(spec(3)).unwrap();
        assert!(p.generation() > g0);
        let n = p.remove(spec(1).addr).unwrap();
        assert!(n.is_removed() && !n.eligible());
        let (nodes, _) = p.snapshot();
        let ports: Vec<u16> = nodes.iter().map(|n| n.addr().port()).collect();
        assert_eq!(ports, vec![2, 3]);
        assert_eq!(
            p.remove(spec(1).addr).unwrap_err(),
            PoolError::NotFound(spec(1).addr)
        );
    }

    #[test]
    fn eligibility_axes() {
        let mut s = spec(1);
        s.maxconn = 1;
        let n = Node::new(s);
        assert!(n.eligible());
        n.set_admin(AdminState::Drain);
        assert!(!n.eligible());
        n.set_admin(AdminState::Ready);
        n.set_health(HealthState::Warning);
        assert!(!n.eligible());
        n.set_health(HealthState::Up);
        n.counters.active.store(1, Ordering::Relaxed);
        assert!(!n.eligible(), "at maxconn");
        n.counters.active.store(0, Ordering::Relaxed);
        n.set_agent_ok(false);
        assert!(!n.eligible());
        n.set_agent_ok(true);
        n.set_weight(0);
        assert!(!n.eligible());
    }

    #[test]
    fn effective_weight_bounded_by_configured() {
        let n = Node::new(spec(1));
        n.set_weight(10);
        n.set_effective_weight(50);
        assert_eq!(n.effective_weight(), 10);
        n.set_effective_weight(3);
        assert_eq!(n.effective_weight(), 3);
    }
}
