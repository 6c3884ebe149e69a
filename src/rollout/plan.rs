//! The rollout's plan: which nodes, in what order, how many at a time, how
//! many must stay usable, how long each wait may last, and what to run.
//!
//! What it owns: validation of the operator's numbers into an immutable
//! [`Plan`], with a typed [`PlanError`] naming the field and the value. It
//! does not parse flags (that comes with the ctl commands) and runs nothing.

use core::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// What to run on each node once it is drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A hook script named in the configuration (`--hook NAME`).
    Hook(String),
    /// A task run by the node's agent (`--task NAME`).
    Task(String),
}

impl Action {
    /// The hook or task name.
    pub fn name(&self) -> &str {
        match self {
            Action::Hook(n) | Action::Task(n) => n,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Hook(n) => write!(f, "hook {n}"),
            Action::Task(n) => write!(f, "task {n}"),
        }
    }
}

/// Why a plan was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// No nodes to roll over.
    NoNodes,
    /// The same node twice in the list.
    DuplicateNode(SocketAddr),
    /// `--batch 0` would never make progress.
    ZeroBatch,
    /// A zero timeout would fail every node at once.
    ZeroTimeout(&'static str),
    /// The hook or task name is empty.
    EmptyActionName,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NoNodes => write!(f, "rollout: the node list is empty"),
            PlanError::DuplicateNode(a) => write!(f, "rollout: node {a} is listed twice"),
            PlanError::ZeroBatch => write!(f, "rollout: --batch must be at least 1, got 0"),
            PlanError::ZeroTimeout(field) => write!(f, "rollout: {field} must be above 0"),
            PlanError::EmptyActionName => write!(f, "rollout: the hook or task name is empty"),
        }
    }
}

impl std::error::Error for PlanError {}

/// A validated rollout plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    nodes: Vec<SocketAddr>,
    batch: usize,
    min_ready: usize,
    drain_timeout: Duration,
    healthy_timeout: Duration,
    action: Action,
}

impl Plan {
    /// Validates a plan. `nodes` is the service's node list in the order the
    /// rollout takes them.
    pub fn new(
        nodes: Vec<SocketAddr>,
        batch: usize,
        min_ready: usize,
        drain_timeout: Duration,
        healthy_timeout: Duration,
        action: Action,
    ) -> Result<Plan, PlanError> {
        if nodes.is_empty() {
            return Err(PlanError::NoNodes);
        }
        for (i, a) in nodes.iter().enumerate() {
            if nodes[..i].contains(a) {
                return Err(PlanError::DuplicateNode(*a));
            }
        }
        if batch == 0 {
            return Err(PlanError::ZeroBatch);
        }
        // `min_ready` may be as high as the node count, or higher: the rollout then
        // waits (and says so) until the service has nodes to spare, e.g. a node added
        // for the occasion; it never takes the service below the minimum.
        if drain_timeout.is_zero() {
            return Err(PlanError::ZeroTimeout("--drain-timeout"));
        }
        if healthy_timeout.is_zero() {
            return Err(PlanError::ZeroTimeout("--healthy-timeout"));
        }
        if action.name().is_empty() {
            return Err(PlanError::EmptyActionName);
        }
        Ok(Plan {
            nodes,
            batch,
            min_ready,
            drain_timeout,
            healthy_timeout,
            action,
        })
    }

    /// The nodes, in rollout order.
    pub fn nodes(&self) -> &[SocketAddr] {
        &self.nodes
    }
    /// Most nodes out of service at once.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Fewest usable nodes the rollout leaves in the service.
    pub fn min_ready(&self) -> usize {
        self.min_ready
    }
    /// How long a node may take to drain before its connections are cut.
    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }
    /// How long a node may take to pass its health checks after the action.
    pub fn healthy_timeout(&self) -> Duration {
        self.healthy_timeout
    }
    /// What runs on each node.
    pub fn action(&self) -> &Action {
        &self.action
    }
}
