//! A task job (`task NAME [service S] [NODE…|all] [when-idle]`), without IO: an agent
//! task run on some nodes outside any rollout, and, with `when-idle`, the paper's
//! low-priority job: the node is drained first, the task starts only once the node
//! holds no connection, and the node is then given back.
//!
//! Without `when-idle` every node's task starts at once and nothing else changes.
//! With it, nodes take their turn one after the other, in the order given:
//! - a ready node is set to drain, unless it is the service's only usable node (the
//!   job then waits, and says so, rather than take the service down);
//! - a node already out of service (drain or maint) keeps its state;
//! - the task starts once the drain is in force and the node's last connection has
//!   ended: there is no drain timeout, nothing is cut (a long transfer is waited for);
//! - when the task is over, a node this job drained is set ready again, whatever the
//!   task's outcome (its health checks judge the node, as always). A node someone
//!   else set ready while it drained fails without running the task.
//!
//! Time comes in as `now`; the node views come from the caller each step; what to do
//! comes out as [`JobCommand`]s.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use crate::pool::AdminState;

/// What the job needs to know of a node at a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobView {
    /// Its admin state in the pool.
    pub admin: AdminState,
    /// Its open connections.
    pub active: u64,
    /// Whether it takes new connections now (ready, up).
    pub usable: bool,
    /// Usable nodes of the service other than this one.
    pub usable_others: usize,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobCommand {
    /// Set the node's admin state.
    SetState {
        /// The node.
        addr: SocketAddr,
        /// The state.
        state: AdminState,
    },
    /// Ask the node's agent to run the task.
    Run {
        /// The node.
        addr: SocketAddr,
    },
}

/// Where one node of a job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobNodeState {
    /// Its turn has not come.
    Pending,
    /// Its turn has come but the job waits (why).
    Waiting(String),
    /// Drained by the job, waiting for its last connection (since).
    Draining {
        /// Since when.
        since: Duration,
        /// Whether the pool showed the drain yet.
        in_force: bool,
    },
    /// The task runs (since).
    Running(Duration),
    /// The task exited 0 (at).
    Done(Duration),
    /// It failed (at, why).
    Failed(Duration, String),
}

impl JobNodeState {
    /// The word in `task status`.
    pub fn word(&self) -> &'static str {
        match self {
            JobNodeState::Pending => "pending",
            JobNodeState::Waiting(_) => "waiting",
            JobNodeState::Draining { .. } => "draining",
            JobNodeState::Running(_) => "running",
            JobNodeState::Done(_) => "done",
            JobNodeState::Failed(..) => "failed",
        }
    }

    fn is_over(&self) -> bool {
        matches!(self, JobNodeState::Done(_) | JobNodeState::Failed(..))
    }

    /// When the node entered this state (none while pending or waiting).
    pub fn since(&self) -> Option<Duration> {
        match self {
            JobNodeState::Pending | JobNodeState::Waiting(_) => None,
            JobNodeState::Draining { since, .. } => Some(*since),
            JobNodeState::Running(at) | JobNodeState::Done(at) | JobNodeState::Failed(at, _) => {
                Some(*at)
            }
        }
    }

    /// Why it waits or failed.
    pub fn reason(&self) -> Option<&str> {
        match self {
            JobNodeState::Waiting(why) | JobNodeState::Failed(_, why) => Some(why),
            _ => None,
        }
    }
}

/// One node of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobNode {
    /// The node.
    pub addr: SocketAddr,
    /// Where it stands.
    pub state: JobNodeState,
    /// The output tail the agent reported.
    pub output: String,
    /// Whether this job drained it (and so gives it back).
    drained_by_job: bool,
}

/// A task job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its id (`task status` names it).
    pub id: u64,
    /// The service's name.
    pub service: String,
    /// The declared task's name.
    pub task: String,
    /// Drain first, run once idle, one node at a time.
    pub when_idle: bool,
    /// The nodes, in order.
    pub nodes: Vec<JobNode>,
    /// When it was created (the driver's clock).
    pub created: Duration,
    started: bool,
    commands: VecDeque<JobCommand>,
}

impl Job {
    /// A job running `task` on `nodes` of `service`.
    pub fn new(
        id: u64,
        service: &str,
        task: &str,
        nodes: &[SocketAddr],
        when_idle: bool,
        now: Duration,
    ) -> Job {
        Job {
            id,
            service: service.to_owned(),
            task: task.to_owned(),
            when_idle,
            nodes: nodes
                .iter()
                .map(|&addr| JobNode {
                    addr,
                    state: JobNodeState::Pending,
                    output: String::new(),
                    drained_by_job: false,
                })
                .collect(),
            created: now,
            started: false,
            commands: VecDeque::new(),
        }
    }

    /// A job as a failover peer replicated it, for display; a node it had not
    /// finished is failed with "interrupted" once this distributor runs it
    /// ([`Job::interrupt`]).
    pub fn restore(
        id: u64,
        service: &str,
        task: &str,
        when_idle: bool,
        nodes: Vec<(SocketAddr, JobNodeState)>,
    ) -> Job {
        Job {
            id,
            service: service.to_owned(),
            task: task.to_owned(),
            when_idle,
            nodes: nodes
                .into_iter()
                .map(|(addr, state)| JobNode {
                    addr,
                    state,
                    output: String::new(),
                    drained_by_job: false,
                })
                .collect(),
            created: Duration::ZERO,
            started: true,
            commands: VecDeque::new(),
        }
    }

    /// Stops a job taken over from a failover peer: every unfinished node fails with
    /// `reason` (a node the old master drained for it stays drained: the operator sets
    /// it ready).
    pub fn interrupt(&mut self, reason: &str, now: Duration) {
        for n in &mut self.nodes {
            if !n.state.is_over() {
                n.state = JobNodeState::Failed(now, reason.to_owned());
            }
        }
    }

    /// Whether every node is done or failed.
    pub fn is_over(&self) -> bool {
        self.nodes.iter().all(|n| n.state.is_over())
    }

    /// Whether it is over with every node done.
    pub fn succeeded(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| matches!(n.state, JobNodeState::Done(_)))
    }

    /// The job's word in `task status`: running, done or failed.
    pub fn word(&self) -> &'static str {
        match (self.is_over(), self.succeeded()) {
            (false, _) => "running",
            (true, true) => "done",
            (true, false) => "failed",
        }
    }

    /// Advances with the nodes as `view` shows them (`None`: gone from the pool).
    pub fn step(&mut self, now: Duration, view: impl Fn(SocketAddr) -> Option<JobView>) {
        if !self.when_idle {
            if !self.started {
                self.started = true;
                for n in &mut self.nodes {
                    n.state = JobNodeState::Running(now);
                    self.commands.push_back(JobCommand::Run { addr: n.addr });
                }
            }
            return;
        }
        // One node at a time: the first not over.
        let Some(n) = self.nodes.iter_mut().find(|n| !n.state.is_over()) else {
            return;
        };
        let Some(v) = view(n.addr) else {
            n.state = JobNodeState::Failed(now, "the node left the pool".into());
            n.drained_by_job = false;
            return;
        };
        match n.state.clone() {
            JobNodeState::Pending | JobNodeState::Waiting(_) => {
                if v.admin != AdminState::Ready {
                    n.state = JobNodeState::Draining {
                        since: now,
                        in_force: true,
                    };
                } else if v.usable && v.usable_others == 0 {
                    n.state = JobNodeState::Waiting(
                        "it is the service's only usable node: draining it would take the service down".into(),
                    );
                    return;
                } else {
                    n.drained_by_job = true;
                    n.state = JobNodeState::Draining {
                        since: now,
                        in_force: false,
                    };
                    self.commands.push_back(JobCommand::SetState {
                        addr: n.addr,
                        state: AdminState::Drain,
                    });
                    return;
                }
                self.step_draining(now, v);
            }
            JobNodeState::Draining { .. } => self.step_draining(now, v),
            _ => {}
        }
    }

    fn step_draining(&mut self, now: Duration, v: JobView) {
        let Some(n) = self.nodes.iter_mut().find(|n| !n.state.is_over()) else {
            return;
        };
        let JobNodeState::Draining { since, in_force } = n.state else {
            return;
        };
        let drained = v.admin != AdminState::Ready;
        if !in_force {
            if drained {
                n.state = JobNodeState::Draining {
                    since,
                    in_force: true,
                };
            } else {
                return;
            }
        } else if !drained {
            n.drained_by_job = false;
            n.state = JobNodeState::Failed(
                now,
                "set ready by another command while it drained: the task was not run".into(),
            );
            return;
        }
        if v.active == 0 {
            n.state = JobNodeState::Running(now);
            self.commands.push_back(JobCommand::Run { addr: n.addr });
        }
    }

    /// The task on `addr` is over (`output`: its reported tail).
    pub fn on_result(
        &mut self,
        addr: SocketAddr,
        result: Result<(), String>,
        output: &str,
        now: Duration,
    ) {
        let Some(n) = self
            .nodes
            .iter_mut()
            .find(|n| n.addr == addr && matches!(n.state, JobNodeState::Running(_)))
        else {
            return;
        };
        n.output = output.to_owned();
        n.state = match result {
            Ok(()) => JobNodeState::Done(now),
            Err(why) => JobNodeState::Failed(now, why),
        };
        if std::mem::replace(&mut n.drained_by_job, false) {
            self.commands.push_back(JobCommand::SetState {
                addr,
                state: AdminState::Ready,
            });
        }
    }

    /// The next command to carry out.
    pub fn poll_command(&mut self) -> Option<JobCommand> {
        self.commands.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 80))
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn ready(active: u64, others: usize) -> Option<JobView> {
        Some(JobView {
            admin: AdminState::Ready,
            active,
            usable: true,
            usable_others: others,
        })
    }

    fn drained(active: u64) -> Option<JobView> {
        Some(JobView {
            admin: AdminState::Drain,
            active,
            usable: false,
            usable_others: 1,
        })
    }

    fn commands(j: &mut Job) -> Vec<JobCommand> {
        std::iter::from_fn(|| j.poll_command()).collect()
    }

    #[test]
    fn without_when_idle_every_node_runs_at_once() {
        let mut j = Job::new(1, "web", "rotate", &[a(1), a(2)], false, s(0));
        j.step(s(0), |_| ready(5, 1));
        assert_eq!(
            commands(&mut j),
            vec![
                JobCommand::Run { addr: a(1) },
                JobCommand::Run { addr: a(2) }
            ]
        );
        j.step(s(1), |_| ready(5, 1));
        assert!(commands(&mut j).is_empty());
        j.on_result(a(2), Err("exit 1".into()), "x", s(2));
        j.on_result(a(1), Ok(()), "", s(3));
        assert!(j.is_over());
        assert!(!j.succeeded());
        assert_eq!(j.word(), "failed");
        // Nothing to give back: the job drained nothing.
        assert!(commands(&mut j).is_empty());
    }

    #[test]
    fn when_idle_drains_waits_for_the_last_connection_then_gives_back() {
        let mut j = Job::new(2, "web", "rotate", &[a(1), a(2)], true, s(0));
        j.step(s(0), |_| ready(3, 1));
        assert_eq!(
            commands(&mut j),
            vec![JobCommand::SetState {
                addr: a(1),
                state: AdminState::Drain
            }]
        );
        // Still ready in the pool: the drain is not in force yet.
        j.step(s(1), |_| ready(0, 1));
        assert!(commands(&mut j).is_empty());
        // Drained but a transfer is still open: wait, however long.
        for t in 2..100 {
            j.step(s(t), |_| drained(1));
            assert!(commands(&mut j).is_empty());
        }
        assert_eq!(j.nodes[0].state.word(), "draining");
        j.step(s(100), |_| drained(0));
        assert_eq!(commands(&mut j), vec![JobCommand::Run { addr: a(1) }]);
        // The second node waits its turn.
        assert_eq!(j.nodes[1].state, JobNodeState::Pending);
        j.on_result(a(1), Ok(()), "ok\n", s(101));
        assert_eq!(
            commands(&mut j),
            vec![JobCommand::SetState {
                addr: a(1),
                state: AdminState::Ready
            }]
        );
        j.step(s(102), |_| ready(0, 1));
        assert_eq!(
            commands(&mut j),
            vec![JobCommand::SetState {
                addr: a(2),
                state: AdminState::Drain
            }]
        );
        j.step(s(103), |_| drained(0));
        assert_eq!(commands(&mut j), vec![JobCommand::Run { addr: a(2) }]);
        // A failed task still gives the node back.
        j.on_result(a(2), Err("boom".into()), "", s(104));
        assert_eq!(
            commands(&mut j),
            vec![JobCommand::SetState {
                addr: a(2),
                state: AdminState::Ready
            }]
        );
        assert!(j.is_over());
        assert_eq!(j.nodes[0].output, "ok\n");
    }

    #[test]
    fn when_idle_never_drains_the_only_usable_node_and_keeps_an_operators_drain() {
        let mut j = Job::new(3, "web", "rotate", &[a(1)], true, s(0));
        j.step(s(0), |_| ready(0, 0));
        assert!(commands(&mut j).is_empty());
        assert!(matches!(j.nodes[0].state, JobNodeState::Waiting(_)));
        // Another node came up: now it may go.
        j.step(s(1), |_| ready(0, 1));
        assert_eq!(commands(&mut j).len(), 1);
        // A node the operator drained keeps its state, and is not given back.
        let mut k = Job::new(4, "web", "rotate", &[a(2)], true, s(0));
        k.step(s(0), |_| drained(0));
        assert_eq!(commands(&mut k), vec![JobCommand::Run { addr: a(2) }]);
        k.on_result(a(2), Ok(()), "", s(1));
        assert!(commands(&mut k).is_empty());
        assert!(k.succeeded());
    }

    #[test]
    fn set_ready_by_someone_else_or_removed_fails_that_node() {
        let mut j = Job::new(5, "web", "rotate", &[a(1), a(2)], true, s(0));
        j.step(s(0), |_| ready(1, 1));
        commands(&mut j);
        j.step(s(1), |_| drained(1));
        j.step(s(2), |_| ready(1, 1));
        assert!(
            matches!(&j.nodes[0].state, JobNodeState::Failed(_, why) if why.contains("set ready by another command"))
        );
        assert!(commands(&mut j).is_empty(), "the task never ran");
        j.step(s(3), |_| None);
        assert!(
            matches!(&j.nodes[1].state, JobNodeState::Failed(_, why) if why.contains("left the pool"))
        );
        assert!(j.is_over());
    }
}
