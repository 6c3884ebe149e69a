//! What the control interface and the rollout driver exchange through the plane.
//!
//! What it owns: the operator's [`Request`]s (queued by `control::exec` after it has
//! validated them, taken by [`crate::rollout::driver`] on its next tick) and the
//! [`Report`] the driver publishes after every tick (read by `rollout status`). Plain
//! data: the two sides never call each other.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::job::Job;
use super::machine::{Overall, Status};
use super::plan::Plan;
use super::replica::{one_line, JobCopy, JobNodeCopy, Replica, RolloutCopy, WindowCopy};
use super::window::Window;
use crate::wire::task::Refusal;

/// An operator's request.
#[derive(Debug, Clone)]
pub enum Request {
    /// Start `plan` on the service at this index of the plane.
    Start {
        /// The service (index in `plane.services`).
        service: usize,
        /// The validated plan.
        plan: Plan,
        /// The id the reply announced.
        id: u64,
        /// Who asked (for the log).
        who: String,
    },
    /// `rollout abort`.
    Abort {
        /// Who asked.
        who: String,
    },
    /// `rollout resume`.
    Resume {
        /// Who asked.
        who: String,
    },
    /// `task NAME …`: a task job.
    Task {
        /// The service (index in `plane.services`).
        service: usize,
        /// The declared task's name (the agent decides whether it is declared).
        task: String,
        /// The nodes, in order.
        nodes: Vec<SocketAddr>,
        /// Drain first, run once idle, one node at a time.
        when_idle: bool,
        /// The id the reply announced.
        id: u64,
        /// Who asked.
        who: String,
    },
}

/// The last rollout as the driver last saw it.
#[derive(Debug, Clone)]
pub struct Report {
    /// Its id (`FULCRUM_ROLLOUT`).
    pub id: u64,
    /// The service's name.
    pub service: String,
    /// The plan.
    pub plan: Plan,
    /// The planner's status.
    pub status: Status,
    /// The instant the status's times count from.
    pub origin: Instant,
    /// The output of each node's last hook run (the tail), kept for success too.
    pub outputs: HashMap<SocketAddr, String>,
}

impl Report {
    /// Whether the rollout can still do something without `resume`.
    pub fn is_active(&self) -> bool {
        matches!(
            self.status.overall,
            Overall::NotStarted
                | Overall::Running
                | Overall::Waiting { .. }
                | Overall::Interrupted { .. }
        )
    }

    /// How long ago `at` (a time of the status) was, at `now`.
    pub fn ago(&self, at: Duration, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin)
            .saturating_sub(at)
    }
}

/// The board on the plane.
#[derive(Debug, Default)]
pub struct Board {
    /// Requests not yet taken by the driver, in arrival order.
    pub requests: Vec<Request>,
    /// The current or last rollout.
    pub report: Option<Report>,
    /// The id of the last rollout started (the next one gets the one after).
    pub last_id: u64,
    /// Scheduled maintenance windows, at most one per node (driven by the same
    /// component).
    pub windows: Vec<super::window::Window>,
    /// The task jobs as the driver last saw them (the last [`MAX_JOBS`]).
    pub jobs: Vec<super::job::Job>,
    /// The instant the jobs' times count from.
    pub jobs_origin: Option<Instant>,
    /// The id of the last task job (the next one gets the one after).
    pub last_job_id: u64,
    /// Agent-task counters, for `/metrics`.
    pub tasks: TaskCounters,
    /// The failover master's maintenance state, as last replicated to this backup.
    pub replica: Option<super::replica::Replica>,
    /// Bumped on every replica received.
    pub replica_seq: u64,
}

/// Task jobs kept for `task status`.
pub const MAX_JOBS: usize = 16;

/// What the agent tasks came to, counted since start.
#[derive(Debug, Default, Clone)]
pub struct TaskCounters {
    /// Request datagrams sent (first sends and resends).
    pub requests_sent: u64,
    /// Runs that exited 0.
    pub done: u64,
    /// Runs that failed, timed out or got no answer.
    pub failed: u64,
    /// Refusals reported by agents, per reason (in [`Refusal::ALL`] order), including
    /// refusals of requests this distributor did not send.
    pub refused: [u64; Refusal::ALL.len()],
}

impl TaskCounters {
    /// Counts one refusal.
    pub fn count_refusal(&mut self, why: Refusal) {
        if let Some(n) = Refusal::ALL
            .iter()
            .position(|r| *r == why)
            .and_then(|i| self.refused.get_mut(i))
        {
            *n += 1;
        }
    }
}

impl Board {
    /// The replica of this board, what a failover master sends its backup
    /// ([`super::replica`]): `report_age(at)` and `job_age(at)` turn the board's times
    /// (durations since their origins) into ages at the time of sending.
    pub fn replica(
        &self,
        report_age: impl Fn(Duration) -> u64,
        job_age: impl Fn(Duration) -> u64,
        service_name: impl Fn(usize) -> Option<String>,
    ) -> Replica {
        let rollout = self.report.as_ref().map(|rep| RolloutCopy {
            id: rep.id,
            service: rep.service.clone(),
            plan: rep.plan.clone(),
            overall: rep.status.overall.clone(),
            nodes: rep
                .status
                .nodes
                .iter()
                .map(|n| (n.state.clone(), n.state.since().map_or(0, &report_age)))
                .collect(),
        });
        let jobs = self
            .jobs
            .iter()
            .map(|j: &Job| JobCopy {
                id: j.id,
                service: j.service.clone(),
                task: j.task.clone(),
                when_idle: j.when_idle,
                nodes: j
                    .nodes
                    .iter()
                    .map(|n| JobNodeCopy {
                        addr: n.addr,
                        state: n.state.word().to_owned(),
                        age_ms: n.state.since().map_or(0, &job_age),
                        reason: n.state.reason().map(one_line),
                    })
                    .collect(),
            })
            .collect();
        let windows = self
            .windows
            .iter()
            .filter_map(|w| {
                Some(WindowCopy {
                    service: service_name(w.service)?,
                    window: Window {
                        service: 0,
                        ..w.clone()
                    },
                })
            })
            .collect();
        Replica {
            rollout,
            jobs,
            windows,
            last_ids: (self.last_id, self.last_job_id),
        }
    }

    /// Whether a `when-idle` task job is running or queued (it and a rollout both move
    /// nodes out of service; one at a time).
    pub fn idle_job_busy(&self) -> bool {
        self.requests.iter().any(|r| {
            matches!(
                r,
                Request::Task {
                    when_idle: true,
                    ..
                }
            )
        }) || self.jobs.iter().any(|j| j.when_idle && !j.is_over())
    }

    /// Whether a rollout runs or waits, or a start is queued.
    pub fn busy(&self) -> bool {
        self.requests
            .iter()
            .any(|r| matches!(r, Request::Start { .. }))
            || self.report.as_ref().is_some_and(Report::is_active)
    }
}

/// One word per overall state: `running`, `waiting`, `done`, `failed`, `aborted`,
/// `interrupted`.
pub fn overall_word(o: &Overall) -> &'static str {
    match o {
        Overall::NotStarted => "starting",
        Overall::Running => "running",
        Overall::Waiting { .. } => "waiting",
        Overall::Done => "done",
        Overall::Failed { .. } => "failed",
        Overall::Aborted => "aborted",
        Overall::Interrupted { .. } => "interrupted",
    }
}
