//! The distributor's side of agent tasks, with IO: the request socket, the task
//! reports taken from the agents' heartbeats, and the task jobs (`task NAME …`).
//!
//! What it owns:
//! - [`AgentLink`]: one UDP socket per address family that sends signed task requests
//!   ([`crate::wire::task`]) to the address each node's agent sends its heartbeats from
//!   (learnt by the health checker, [`crate::plane::AgentInbox::agents`]), with this
//!   process's sender id and an increasing sequence; and the intake of task reports
//!   from the inbox, handed to whichever run has that id;
//! - [`Jobs`]: the task jobs, each a sans-IO [`Job`] fed from the pool, whose admin
//!   changes are queued like the rollout's (`set state` from `task`) and whose runs are
//!   [`AgentTask`]s.
//!
//! The agent key and the deadline are the distributor's: `--agent-key-file` and
//! `--hook-timeout`. What runs is what the node's agent declared (`--task`): a
//! distributor can only name it.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use log::{info, warn, Level};

use super::agent_task::AgentTask;
use super::board::{Request, MAX_JOBS};
use super::job::{Job, JobCommand, JobNodeState, JobView};
use crate::control::command::{Command as CtlCommand, Scoped};
use crate::notify::Alert;
use crate::plane::Plane;
use crate::pool::AdminState;
use crate::time::wall_ms;
use crate::wire::task::{Report, TaskRequest, TaskStatus};

/// Who the jobs' admin changes are from, in the log and the state file's history.
const WHO: &str = "task";

/// Unknown refusals remembered, so each is counted and logged once.
const UNKNOWN_KEEP: usize = 256;
/// Run ids this process gave out, remembered so that the reports still coming for a
/// run that is over here are not taken for someone else's.
const ISSUED_KEEP: usize = 4096;

/// The request socket and the report intake.
#[derive(Debug)]
pub struct AgentLink {
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    sender: String,
    seq: u64,
    last_id: u64,
    seen: u64,
    unknown: VecDeque<(SocketAddr, u64)>,
    issued: VecDeque<u64>,
    buf: Vec<u8>,
}

impl Default for AgentLink {
    fn default() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        let mut sender = format!("fulcrum-{}@{host}", std::process::id());
        sender.truncate(crate::wire::task::MAX_STR_LEN);
        while !sender.is_char_boundary(sender.len()) {
            sender.pop();
        }
        AgentLink {
            v4: None,
            v6: None,
            sender,
            // Increasing across restarts, as the agents' heartbeats are.
            seq: wall_ms().saturating_mul(1000),
            last_id: 0,
            seen: 0,
            unknown: VecDeque::new(),
            issued: VecDeque::new(),
            buf: Vec::new(),
        }
    }
}

impl AgentLink {
    /// A new run id: unique across restarts and, in practice, across a failover pair
    /// (the wall clock in µs, increasing).
    pub fn next_id(&mut self) -> u64 {
        self.last_id = self.last_id.max(wall_ms().saturating_mul(1000)) + 1;
        self.issued.push_back(self.last_id);
        while self.issued.len() > ISSUED_KEEP {
            self.issued.pop_front();
        }
        self.last_id
    }

    /// Sends `task`'s request now if it is due at `t`; errors are logged once per run
    /// by the caller's timeout ("no answer").
    pub fn send_due(&mut self, plane: &mut Plane, task: &mut AgentTask, t: Duration) {
        if !task.poll_send(t) {
            return;
        }
        let Some(acfg) = plane.cfg.health.agent.as_ref() else {
            return;
        };
        let Some(&to) = plane.agent_inbox.agents.get(&task.node) else {
            if task.sends() == 1 {
                warn!(target: "fulcrum::rollout", "task {} on {}: no heartbeat from its agent yet: nowhere to send the request", task.name, task.node);
            }
            return;
        };
        let now_ms = wall_ms();
        self.seq = self.seq.max(now_ms.saturating_mul(1000)) + 1;
        let req = TaskRequest {
            node_id: task.node.to_string(),
            name: task.name.clone(),
            sender: self.sender.clone(),
            id: task.id,
            sequence: self.seq,
            sent_at_ms: now_ms,
            deadline_ms: now_ms
                .saturating_add(u64::try_from(task.time_left(t).as_millis()).unwrap_or(u64::MAX)),
        };
        if let Err(e) = req.emit(acfg.key.bytes(), &mut self.buf) {
            warn!(target: "fulcrum::rollout", "task {} on {}: cannot encode the request: {e}", task.name, task.node);
            return;
        }
        if let Err(e) = self.open_socket(to) {
            warn!(target: "fulcrum::rollout", "task {}: no socket toward {to}: {e}", task.name);
            return;
        }
        let sock = if to.is_ipv4() { &self.v4 } else { &self.v6 };
        let Some(sock) = sock.as_ref() else {
            return;
        };
        match sock.send_to(&self.buf, to) {
            Ok(_) => plane.rollout.tasks.requests_sent += 1,
            Err(e) => {
                warn!(target: "fulcrum::rollout", "task {} on {}: send to {to}: {e}", task.name, task.node)
            }
        }
    }

    fn open_socket(&mut self, to: SocketAddr) -> std::io::Result<()> {
        let (slot, any) = if to.is_ipv4() {
            (&mut self.v4, "0.0.0.0:0")
        } else {
            (&mut self.v6, "[::]:0")
        };
        if slot.is_none() {
            let s = UdpSocket::bind(any)?;
            s.set_nonblocking(true)?;
            *slot = Some(s);
        }
        Ok(())
    }

    /// The task reports that arrived since the last call, by node.
    pub fn take_reports(&mut self, plane: &Plane) -> Vec<(SocketAddr, Report)> {
        // Every loop turn asks; only a new heartbeat has anything.
        if plane.agent_inbox.last_seq <= self.seen {
            return Vec::new();
        }
        let fresh = plane
            .agent_inbox
            .reports
            .iter()
            .filter(|r| r.seq > self.seen)
            .filter_map(|r| r.task.clone().map(|t| (r.addr, t)))
            .collect();
        self.seen = plane.agent_inbox.last_seq;
        fresh
    }

    /// A report no run in progress has: ignored if it is for a run of ours that is
    /// over (agents repeat a report for a while); otherwise a refusal is counted and
    /// logged once (a request someone else sent, maybe forged).
    pub fn unknown(&mut self, plane: &mut Plane, node: SocketAddr, r: &Report) {
        let TaskStatus::Refused(why) = r.status else {
            return;
        };
        if self.issued.contains(&r.id) || self.unknown.contains(&(node, r.id)) {
            return;
        }
        self.unknown.push_back((node, r.id));
        while self.unknown.len() > UNKNOWN_KEEP {
            self.unknown.pop_front();
        }
        plane.rollout.tasks.count_refusal(why);
        warn!(target: "fulcrum::rollout", "the agent of {node} refused a task request this distributor is not waiting for (id {}, task {:?}): {why}", r.id, r.name);
    }
}

/// Counts a run that just ended.
pub fn count_end(plane: &mut Plane, task: &AgentTask, last: Option<&Report>) {
    let c = &mut plane.rollout.tasks;
    match task.result() {
        Some(Ok(())) => c.done += 1,
        Some(Err(_)) => {
            c.failed += 1;
            if let Some(TaskStatus::Refused(why)) = last.map(|r| r.status) {
                c.count_refusal(why);
            }
        }
        None => {}
    }
}

/// The task jobs.
#[derive(Debug, Default)]
pub struct Jobs {
    jobs: Vec<Job>,
    runs: Vec<(u64, AgentTask)>,
    /// Something changed since the last [`Jobs::publish`].
    changed: bool,
}

impl Jobs {
    /// Whether anything is in progress (the driver keeps ticking).
    pub fn busy(&self) -> bool {
        !self.runs.is_empty() || self.jobs.iter().any(|j| !j.is_over())
    }

    /// Starts a job asked for by `req` (a [`Request::Task`]).
    pub fn start(&mut self, plane: &Plane, req: Request, t: Duration) {
        let Request::Task {
            service,
            task,
            nodes,
            when_idle,
            id,
            who,
        } = req
        else {
            return;
        };
        let Some(svc) = plane.services.get(service) else {
            return;
        };
        info!(target: "fulcrum::rollout", "{who}: task job {id}: {task} on {} nodes of service {}{}",
            nodes.len(), svc.name(), if when_idle { ", each once idle" } else { "" });
        self.jobs
            .push(Job::new(id, svc.name(), &task, &nodes, when_idle, t));
        self.changed = true;
        while self.jobs.len() > MAX_JOBS {
            match self.jobs.iter().position(Job::is_over) {
                Some(i) => {
                    self.jobs.remove(i);
                }
                None => break,
            }
        }
    }

    /// Hands a report to the run with its id; `false` if none has it.
    pub fn on_report(
        &mut self,
        plane: &mut Plane,
        node: SocketAddr,
        r: &Report,
        t: Duration,
    ) -> bool {
        let Some((_, task)) = self
            .runs
            .iter_mut()
            .find(|(_, task)| task.id == r.id && task.node == node)
        else {
            return false;
        };
        let was_over = task.result().is_some();
        task.on_report(r, t);
        if !was_over && task.result().is_some() {
            count_end(plane, task, Some(r));
        }
        true
    }

    /// One step of every job; returns whether admin changes were queued.
    pub fn step(&mut self, plane: &mut Plane, link: &mut AgentLink, t: Duration) -> bool {
        if !self.busy() {
            return false;
        }
        self.changed = true;
        let was_over: Vec<bool> = self.jobs.iter().map(Job::is_over).collect();
        // The runs first: send what is due, give up what is over time, pass results on
        // (a node given back is then set ready in the same step).
        let mut i = 0;
        while i < self.runs.len() {
            let (job_id, task) = &mut self.runs[i];
            let was_over = task.result().is_some();
            task.on_time(t);
            if !was_over && task.result().is_some() {
                count_end(plane, task, None);
            }
            link.send_due(plane, task, t);
            let Some(result) = task.result().cloned() else {
                i += 1;
                continue;
            };
            let (job_id, task) = (*job_id, self.runs.swap_remove(i).1);
            match &result {
                Ok(()) => {
                    info!(target: "fulcrum::rollout", "task job {job_id}: {} on {} done", task.name, task.node)
                }
                Err(why) => {
                    warn!(target: "fulcrum::rollout", "task job {job_id}: {} on {} failed: {}", task.name, task.node, why.lines().last().unwrap_or(""))
                }
            }
            if let Some(job) = self.jobs.iter_mut().find(|j| j.id == job_id) {
                job.on_result(task.node, result, task.output(), t);
            }
        }
        let mut queued = false;
        let timeout = plane.cfg.hooks.timeout;
        for job in &mut self.jobs {
            let Some(svc_idx) = plane.service_index(&job.service) else {
                continue;
            };
            let shared = std::sync::Arc::clone(&plane.services[svc_idx].shared);
            let pool = &shared.pool;
            if !job.is_over() {
                let nodes = pool.snapshot().0;
                job.step(t, |addr| {
                    let n = nodes.iter().find(|n| n.addr() == addr && !n.is_removed())?;
                    Some(JobView {
                        admin: n.admin(),
                        active: n.active(),
                        usable: n.eligible(),
                        usable_others: nodes
                            .iter()
                            .filter(|o| o.addr() != addr && o.eligible())
                            .count(),
                    })
                });
            }
            while let Some(cmd) = job.poll_command() {
                match cmd {
                    JobCommand::SetState { addr, state } => {
                        if state == AdminState::Ready {
                            if let Some(n) = pool.find(addr) {
                                n.clear_cut();
                            }
                        }
                        info!(target: "fulcrum::rollout", "task job {}: {addr} to {state}", job.id);
                        plane.queued_admin.push((
                            WHO,
                            Scoped::new(Some(&job.service), CtlCommand::SetState { addr, state }),
                        ));
                        queued = true;
                    }
                    JobCommand::Run { addr } => {
                        info!(target: "fulcrum::rollout", "task job {}: {} on {addr} asked", job.id, job.task);
                        let mut task = AgentTask::new(link.next_id(), addr, &job.task, t, timeout);
                        link.send_due(plane, &mut task, t);
                        self.runs.push((job.id, task));
                    }
                }
            }
        }
        for (job, was) in self.jobs.iter().zip(was_over) {
            if was || !job.is_over() {
                continue;
            }
            let failed: Vec<String> = job
                .nodes
                .iter()
                .filter(|n| !matches!(n.state, JobNodeState::Done(_)))
                .map(|n| n.addr.to_string())
                .collect();
            plane.notifier.alert(Alert {
                event: "task",
                subject: format!("service {}", job.service),
                old: "running".into(),
                new: job.word().into(),
                reason: if failed.is_empty() {
                    format!(
                        "task job {}: {} done on {} nodes",
                        job.id,
                        job.task,
                        job.nodes.len()
                    )
                } else {
                    format!(
                        "task job {}: {} failed on {}",
                        job.id,
                        job.task,
                        failed.join(", ")
                    )
                },
                level: if failed.is_empty() {
                    Level::Info
                } else {
                    Level::Error
                },
            });
        }
        queued
    }

    /// This distributor is no longer the master: its jobs stop (a task already asked
    /// of an agent runs to its end there); the new master shows them from its replica.
    pub fn stand_down(&mut self, reason: &str, t: Duration) {
        self.changed = true;
        self.runs.clear();
        for j in &mut self.jobs {
            j.interrupt(reason, t);
        }
    }

    /// Takes over `jobs` replicated by the old master: those not over are ended.
    pub fn adopt(&mut self, jobs: Vec<Job>, reason: &str, t: Duration) {
        self.changed = true;
        self.runs.clear();
        self.jobs = jobs;
        for j in &mut self.jobs {
            if !j.is_over() {
                warn!(target: "fulcrum::rollout", "task job {} taken over from the old master: stopped ({reason})", j.id);
                j.interrupt(reason, t);
            }
        }
    }

    /// Publishes the jobs on the plane's board (times count from `origin`), when they
    /// may have changed: not on every loop turn of an idle distributor.
    pub fn publish(&mut self, plane: &mut Plane, origin: Instant) {
        if !std::mem::take(&mut self.changed) {
            return;
        }
        plane.rollout.jobs.clone_from(&self.jobs);
        plane.rollout.jobs_origin = Some(origin);
    }
}
