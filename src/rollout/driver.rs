//! The rollout component: drives the sans-IO [`Rollout`] planner with the control
//! loop's clock, the pool and the health checks, and carries its commands out.
//!
//! What it owns: the one current rollout (its planner, the hooks it runs, the admin
//! state it asked for per node, the health-check streak it counts per node) and the
//! [`Report`] it publishes on the plane after every tick.
//!
//! How the planner's commands are carried out:
//! - `SetState` drain/ready/maint is queued on `plane.queued_admin` as an ordinary
//!   `set state SERVICE/ADDR …` from `rollout`. The control component runs it as a
//!   local admin change, so it is logged like an operator's, written to the state file
//!   (a restart mid-rollout keeps the node out of service rather than silently back in)
//!   and forwarded to the failover peer. Until the pool shows the state asked for, the
//!   node is not reported to the planner: a drained node must not be taken for idle
//!   before the drain is in force.
//! - `Cut` closes the node's flows as `remove node` does at its deadline (the workers'
//!   cut flag); the flag is cleared when the node is set ready again.
//! - `RunAction` starts the declared hook ([`ChildRun`]), or asks the node's agent to
//!   run the task ([`AgentTask`], through [`AgentLink`]); its exit (or its timeout,
//!   `--hook-timeout`) is reported back on a later tick. Aborting a rollout kills a
//!   hook; a task already running on an agent runs to its end or its deadline.
//!
//! Node views: `usable` is the pool's own eligibility (ready, up, agent content);
//! `healthy_streak` counts the passing checks the health checker recorded *after* the
//! hook ended (a streak from before the restart proves nothing); without health checks
//! (`--check none`) a node counts as healthy at once.
//!
//! It also takes the due steps of the scheduled maintenance windows on the plane's
//! board ([`super::window`]): drain ahead, maint (cutting what is left) at the opening,
//! ready at the end, each queued as `set state` from `maint window`.
//!
//! It also runs the task jobs (`task NAME …`, [`Jobs`]) and hands the agents' task
//! reports to the run each is for.
//!
//! What it does not do: survive a restart (the nodes' admin states do, through the
//! state file).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{info, warn, Level};
use mio::event::Event;
use mio::Registry;

use super::agent_task::AgentTask;
use super::agents::{count_end, AgentLink, Jobs};
use super::board::{overall_word, Report, Request};
use super::config::HookConfig;
use super::hook::{self, failure_text, ChildRun, Ended, HookEnv};
use super::machine::{Command, NodeView, Overall, Rollout, RunId, Status, Target};
use super::plan::{Action, Plan};
use super::takeover;
use super::window::Step;
use crate::control::command::{Command as CtlCommand, Scoped};
use crate::health::config::CheckKind;
use crate::notify::Alert;
use crate::plane::{Component, Plane};
use crate::pool::AdminState;

/// How often the driver looks at the pool, the checks and its hooks while a rollout
/// is in progress.
const TICK: Duration = Duration::from_millis(100);

/// Who the admin changes are from, in the log and the state file's history.
const WHO: &str = "rollout";

/// The rollout component.
pub struct RolloutDriver {
    hooks: HookConfig,
    origin: Instant,
    current: Option<Current>,
    /// Admin changes were queued this tick: run another turn at once, so the control
    /// component applies them without waiting for the next deadline.
    again: bool,
    /// Maintenance windows are scheduled: keep ticking.
    windows: bool,
    link: AgentLink,
    jobs: Jobs,
    /// Not the failover master at the last tick.
    standby: bool,
    /// The last replica shown.
    replica_seen: u64,
}

/// A node's action in progress: a hook here, or a task on the node's agent.
#[derive(Debug)]
enum Run {
    Hook(ChildRun),
    Task(AgentTask),
}

struct Current {
    id: u64,
    service: usize,
    name: String,
    /// The hook's or the task's name.
    hook: String,
    /// The hook's command; empty for a task (the agent knows it).
    command: String,
    task: bool,
    rollout: Rollout,
    runs: Vec<(SocketAddr, RunId, Run)>,
    expected: HashMap<SocketAddr, AdminState>,
    /// Per node: the time of the last check seen, and passing checks in a row since
    /// the hook ended.
    streaks: HashMap<SocketAddr, (Option<Instant>, u32)>,
    outputs: HashMap<SocketAddr, String>,
    last: Status,
    /// The planner's commands not carried out yet (their admin state already expected).
    pending: VecDeque<Command>,
}

impl RolloutDriver {
    /// A driver that may run these hooks.
    pub fn new(hooks: HookConfig) -> RolloutDriver {
        RolloutDriver {
            hooks,
            origin: Instant::now(),
            current: None,
            again: false,
            windows: false,
            link: AgentLink::default(),
            jobs: Jobs::default(),
            standby: false,
            replica_seen: 0,
        }
    }

    fn take_requests(&mut self, plane: &mut Plane, now: Instant) {
        let t = now.saturating_duration_since(self.origin);
        for req in std::mem::take(&mut plane.rollout.requests) {
            match req {
                Request::Start {
                    service,
                    plan,
                    id,
                    who,
                } => self.start(plane, service, plan, id, &who, t),
                Request::Abort { who } => {
                    if let Some(c) = self.current.as_mut() {
                        info!(target: "fulcrum::rollout", "{who}: rollout {} aborted", c.id);
                        c.rollout.abort(t);
                        c.kill_runs("the rollout was aborted");
                    }
                }
                Request::Resume { who } => {
                    if let Some(c) = self.current.as_mut() {
                        info!(target: "fulcrum::rollout", "{who}: rollout {} resumed", c.id);
                        c.rollout.resume(t);
                    }
                }
                job @ Request::Task { .. } => self.jobs.start(plane, job, t),
            }
        }
    }

    fn start(
        &mut self,
        plane: &mut Plane,
        service: usize,
        plan: Plan,
        id: u64,
        who: &str,
        t: Duration,
    ) {
        if self
            .current
            .as_ref()
            .is_some_and(|c| is_active(&c.rollout.status().overall))
        {
            warn!(target: "fulcrum::rollout", "{who}: rollout {id} not started: rollout {} is in progress",
                self.current.as_ref().map_or(0, |c| c.id));
            return;
        }
        let (hook, command, task) = match plan.action() {
            Action::Hook(name) => match self.hooks.get(name) {
                Some(h) => (h.name.clone(), h.command.clone(), false),
                None => {
                    warn!(target: "fulcrum::rollout", "{who}: rollout {id} not started: hook {name:?} is not declared");
                    return;
                }
            },
            Action::Task(name) if plane.cfg.health.agent.is_some() => {
                (name.clone(), String::new(), true)
            }
            Action::Task(name) => {
                warn!(target: "fulcrum::rollout", "{who}: rollout {id} not started: task {name} needs the agents' channel (--agent-listen)");
                return;
            }
        };
        let Some(svc) = plane.services.get(service) else {
            return;
        };
        let name = svc.name().to_owned();
        if let Some(mut old) = self.current.take() {
            old.kill_runs("a new rollout started");
        }
        plane.notifier.alert(Alert {
            event: "rollout",
            subject: format!("service {name}"),
            old: "idle".into(),
            new: "running".into(),
            reason: format!(
                "rollout {id} started by {who}: {} on {} nodes, batch {}, min-ready {}",
                plan.action(),
                plan.nodes().len(),
                plan.batch(),
                plan.min_ready()
            ),
            level: Level::Info,
        });
        let mut cur = Current::new(id, service, name, (hook, command, task), Rollout::new(plan));
        // Every node's view first, so the first batch can start in this tick.
        cur.feed(plane, t, true);
        cur.rollout.start(t);
        self.current = Some(cur);
    }
}

impl Current {
    fn new(
        id: u64,
        service: usize,
        name: String,
        (hook, command, task): (String, String, bool),
        rollout: Rollout,
    ) -> Current {
        let last = rollout.status();
        Current {
            id,
            service,
            name,
            hook,
            command,
            task,
            rollout,
            runs: Vec::new(),
            expected: HashMap::new(),
            streaks: HashMap::new(),
            outputs: HashMap::new(),
            last,
            pending: VecDeque::new(),
        }
    }

    /// Reports every node of the plan whose admin state is what was asked.
    fn feed(&mut self, plane: &Plane, t: Duration, feed_streaks: bool) {
        let Some(svc) = plane.services.get(self.service) else {
            return;
        };
        let checks = svc.cfg.health.kind != CheckKind::None;
        let rise = if checks {
            svc.cfg.health.thresholds.rise.max(1)
        } else {
            1
        };
        let nodes: Vec<SocketAddr> = self.rollout.plan().nodes().to_vec();
        let others = svc
            .shared
            .pool
            .snapshot()
            .0
            .iter()
            .filter(|n| !nodes.contains(&n.addr()) && n.eligible())
            .count();
        self.rollout.on_others(others, t);
        self.collect();
        for addr in nodes {
            let node = svc.shared.pool.find(addr);
            if feed_streaks {
                let entry = self.streaks.entry(addr).or_insert((None, 0));
                if let Some((ok, _, at, _)) =
                    svc.info.get(&addr).and_then(|i| i.last_check.as_ref())
                {
                    if entry.0.is_none_or(|seen| *at > seen) {
                        entry.0 = Some(*at);
                        entry.1 = if *ok { entry.1.saturating_add(1) } else { 0 };
                    }
                }
            }
            if let (Some(want), Some(n)) = (self.expected.get(&addr), node.as_ref()) {
                if n.admin() != *want {
                    continue;
                }
            }
            let view = match &node {
                Some(n) => NodeView {
                    usable: n.eligible(),
                    active_conns: n.active(),
                    healthy_streak: if checks {
                        self.streaks.get(&addr).map_or(0, |s| s.1)
                    } else {
                        rise
                    },
                    rise,
                },
                // Gone from the pool (`remove node`): never usable, never healthy.
                None => NodeView {
                    usable: false,
                    active_conns: 0,
                    healthy_streak: 0,
                    rise,
                },
            };
            self.rollout.on_node(addr, view, t);
            // A report may start the next batch: its drains are expected from now on,
            // so the nodes reported after this one in the same loop are not taken for
            // drained before the drain is in force.
            self.collect();
        }
    }

    /// Takes the planner's new commands, recording the admin state each asks for.
    fn collect(&mut self) {
        while let Some(cmd) = self.rollout.poll_command() {
            if let Command::SetState { addr, target } = &cmd {
                self.expected.insert(*addr, admin_of(target));
            }
            self.pending.push_back(cmd);
        }
    }

    fn kill_runs(&mut self, why: &str) {
        for (addr, _, run) in self.runs.drain(..) {
            match run {
                Run::Hook(mut run) => {
                    run.kill();
                    warn!(target: "fulcrum::rollout", "rollout {}: hook {} on {addr} killed: {why}", self.id, self.hook);
                    self.outputs.insert(addr, run.output());
                }
                Run::Task(task) => {
                    warn!(target: "fulcrum::rollout", "rollout {}: no longer waiting for task {} on {addr} ({why}); the agent runs it to its end or its deadline", self.id, self.hook);
                    self.outputs.insert(addr, task.output().to_owned());
                }
            }
        }
    }

    /// Hands a task report to the run with its id; `false` if none has it.
    fn on_report(
        &mut self,
        plane: &mut Plane,
        node: SocketAddr,
        r: &crate::wire::task::Report,
        t: Duration,
    ) -> bool {
        for (addr, _, run) in &mut self.runs {
            if let Run::Task(task) = run {
                if *addr == node && task.id == r.id {
                    let was_over = task.result().is_some();
                    task.on_report(r, t);
                    if !was_over && task.result().is_some() {
                        count_end(plane, task, Some(r));
                    }
                    return true;
                }
            }
        }
        false
    }

    fn poll_runs(&mut self, plane: &mut Plane, link: &mut AgentLink, now: Instant, t: Duration) {
        let mut i = 0;
        while i < self.runs.len() {
            let (addr, id, run) = &mut self.runs[i];
            let (addr, id) = (*addr, *id);
            let run = match run {
                Run::Hook(run) => run,
                Run::Task(task) => {
                    let was_over = task.result().is_some();
                    task.on_time(t);
                    if !was_over && task.result().is_some() {
                        count_end(plane, task, None);
                    }
                    link.send_due(plane, task, t);
                    self.outputs.insert(addr, task.output().to_owned());
                    let Some(result) = task.result().cloned() else {
                        i += 1;
                        continue;
                    };
                    self.runs.swap_remove(i);
                    match &result {
                        Ok(()) => {
                            info!(target: "fulcrum::rollout", "rollout {}: task {} on {addr} done", self.id, self.hook);
                            if let Some(s) = self.streaks.get_mut(&addr) {
                                s.1 = 0;
                            }
                        }
                        Err(why) => {
                            warn!(target: "fulcrum::rollout", "rollout {}: task {} on {addr} failed: {}",
                            self.id, self.hook, why.lines().last().unwrap_or(""))
                        }
                    }
                    if let Err(why) = &result {
                        self.outputs.insert(addr, why.clone());
                    }
                    self.rollout.on_action_done(addr, id, result, t);
                    continue;
                }
            };
            let Some(ended) = run.poll(now) else {
                self.outputs.insert(addr, run.output());
                i += 1;
                continue;
            };
            let output = run.output();
            let took = crate::duration::format_duration(round_ms(run.elapsed(now)));
            self.runs.swap_remove(i);
            let result = match &ended {
                Ended::Ok => {
                    info!(target: "fulcrum::rollout", "rollout {}: hook {} on {addr} done in {took}", self.id, self.hook);
                    // Only checks after the hook count toward `rise`.
                    if let Some(s) = self.streaks.get_mut(&addr) {
                        s.1 = 0;
                    }
                    Ok(())
                }
                e => {
                    let text = failure_text(&output, e);
                    warn!(target: "fulcrum::rollout", "rollout {}: hook {} on {addr} failed after {took}: {}",
                        self.id, self.hook, text.lines().last().unwrap_or(""));
                    Err(text)
                }
            };
            self.outputs.insert(addr, output);
            self.rollout.on_action_done(addr, id, result, t);
        }
    }

    /// Carries out the planner's commands; returns whether admin changes were queued.
    fn carry_out(
        &mut self,
        plane: &mut Plane,
        link: &mut AgentLink,
        now: Instant,
        t: Duration,
    ) -> bool {
        let mut queued = false;
        loop {
            self.collect();
            let Some(cmd) = self.pending.pop_front() else {
                break;
            };
            let Some(svc) = plane.services.get(self.service) else {
                return queued;
            };
            match cmd {
                Command::SetState { addr, target } => {
                    let state = admin_of(&target);
                    if state == AdminState::Ready {
                        if let Some(n) = svc.shared.pool.find(addr) {
                            n.clear_cut();
                        }
                    }
                    if let Target::Maint { reason } = &target {
                        info!(target: "fulcrum::rollout", "rollout {}: {addr} to maint: {reason}", self.id);
                    }
                    plane.queued_admin.push((
                        WHO,
                        Scoped::new(Some(&self.name), CtlCommand::SetState { addr, state }),
                    ));
                    queued = true;
                }
                // Someone else put the node back in service while it drained (`set
                // state ADDR ready`): neither cut its flows nor run the hook on a node
                // that takes traffic; the run fails, which stops the rollout there.
                Command::Cut { addr } if serving(svc, addr) => {}
                Command::RunAction { addr, id } if serving(svc, addr) => {
                    let why = format!(
                        "{addr} was set ready by another command while it drained; the hook was not run"
                    );
                    warn!(target: "fulcrum::rollout", "rollout {}: {why}", self.id);
                    self.rollout.on_action_done(addr, id, Err(why), t);
                }
                Command::Cut { addr } => {
                    if let Some(n) = svc.shared.pool.find(addr) {
                        warn!(target: "fulcrum::rollout", "rollout {}: {addr} not drained in time: cutting {} flows", self.id, n.active());
                        n.cut();
                    }
                }
                Command::RunAction { addr, id } if self.task => {
                    info!(target: "fulcrum::rollout", "rollout {}: task {} on {addr} asked", self.id, self.hook);
                    let mut task =
                        AgentTask::new(link.next_id(), addr, &self.hook, t, hook_timeout(plane));
                    link.send_due(plane, &mut task, t);
                    self.runs.push((addr, id, Run::Task(task)));
                }
                Command::RunAction { addr, id } if self.command.is_empty() => {
                    let why = format!("hook {} is not declared on this distributor", self.hook);
                    self.rollout.on_action_done(addr, id, Err(why), t);
                }
                Command::RunAction { addr, id } => {
                    let node = addr.to_string();
                    let env = HookEnv {
                        node: &node,
                        service: &self.name,
                        hook: &self.hook,
                        rollout: self.id,
                    };
                    match hook::spawn(&self.command, env, hook_timeout(plane), now) {
                        Ok(run) => {
                            info!(target: "fulcrum::rollout", "rollout {}: hook {} on {addr} started", self.id, self.hook);
                            self.runs.push((addr, id, Run::Hook(run)));
                        }
                        Err(e) => {
                            let why = format!("the hook could not start: {e}");
                            self.rollout.on_action_done(addr, id, Err(why), t);
                        }
                    }
                }
            }
        }
        queued
    }

    /// Alerts for what changed since the last tick.
    fn events(&mut self, plane: &mut Plane) {
        let now = self.rollout.status();
        for (new, old) in now.nodes.iter().zip(&self.last.nodes) {
            let (w_new, w_old) = (new.state.word(), old.state.word());
            if w_new == w_old {
                continue;
            }
            let (level, reason) = match &new.state {
                crate::rollout::NodeState::Done { .. } => (Level::Info, "healthy again".to_owned()),
                crate::rollout::NodeState::Failed { reason, .. } => (Level::Error, reason.clone()),
                _ => {
                    info!(target: "fulcrum::rollout", "rollout {}: {} {w_old} -> {w_new}", self.id, new.addr);
                    continue;
                }
            };
            plane.notifier.alert(Alert {
                event: "rollout",
                subject: new.addr.to_string(),
                old: w_old.into(),
                new: w_new.into(),
                reason: format!("rollout {}: {reason}", self.id),
                level,
            });
        }
        // The start itself was announced by `start`.
        let started = self.last.overall == Overall::NotStarted && now.overall == Overall::Running;
        if now.overall != self.last.overall && !started {
            let (level, reason) = match &now.overall {
                Overall::Done => (Level::Info, "every node done".to_owned()),
                Overall::Failed { node, reason } => (Level::Error, format!("{node}: {reason}")),
                Overall::Aborted => (Level::Warn, "aborted by operator".to_owned()),
                Overall::Interrupted { reason } => (Level::Warn, reason.clone()),
                Overall::Waiting {
                    usable,
                    min_ready,
                    batch,
                } => (
                    Level::Warn,
                    format!("{usable} usable nodes; a batch of {batch} would leave fewer than min-ready {min_ready}"),
                ),
                Overall::Running | Overall::NotStarted => (Level::Info, "continuing".to_owned()),
            };
            plane.notifier.alert(Alert {
                event: "rollout",
                subject: format!("service {}", self.name),
                old: overall_word(&self.last.overall).into(),
                new: overall_word(&now.overall).into(),
                reason: format!("rollout {}: {reason}", self.id),
                level,
            });
        }
        self.last = now;
    }

    fn report(&self) -> Report {
        Report {
            id: self.id,
            service: self.name.clone(),
            plan: self.rollout.plan().clone(),
            status: self.last.clone(),
            origin: Instant::now(),
            outputs: self.outputs.clone(),
        }
    }
}

/// Takes the maintenance windows' due steps; returns whether admin changes were queued.
fn windows(plane: &mut Plane, now_ms: u64) -> bool {
    let mut queued = false;
    let mut i = 0;
    while i < plane.rollout.windows.len() {
        let w = &mut plane.rollout.windows[i];
        let Some((step, over)) = w.poll(now_ms) else {
            i += 1;
            continue;
        };
        let (svc, addr) = (w.service, w.addr);
        if over {
            plane.rollout.windows.remove(i);
        }
        let Some(service) = plane.services.get(svc) else {
            continue;
        };
        let node = service.shared.pool.find(addr);
        let state = match step {
            Step::Drain => AdminState::Drain,
            Step::Maint => {
                if let Some(n) = node.as_ref().filter(|n| n.active() > 0) {
                    warn!(target: "fulcrum::rollout", "maint window of {addr}: {} flows still open at the opening: cut", n.active());
                    n.cut();
                }
                AdminState::Maint
            }
            Step::Ready => {
                if let Some(n) = &node {
                    n.clear_cut();
                }
                AdminState::Ready
            }
        };
        info!(target: "fulcrum::rollout", "service {} node {addr}: maint window: {state}", service.name());
        let name = service.name().to_owned();
        plane.queued_admin.push((
            "maint window",
            Scoped::new(Some(&name), CtlCommand::SetState { addr, state }),
        ));
        queued = true;
    }
    queued
}

fn admin_of(t: &Target) -> AdminState {
    match t {
        Target::Drain => AdminState::Drain,
        Target::Ready => AdminState::Ready,
        Target::Maint { .. } => AdminState::Maint,
    }
}

/// Whether `addr` is ready in the pool (so not drained, whatever the rollout asked).
fn serving(svc: &crate::plane::Service, addr: SocketAddr) -> bool {
    svc.shared
        .pool
        .find(addr)
        .is_some_and(|n| n.admin() == AdminState::Ready)
}

fn is_active(o: &Overall) -> bool {
    matches!(
        o,
        Overall::NotStarted | Overall::Running | Overall::Waiting { .. }
    )
}

fn hook_timeout(plane: &Plane) -> Duration {
    plane.cfg.hooks.timeout
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().min(u128::from(u64::MAX)) as u64)
}

impl RolloutDriver {
    /// Not the failover master: stop whatever runs here, show the master's replica.
    fn stand_by(&mut self, plane: &mut Plane, t: Duration) {
        self.again = false;
        self.windows = false;
        plane.rollout.requests.clear();
        if !self.standby {
            self.standby = true;
            self.jobs.stand_down(takeover::REASON, t);
            if let Some(c) = self.current.as_mut() {
                if !c.runs.is_empty() || is_active(&c.last.overall) {
                    warn!(target: "fulcrum::rollout", "rollout {}: stopped here: this distributor is no longer the failover master", c.id);
                    c.kill_runs("this distributor is no longer the failover master");
                    let states: Vec<_> = c.last.nodes.iter().map(|n| n.state.clone()).collect();
                    c.rollout = Rollout::restore(
                        c.rollout.plan().clone(),
                        c.last.overall.clone(),
                        &states,
                        takeover::REASON,
                        t,
                    );
                    // The admin states are the master's now: nothing is carried out.
                    while c.rollout.poll_command().is_some() {}
                    c.pending.clear();
                    c.last = c.rollout.status();
                    let mut report = c.report();
                    report.origin = self.origin;
                    plane.rollout.report = Some(report);
                }
            }
        }
        if plane.rollout.replica_seq != self.replica_seen {
            self.replica_seen = plane.rollout.replica_seq;
            if let Some(r) = plane.rollout.replica.clone() {
                self.current = None;
                takeover::show(plane, &r, t, self.origin);
            }
        }
    }

    /// Just became the failover master after standing by: take over the replica.
    fn adopt(&mut self, plane: &mut Plane, t: Duration) {
        self.jobs
            .adopt(plane.rollout.jobs.clone(), takeover::REASON, t);
        if self.current.is_some() {
            return;
        }
        let Some(rep) = plane.rollout.report.clone() else {
            return;
        };
        let Some(service) = plane.service_index(&rep.service) else {
            warn!(target: "fulcrum::rollout", "rollout {}: service {} is not configured here: not taken over", rep.id, rep.service);
            return;
        };
        let (hook, command, task) = match rep.plan.action() {
            Action::Hook(h) => (
                h.clone(),
                self.hooks
                    .get(h)
                    .map_or(String::new(), |d| d.command.clone()),
                false,
            ),
            Action::Task(n) => (n.clone(), String::new(), true),
        };
        let states: Vec<_> = rep.status.nodes.iter().map(|n| n.state.clone()).collect();
        let rollout = Rollout::restore(
            rep.plan.clone(),
            rep.status.overall.clone(),
            &states,
            takeover::REASON,
            t,
        );
        if matches!(rollout.status().overall, Overall::Interrupted { .. }) {
            warn!(target: "fulcrum::rollout", "rollout {} taken over from the old master: interrupted (rollout resume, or rollout abort)", rep.id);
            plane.notifier.alert(Alert {
                event: "rollout",
                subject: format!("service {}", rep.service),
                old: overall_word(&rep.status.overall).into(),
                new: "interrupted".into(),
                reason: format!("rollout {}: {}", rep.id, takeover::REASON),
                level: Level::Warn,
            });
        }
        let mut cur = Current::new(
            rep.id,
            service,
            rep.service.clone(),
            (hook, command, task),
            rollout,
        );
        cur.last = cur.rollout.status();
        self.current = Some(cur);
    }
}

impl Component for RolloutDriver {
    fn register(&mut self, _registry: &Registry, _base: usize) -> io::Result<()> {
        Ok(())
    }

    fn on_event(&mut self, _: &mut Plane, _: &Registry, _: usize, _: &Event) {}

    fn on_tick(&mut self, plane: &mut Plane, _registry: &Registry, now: Instant) {
        let t = now.saturating_duration_since(self.origin);
        if !takeover::is_master(plane) {
            self.stand_by(plane, t);
            return;
        }
        if std::mem::take(&mut self.standby) {
            self.adopt(plane, t);
        }
        self.again = windows(plane, crate::time::wall_ms());
        self.windows = !plane.rollout.windows.is_empty();
        self.take_requests(plane, now);
        for (node, r) in self.link.take_reports(plane) {
            let ours = self
                .current
                .as_mut()
                .is_some_and(|c| c.on_report(plane, node, &r, t))
                || self.jobs.on_report(plane, node, &r, t);
            if !ours {
                self.link.unknown(plane, node, &r);
            }
        }
        self.again |= self.jobs.step(plane, &mut self.link, t);
        self.jobs.publish(plane, self.origin);
        let Some(c) = self.current.as_mut() else {
            return;
        };
        // What start, resume or abort asked for first: a node is reported only once
        // the pool shows the state asked for, which needs the state recorded before
        // the first report (else a node not yet drained would pass for drained).
        self.again |= c.carry_out(plane, &mut self.link, now, t);
        c.poll_runs(plane, &mut self.link, now, t);
        c.feed(plane, t, true);
        if c.rollout.poll_timeout().is_some_and(|d| d <= t) {
            c.rollout.on_timeout(t);
        }
        self.again |= c.carry_out(plane, &mut self.link, now, t);
        c.events(plane);
        let mut report = c.report();
        // The status's times count from the driver's origin.
        report.origin = self.origin;
        plane.rollout.report = Some(report);
    }

    fn deadline(&self) -> Option<Instant> {
        if self.again {
            return Some(Instant::now());
        }
        if self.windows || self.jobs.busy() {
            return Some(Instant::now() + TICK);
        }
        let c = self.current.as_ref()?;
        let busy = !c.runs.is_empty() || is_active(&c.last.overall);
        busy.then(|| Instant::now() + TICK)
    }

    fn on_shutdown(&mut self, _plane: &mut Plane) {
        if let Some(c) = self.current.as_mut() {
            c.kill_runs("fulcrum is stopping");
        }
    }
}
