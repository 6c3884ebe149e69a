//! The rollout state machine: batches of nodes taken out, worked on and put
//! back, one batch at a time, never leaving the service too thin.
//!
//! What it owns: each node's progress (pending → draining → running →
//! waiting healthy → done, or failed), the per-node deadlines, run ids and
//! the decision to start the next batch. Inputs are [`Rollout::start`],
//! [`Rollout::on_node`], [`Rollout::on_action_done`], [`Rollout::on_timeout`],
//! [`Rollout::abort`] and [`Rollout::resume`]; outputs are drained with
//! [`Rollout::poll_command`] after every input, the next deadline is read with
//! [`Rollout::poll_timeout`] and the operator's view with [`Rollout::status`].
//!
//! What it does not do: set node states, cut connections, run hooks or read a
//! clock. Time comes in as `now`, a [`Duration`] since any fixed origin.
//!
//! # Rules
//! - Batches are taken in node order, `batch` nodes at a time (the last one
//!   may be smaller).
//! - A batch starts only when `usable − batch_len ≥ min_ready`, counting the
//!   nodes the driver last reported usable (a node never reported counts as
//!   not usable) and the service's usable nodes outside the plan
//!   ([`Rollout::on_others`]: a node added for the occasion lets a rollout
//!   with `min_ready` equal to the plan's size proceed). This is conservative: a batch member that is already down
//!   is subtracted too. Otherwise the rollout is `Waiting` and re-checks on
//!   every report. A node just set ready counts once a report says it is
//!   usable, not before.
//! - Draining ends on the first report *after* the drain was asked for with
//!   `active_conns == 0` (an earlier report may predate the drain), or at the
//!   drain timeout with [`Command::Cut`]. Then the action runs.
//! - After the action succeeds, the node is healthy on the first report with
//!   `healthy_streak ≥ rise`; it is then set ready and is done.
//! - The first failure (action error, healthy timeout) puts that node in
//!   maint with the reason; the other unfinished nodes of its batch go to
//!   maint too, and nothing more starts. `abort` does the same with the
//!   reason "aborted by operator".
//! - `resume` drains the failed nodes again and re-runs their action with a
//!   new id; done nodes stay done. Action results carry the run id, so a late
//!   result of a run given up on is ignored rather than taken for the new run.
//! - A rollout taken over from a failover peer ([`Rollout::restore`]) starts
//!   `Interrupted`: the nodes the old master had out are put in maint (their
//!   action may have half run), nothing starts until the operator resumes
//!   (those nodes run again) or aborts.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use super::plan::Plan;

/// Longest action output kept per node, in bytes (the tail is kept).
pub const MAX_OUTPUT_TAIL: usize = 4096;

/// Longest piece of the action's output quoted in a failure reason, in bytes.
pub const MAX_REASON: usize = 200;

/// The reason given to nodes stopped by [`Rollout::abort`].
pub const ABORT_REASON: &str = "aborted by operator";

/// A run of the action, unique within one [`Rollout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub u64);

/// What the driver last saw of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeView {
    /// Ready and healthy: the scheduler may pick it.
    pub usable: bool,
    /// Connections still open through it.
    pub active_conns: u64,
    /// Consecutive passing health checks.
    pub healthy_streak: u32,
    /// Passing checks needed to count as healthy.
    pub rise: u32,
}

/// The admin state the driver must set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No new connections; existing ones finish.
    Drain,
    /// Back in service.
    Ready,
    /// Out of service, with the reason shown to the operator.
    Maint {
        /// Why.
        reason: String,
    },
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Set a node's admin state.
    SetState {
        /// The node.
        addr: SocketAddr,
        /// The state.
        target: Target,
    },
    /// The drain timeout passed: close the node's connections, as
    /// `remove node` does.
    Cut {
        /// The node.
        addr: SocketAddr,
    },
    /// Run the plan's action on the node; report with
    /// [`Rollout::on_action_done`].
    RunAction {
        /// The node.
        addr: SocketAddr,
        /// This run's id.
        id: RunId,
    },
}

/// One node's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// Not reached yet.
    Pending,
    /// Asked to drain at `since`.
    Draining {
        /// When the drain was asked for.
        since: Duration,
    },
    /// The action runs.
    Running {
        /// When it was started.
        since: Duration,
        /// Its run id.
        id: RunId,
    },
    /// The action succeeded; waiting for the health checks.
    WaitingHealthy {
        /// When the action finished.
        since: Duration,
    },
    /// Set ready again.
    Done {
        /// When.
        at: Duration,
    },
    /// Stopped in maint.
    Failed {
        /// When.
        at: Duration,
        /// Why.
        reason: String,
    },
}

impl NodeState {
    /// One word per state, as `rollout status` shows it.
    pub fn word(&self) -> &'static str {
        match self {
            NodeState::Pending => "pending",
            NodeState::Draining { .. } => "draining",
            NodeState::Running { .. } => "running",
            NodeState::WaitingHealthy { .. } => "waiting-healthy",
            NodeState::Done { .. } => "done",
            NodeState::Failed { .. } => "failed",
        }
    }

    /// When the node entered this state (none while pending).
    pub fn since(&self) -> Option<Duration> {
        match self {
            NodeState::Pending => None,
            NodeState::Draining { since }
            | NodeState::Running { since, .. }
            | NodeState::WaitingHealthy { since } => Some(*since),
            NodeState::Done { at } | NodeState::Failed { at, .. } => Some(*at),
        }
    }

    /// Why it failed, when it did.
    pub fn reason(&self) -> Option<&str> {
        match self {
            NodeState::Failed { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// The rollout as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overall {
    /// `start` not called yet.
    NotStarted,
    /// A batch is in progress.
    Running,
    /// The next batch waits for the pool: too few usable nodes.
    Waiting {
        /// Nodes usable now.
        usable: usize,
        /// Nodes that must stay usable.
        min_ready: usize,
        /// Nodes the waiting batch would take out.
        batch: usize,
    },
    /// Every node done.
    Done,
    /// Stopped at the first failure.
    Failed {
        /// The node that failed.
        node: SocketAddr,
        /// Why.
        reason: String,
    },
    /// Stopped by the operator.
    Aborted,
    /// Taken over from a failover peer mid-way: stopped until resumed or aborted.
    Interrupted {
        /// Why (which distributor ran it, what happened).
        reason: String,
    },
}

/// One node in [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node.
    pub addr: SocketAddr,
    /// Its progress.
    pub state: NodeState,
    /// The tail of the last failed action's output, if any.
    pub output_tail: Option<String>,
}

/// What `rollout status` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The rollout as a whole.
    pub overall: Overall,
    /// Every node, in rollout order.
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug)]
struct Node {
    addr: SocketAddr,
    state: NodeState,
    view: Option<NodeView>,
    output_tail: Option<String>,
}

/// The rolling-maintenance planner.
#[derive(Debug)]
pub struct Rollout {
    plan: Plan,
    nodes: Vec<Node>,
    overall: Overall,
    /// Index of the first node of the current (or next) batch.
    batch_start: usize,
    /// Whether the batch at `batch_start` has been started.
    batch_open: bool,
    next_id: u64,
    /// Usable nodes of the service outside the plan.
    others_usable: usize,
    commands: VecDeque<Command>,
}

impl Rollout {
    /// A rollout of `plan`, not started.
    pub fn new(plan: Plan) -> Rollout {
        let nodes = plan
            .nodes()
            .iter()
            .map(|&addr| Node {
                addr,
                state: NodeState::Pending,
                view: None,
                output_tail: None,
            })
            .collect();
        Rollout {
            plan,
            nodes,
            overall: Overall::NotStarted,
            batch_start: 0,
            batch_open: false,
            next_id: 0,
            others_usable: 0,
            commands: VecDeque::new(),
        }
    }

    /// The service's usable nodes outside the plan, as the driver last saw them.
    pub fn on_others(&mut self, usable: usize, now: Duration) {
        let more = usable > self.others_usable;
        self.others_usable = usable;
        if more && matches!(self.overall, Overall::Waiting { .. }) {
            self.advance(now);
        }
    }

    /// The plan being carried out.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Starts the rollout (the first batch, if the pool allows it). Ignored
    /// unless not started yet.
    pub fn start(&mut self, now: Duration) {
        if self.overall == Overall::NotStarted {
            self.overall = Overall::Running;
            self.advance(now);
        }
    }

    /// The driver's latest view of a node. Unknown addresses are ignored.
    pub fn on_node(&mut self, addr: SocketAddr, view: NodeView, now: Duration) {
        let Some(i) = self.index(addr) else { return };
        self.nodes[i].view = Some(view);
        if !self.is_active() {
            return;
        }
        match self.nodes[i].state {
            NodeState::Draining { .. } if view.active_conns == 0 => self.run_action(i, now),
            NodeState::WaitingHealthy { .. } if view.healthy_streak >= view.rise => {
                self.commands.push_back(Command::SetState {
                    addr,
                    target: Target::Ready,
                });
                self.nodes[i].state = NodeState::Done { at: now };
            }
            _ => {}
        }
        self.advance(now);
    }

    /// Run `id` of the action on `addr` finished: `Ok`, or `Err` with the
    /// reason and the output's tail. Ignored unless that very run is the
    /// node's current one: a result from a run the rollout gave up on
    /// (abort, a batch mate's failure) must not count for the run `resume`
    /// started after it.
    pub fn on_action_done(
        &mut self,
        addr: SocketAddr,
        id: RunId,
        result: Result<(), String>,
        now: Duration,
    ) {
        let Some(i) = self.index(addr) else { return };
        let current =
            matches!(self.nodes[i].state, NodeState::Running { id: run, .. } if run == id);
        if !current || !self.is_active() {
            return;
        }
        match result {
            Ok(()) => {
                self.nodes[i].state = NodeState::WaitingHealthy { since: now };
            }
            Err(output) => {
                let reason = match last_line(&output) {
                    "" => format!("{} failed", self.plan.action()),
                    line => format!("{} failed: {line}", self.plan.action()),
                };
                self.nodes[i].output_tail = Some(tail(&output, MAX_OUTPUT_TAIL).to_owned());
                self.fail(i, reason, now);
            }
        }
        self.advance(now);
    }

    /// Handles every deadline at or before `now`.
    pub fn on_timeout(&mut self, now: Duration) {
        if !self.is_active() {
            return;
        }
        for i in 0..self.nodes.len() {
            if !self.is_active() {
                break;
            }
            match self.nodes[i].state {
                NodeState::Draining { since }
                    if now >= since.saturating_add(self.plan.drain_timeout()) =>
                {
                    let addr = self.nodes[i].addr;
                    self.commands.push_back(Command::Cut { addr });
                    self.run_action(i, now);
                }
                NodeState::WaitingHealthy { since }
                    if now >= since.saturating_add(self.plan.healthy_timeout()) =>
                {
                    let reason = format!(
                        "not healthy within {:?} after the {}",
                        self.plan.healthy_timeout(),
                        self.plan.action()
                    );
                    self.fail(i, reason, now);
                }
                _ => {}
            }
        }
        self.advance(now);
    }

    /// A rollout of `plan` taken over where another distributor left it: `nodes`
    /// gives each node's state there (in plan order; missing ones are pending).
    /// Nodes that were out (draining, running, waiting healthy) become failed with
    /// `reason` and are put in maint; the rollout is [`Overall::Interrupted`] unless
    /// it was over already.
    pub fn restore(
        plan: Plan,
        overall: Overall,
        nodes: &[NodeState],
        reason: &str,
        now: Duration,
    ) -> Rollout {
        let mut r = Rollout::new(plan);
        for (node, state) in r.nodes.iter_mut().zip(nodes) {
            node.state = state.clone();
        }
        let mut stopped = false;
        for i in 0..r.nodes.len() {
            if matches!(
                r.nodes[i].state,
                NodeState::Draining { .. }
                    | NodeState::Running { .. }
                    | NodeState::WaitingHealthy { .. }
            ) {
                r.stop_one(i, reason, now);
                stopped = true;
            }
        }
        // The batch is the one holding the first unfinished node.
        let first = r
            .nodes
            .iter()
            .position(|n| !matches!(n.state, NodeState::Done { .. }))
            .unwrap_or(r.nodes.len());
        let batch = r.plan.batch().max(1);
        r.batch_start = first - first % batch;
        r.batch_open = r
            .batch_range()
            .any(|i| !matches!(r.nodes[i].state, NodeState::Pending));
        r.overall = match overall {
            done @ (Overall::Done | Overall::Failed { .. } | Overall::Aborted) if !stopped => done,
            Overall::Interrupted { reason } if !stopped => Overall::Interrupted { reason },
            _ => Overall::Interrupted {
                reason: reason.to_owned(),
            },
        };
        r
    }

    /// Stops the rollout: nothing new starts, and the unfinished nodes of the
    /// current batch go to maint. Ignored unless running, waiting or interrupted.
    pub fn abort(&mut self, now: Duration) {
        if matches!(self.overall, Overall::Interrupted { .. }) {
            self.overall = Overall::Aborted;
            return;
        }
        if !self.is_active() {
            return;
        }
        self.stop_batch(ABORT_REASON, now);
        self.overall = Overall::Aborted;
    }

    /// Continues after a failure or an abort: the failed nodes are drained
    /// again and their action re-run with a new id; done nodes stay done.
    /// Ignored in any other state.
    pub fn resume(&mut self, now: Duration) {
        if !matches!(
            self.overall,
            Overall::Failed { .. } | Overall::Aborted | Overall::Interrupted { .. }
        ) {
            return;
        }
        self.overall = Overall::Running;
        for i in self.batch_range() {
            if matches!(self.nodes[i].state, NodeState::Failed { .. }) {
                self.drain(i, now);
            }
        }
        self.advance(now);
    }

    /// The next command for the driver, in order.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The earliest pending deadline: call [`Rollout::on_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if !self.is_active() {
            return None;
        }
        self.nodes
            .iter()
            .filter_map(|n| match n.state {
                NodeState::Draining { since } => {
                    Some(since.saturating_add(self.plan.drain_timeout()))
                }
                NodeState::WaitingHealthy { since } => {
                    Some(since.saturating_add(self.plan.healthy_timeout()))
                }
                _ => None,
            })
            .min()
    }

    /// The operator's view.
    pub fn status(&self) -> Status {
        Status {
            overall: self.overall.clone(),
            nodes: self
                .nodes
                .iter()
                .map(|n| NodeStatus {
                    addr: n.addr,
                    state: n.state.clone(),
                    output_tail: n.output_tail.clone(),
                })
                .collect(),
        }
    }

    fn index(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == addr)
    }

    fn is_active(&self) -> bool {
        matches!(self.overall, Overall::Running | Overall::Waiting { .. })
    }

    fn batch_range(&self) -> core::ops::Range<usize> {
        let end = self
            .batch_start
            .saturating_add(self.plan.batch())
            .min(self.nodes.len());
        self.batch_start..end
    }

    fn drain(&mut self, i: usize, now: Duration) {
        let node = &mut self.nodes[i];
        node.state = NodeState::Draining { since: now };
        self.commands.push_back(Command::SetState {
            addr: node.addr,
            target: Target::Drain,
        });
    }

    fn run_action(&mut self, i: usize, now: Duration) {
        self.next_id = self.next_id.wrapping_add(1);
        let id = RunId(self.next_id);
        let node = &mut self.nodes[i];
        node.state = NodeState::Running { since: now, id };
        self.commands.push_back(Command::RunAction {
            addr: node.addr,
            id,
        });
    }

    /// Node `i` failed: it and its unfinished batch mates go to maint, and
    /// the rollout stops.
    fn fail(&mut self, i: usize, reason: String, now: Duration) {
        let node = self.nodes[i].addr;
        self.stop_one(i, &reason, now);
        let mates = format!("stopped: {node} failed");
        self.stop_batch(&mates, now);
        self.overall = Overall::Failed { node, reason };
    }

    fn stop_batch(&mut self, reason: &str, now: Duration) {
        if !self.batch_open {
            return;
        }
        for i in self.batch_range() {
            if matches!(
                self.nodes[i].state,
                NodeState::Draining { .. }
                    | NodeState::Running { .. }
                    | NodeState::WaitingHealthy { .. }
            ) {
                self.stop_one(i, reason, now);
            }
        }
    }

    fn stop_one(&mut self, i: usize, reason: &str, now: Duration) {
        let node = &mut self.nodes[i];
        node.state = NodeState::Failed {
            at: now,
            reason: reason.to_owned(),
        };
        self.commands.push_back(Command::SetState {
            addr: node.addr,
            target: Target::Maint {
                reason: reason.to_owned(),
            },
        });
    }

    /// Closes a finished batch and opens the next one when the pool allows.
    fn advance(&mut self, now: Duration) {
        if !self.is_active() {
            return;
        }
        if self.batch_open {
            let finished = self
                .batch_range()
                .all(|i| matches!(self.nodes[i].state, NodeState::Done { .. }));
            if !finished {
                return;
            }
            self.batch_open = false;
            self.batch_start = self.batch_range().end;
        }
        let range = self.batch_range();
        if range.is_empty() {
            self.overall = Overall::Done;
            return;
        }
        let usable = self
            .nodes
            .iter()
            .filter(|n| n.view.is_some_and(|v| v.usable))
            .count()
            + self.others_usable;
        let batch = range.len();
        // usable − batch ≥ min_ready, without going below zero.
        if usable < batch.saturating_add(self.plan.min_ready()) {
            self.overall = Overall::Waiting {
                usable,
                min_ready: self.plan.min_ready(),
                batch,
            };
            return;
        }
        self.overall = Overall::Running;
        self.batch_open = true;
        for i in range {
            self.drain(i, now);
        }
    }
}

/// The last non-empty line of `s`, at most [`MAX_REASON`] bytes of it.
fn last_line(s: &str) -> &str {
    let line = s
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut end = line.len().min(MAX_REASON);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.get(..end).unwrap_or("")
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s.get(start..).unwrap_or("")
}
