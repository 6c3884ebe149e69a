//! The planner under a virtual clock, against a simulated pool that applies
//! its commands and checks after every one that the service never has fewer
//! than `min_ready` usable nodes.

use std::net::SocketAddr;
use std::time::Duration;

use super::machine::ABORT_REASON;
use super::*;

const DRAIN: Duration = Duration::from_secs(30);
const HEALTHY: Duration = Duration::from_secs(60);
const RISE: u32 = 3;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8], 80))
}

fn plan(n: usize, batch: usize, min_ready: usize) -> Result<Plan, PlanError> {
    Plan::new(
        (1..=n).map(addr).collect(),
        batch,
        min_ready,
        DRAIN,
        HEALTHY,
        Action::Hook("upgrade".into()),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admin {
    Ready,
    Drain,
    Maint,
}

struct SimNode {
    addr: SocketAddr,
    admin: Admin,
    up: bool,
    conns: u64,
    /// Connections that never close on their own (only a cut ends them).
    sticky: bool,
    streak: u32,
}

/// The pool, the clock and the driver around one [`Rollout`].
struct Sim {
    r: Rollout,
    now: Duration,
    pool: Vec<SimNode>,
    min_ready: usize,
    log: Vec<Command>,
    /// Actions started and not yet reported.
    running: Vec<(SocketAddr, RunId)>,
    /// Nodes whose action fails, with the output.
    fail: Vec<(SocketAddr, String)>,
    /// Nodes that never come back healthy.
    stay_down: Vec<SocketAddr>,
    /// Nodes whose action does not finish yet.
    hold: Vec<SocketAddr>,
}

impl Sim {
    fn new(n: usize, batch: usize, min_ready: usize) -> Sim {
        let r = Rollout::new(plan(n, batch, min_ready).expect("valid plan"));
        let pool = (1..=n)
            .map(|i| SimNode {
                addr: addr(i),
                admin: Admin::Ready,
                up: true,
                conns: 2,
                sticky: false,
                streak: RISE,
            })
            .collect();
        Sim {
            r,
            now: Duration::ZERO,
            pool,
            min_ready,
            log: Vec::new(),
            running: Vec::new(),
            fail: Vec::new(),
            stay_down: Vec::new(),
            hold: Vec::new(),
        }
    }

    fn node(&mut self, a: SocketAddr) -> &mut SimNode {
        self.pool
            .iter_mut()
            .find(|n| n.addr == a)
            .expect("node in pool")
    }

    fn usable(&self) -> usize {
        self.pool
            .iter()
            .filter(|n| n.admin == Admin::Ready && n.up)
            .count()
    }

    /// Applies every queued command to the pool.
    fn pump(&mut self) {
        while let Some(c) = self.r.poll_command() {
            match &c {
                Command::SetState { addr, target } => {
                    self.node(*addr).admin = match target {
                        Target::Drain => Admin::Drain,
                        Target::Ready => Admin::Ready,
                        Target::Maint { .. } => Admin::Maint,
                    }
                }
                Command::Cut { addr } => self.node(*addr).conns = 0,
                Command::RunAction { addr, id } => {
                    self.running.push((*addr, *id));
                    // The node restarts: its checks start again from zero.
                    let down = self.stay_down.contains(addr);
                    let n = self.node(*addr);
                    n.streak = 0;
                    n.up = !down;
                }
            }
            self.log.push(c);
            assert!(
                self.usable() >= self.min_ready,
                "only {} usable after {:?}",
                self.usable(),
                self.log.last()
            );
        }
    }

    fn report_all(&mut self) {
        for i in 0..self.pool.len() {
            let n = &self.pool[i];
            let view = NodeView {
                usable: n.admin == Admin::Ready && n.up,
                active_conns: n.conns,
                healthy_streak: n.streak,
                rise: RISE,
            };
            let a = n.addr;
            self.r.on_node(a, view, self.now);
            self.pump();
        }
    }

    fn finish_actions(&mut self) {
        for (a, id) in std::mem::take(&mut self.running) {
            if self.hold.contains(&a) {
                self.running.push((a, id));
                continue;
            }
            let result = match self.fail.iter().find(|(f, _)| *f == a) {
                Some((_, out)) => Err(out.clone()),
                None => Ok(()),
            };
            self.r.on_action_done(a, id, result, self.now);
            self.pump();
        }
    }

    /// One second of virtual time: connections close (unless sticky),
    /// health checks run, the driver reports, actions finish, timers fire.
    fn step(&mut self) {
        self.now += Duration::from_secs(1);
        for n in &mut self.pool {
            if n.admin != Admin::Ready && !n.sticky {
                n.conns = 0;
            }
            if n.up {
                n.streak = n.streak.saturating_add(1);
            }
        }
        self.report_all();
        self.finish_actions();
        if let Some(t) = self.r.poll_timeout() {
            if t <= self.now {
                self.r.on_timeout(self.now);
                self.pump();
            }
        }
    }

    fn start(&mut self) {
        self.report_all();
        self.r.start(self.now);
        self.pump();
    }

    /// Steps until the rollout stops running (bounded).
    fn run(&mut self) {
        for _ in 0..1000 {
            if !matches!(
                self.r.status().overall,
                Overall::Running | Overall::Waiting { .. }
            ) {
                return;
            }
            self.step();
        }
        panic!("rollout did not settle: {:?}", self.r.status());
    }

    fn state(&self, i: usize) -> NodeState {
        self.r.status().nodes[i - 1].state.clone()
    }

    fn touched(&self, a: SocketAddr) -> bool {
        self.log.iter().any(|c| match c {
            Command::SetState { addr, .. } | Command::Cut { addr } => *addr == a,
            Command::RunAction { addr, .. } => *addr == a,
        })
    }

    fn runs(&self, a: SocketAddr) -> Vec<RunId> {
        self.log
            .iter()
            .filter_map(|c| match c {
                Command::RunAction { addr, id } if *addr == a => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn pos(&self, want: &Command) -> usize {
        self.log
            .iter()
            .position(|c| c == want)
            .unwrap_or_else(|| panic!("{want:?} not in {:?}", self.log))
    }
}

fn set(a: SocketAddr, target: Target) -> Command {
    Command::SetState { addr: a, target }
}

#[test]
fn plan_validation_errors_name_the_numbers() {
    assert_eq!(plan(3, 0, 1), Err(PlanError::ZeroBatch));
    // A minimum as high as the plan (or higher) is accepted: the rollout waits.
    assert!(plan(2, 1, 2).is_ok());
    assert!(plan(3, 2, 2).is_ok());
    assert_eq!(plan(0, 1, 0), Err(PlanError::NoNodes));
    let dup = Plan::new(
        vec![addr(1), addr(1)],
        1,
        0,
        DRAIN,
        HEALTHY,
        Action::Task("t".into()),
    );
    assert_eq!(dup, Err(PlanError::DuplicateNode(addr(1))));
    let zero = Plan::new(
        vec![addr(1)],
        1,
        0,
        Duration::ZERO,
        HEALTHY,
        Action::Task("t".into()),
    );
    assert_eq!(zero, Err(PlanError::ZeroTimeout("--drain-timeout")));
    let empty = Plan::new(
        vec![addr(1)],
        1,
        0,
        DRAIN,
        HEALTHY,
        Action::Hook(String::new()),
    );
    assert_eq!(empty, Err(PlanError::EmptyActionName));
    assert!(
        plan(5, 9, 0).is_ok(),
        "a batch above the node count is one batch"
    );
}

#[test]
fn happy_path_three_nodes_batch_one_in_order() {
    let mut s = Sim::new(3, 1, 2);
    s.start();
    s.run();
    assert_eq!(s.r.status().overall, Overall::Done);
    for i in 1..=3 {
        let a = addr(i);
        assert_eq!(s.runs(a).len(), 1, "node {i} action once");
        let drain = s.pos(&set(a, Target::Drain));
        let run = s.pos(&Command::RunAction {
            addr: a,
            id: s.runs(a)[0],
        });
        let ready = s.pos(&set(a, Target::Ready));
        assert!(drain < run && run < ready, "node {i}: {:?}", s.log);
        if i > 1 {
            assert!(s.pos(&set(addr(i - 1), Target::Ready)) < drain, "in order");
        }
        assert!(matches!(s.state(i), NodeState::Done { .. }));
    }
    assert!(!s.log.iter().any(|c| matches!(c, Command::Cut { .. })));
    assert_eq!(s.r.poll_timeout(), None);
}

#[test]
fn failure_on_second_node_stops_there_and_resume_completes() {
    let mut s = Sim::new(3, 1, 1);
    s.fail
        .push((addr(2), "step 1 ok\nerror: disk full\n".into()));
    s.start();
    s.run();
    let st = s.r.status();
    match &st.overall {
        Overall::Failed { node, reason } => {
            assert_eq!(*node, addr(2));
            assert!(
                reason.contains("hook upgrade failed: error: disk full"),
                "{reason}"
            );
        }
        o => panic!("expected Failed, got {o:?}"),
    }
    assert_eq!(s.node(addr(2)).admin, Admin::Maint);
    assert!(matches!(s.state(2), NodeState::Failed { .. }));
    assert_eq!(
        st.nodes[1].output_tail.as_deref(),
        Some("step 1 ok\nerror: disk full\n")
    );
    assert!(!s.touched(addr(3)), "third node never touched");
    assert_eq!(s.state(3), NodeState::Pending);
    assert_eq!(s.r.poll_timeout(), None);
    let done1 = s.state(1);

    // Nothing moves while failed.
    s.step();
    assert_eq!(s.r.poll_command(), None);
    assert!(!s.touched(addr(3)));

    s.fail.clear();
    s.r.resume(s.now);
    s.pump();
    s.run();
    assert_eq!(s.r.status().overall, Overall::Done);
    assert_eq!(s.state(1), done1, "done nodes stay done");
    let runs = s.runs(addr(2));
    assert_eq!(runs.len(), 2);
    assert_ne!(runs[0], runs[1], "a new run id");
    assert_eq!(s.runs(addr(1)).len(), 1);
    assert_eq!(s.runs(addr(3)).len(), 1);
    assert_eq!(s.node(addr(2)).admin, Admin::Ready);
}

#[test]
fn min_ready_waits_while_a_node_is_down() {
    let mut s = Sim::new(3, 1, 2);
    s.node(addr(3)).up = false;
    s.start();
    assert_eq!(
        s.r.status().overall,
        Overall::Waiting {
            usable: 2,
            min_ready: 2,
            batch: 1
        }
    );
    assert!(s.log.is_empty(), "no command while the pool is thin");
    assert_eq!(s.r.poll_timeout(), None);
    s.step();
    assert!(s.log.is_empty());

    s.node(addr(3)).up = true;
    s.report_all();
    assert_eq!(s.r.status().overall, Overall::Running);
    assert_eq!(s.log.first(), Some(&set(addr(1), Target::Drain)));
    s.run();
    assert_eq!(s.r.status().overall, Overall::Done);
}

#[test]
fn drain_timeout_cuts_then_runs_the_action() {
    let mut s = Sim::new(2, 1, 1);
    s.node(addr(1)).sticky = true;
    s.start();
    assert_eq!(s.r.poll_timeout(), Some(DRAIN));
    for _ in 0..29 {
        s.step();
    }
    assert!(s.runs(addr(1)).is_empty(), "still draining at 29 s");
    s.step();
    let cut = s.pos(&Command::Cut { addr: addr(1) });
    let run = s.runs(addr(1));
    assert_eq!(run.len(), 1);
    assert!(
        cut < s.pos(&Command::RunAction {
            addr: addr(1),
            id: run[0]
        })
    );
    s.run();
    assert_eq!(s.r.status().overall, Overall::Done);
}

#[test]
fn healthy_timeout_fails_the_node_into_maint() {
    let mut s = Sim::new(3, 1, 1);
    s.stay_down.push(addr(1));
    s.start();
    s.run();
    match s.r.status().overall {
        Overall::Failed { node, reason } => {
            assert_eq!(node, addr(1));
            assert!(reason.contains("not healthy within"), "{reason}");
        }
        o => panic!("expected Failed, got {o:?}"),
    }
    assert_eq!(s.node(addr(1)).admin, Admin::Maint);
    assert!(!s.touched(addr(2)) && !s.touched(addr(3)));
    // The action finished at t = 1 s; the deadline is 60 s later.
    match s.state(1) {
        NodeState::Failed { at, .. } => assert_eq!(at, Duration::from_secs(1) + HEALTHY),
        st => panic!("{st:?}"),
    }
}

#[test]
fn abort_mid_run_leaves_the_current_node_in_maint() {
    let mut s = Sim::new(3, 1, 1);
    s.start();
    s.hold.push(addr(2));
    for _ in 0..100 {
        if matches!(s.state(2), NodeState::Running { .. }) {
            break;
        }
        s.step();
    }
    assert!(matches!(s.state(2), NodeState::Running { .. }));
    let pending = std::mem::take(&mut s.running);
    s.r.abort(s.now);
    s.pump();
    assert_eq!(s.r.status().overall, Overall::Aborted);
    assert_eq!(
        s.log.last(),
        Some(&set(
            addr(2),
            Target::Maint {
                reason: ABORT_REASON.into()
            }
        ))
    );
    assert_eq!(s.r.poll_timeout(), None);
    // A late result is stale: nothing new happens.
    for &(a, id) in &pending {
        s.r.on_action_done(a, id, Ok(()), s.now);
    }
    s.step();
    assert_eq!(s.r.poll_command(), None);
    assert!(!s.touched(addr(3)));
    assert!(matches!(s.state(1), NodeState::Done { .. }));

    s.r.resume(s.now);
    s.pump();
    assert_eq!(s.log.last(), Some(&set(addr(2), Target::Drain)));
    s.step();
    assert!(matches!(s.state(2), NodeState::Running { .. }));
    // The old run's result does not count for the new run.
    for &(a, id) in &pending {
        s.r.on_action_done(a, id, Ok(()), s.now);
    }
    assert!(matches!(s.state(2), NodeState::Running { .. }));
    s.hold.clear();
    s.run();
    assert_eq!(s.r.status().overall, Overall::Done);
    let runs = s.runs(addr(2));
    assert_eq!(runs.len(), 2);
    assert_ne!(runs[0], runs[1]);
}

#[test]
fn batch_two_on_five_nodes_goes_two_two_one() {
    let mut s = Sim::new(5, 2, 3);
    s.start();
    s.run();
    assert_eq!(s.r.status().overall, Overall::Done);
    let drains: Vec<usize> = s
        .log
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            matches!(
                c,
                Command::SetState {
                    target: Target::Drain,
                    ..
                }
            )
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(drains.len(), 5);
    let d = |i| s.pos(&set(addr(i), Target::Drain));
    let r = |i| s.pos(&set(addr(i), Target::Ready));
    // Each batch's drains go out together, after the previous batch is ready.
    assert_eq!(d(2), d(1) + 1);
    assert_eq!(d(4), d(3) + 1);
    assert!(r(1).max(r(2)) < d(3));
    assert!(r(3).max(r(4)) < d(5));
    for i in 1..=5 {
        assert_eq!(s.runs(addr(i)).len(), 1);
    }
}

#[test]
fn failure_in_a_batch_stops_its_mates_in_maint() {
    let mut s = Sim::new(4, 2, 2);
    s.fail.push((addr(1), "boom".into()));
    // Node 2 is still draining when node 1's action fails.
    s.node(addr(2)).sticky = true;
    s.start();
    s.run();
    assert_eq!(
        s.r.status().overall,
        Overall::Failed {
            node: addr(1),
            reason: "hook upgrade failed: boom".into()
        }
    );
    let mate = format!("stopped: {} failed", addr(1));
    assert_eq!(
        s.log.last(),
        Some(&set(
            addr(2),
            Target::Maint {
                reason: mate.clone()
            }
        ))
    );
    assert!(matches!(s.state(2), NodeState::Failed { reason, .. } if reason == mate));
    assert!(s.runs(addr(2)).is_empty());
    assert!(!s.touched(addr(3)) && !s.touched(addr(4)));

    s.fail.clear();
    s.node(addr(2)).sticky = false;
    s.r.resume(s.now);
    s.pump();
    s.run();
    assert_eq!(s.r.status().overall, Overall::Done);
    assert_eq!(s.runs(addr(1)).len(), 2);
    assert_eq!(s.runs(addr(2)).len(), 1);
}

#[test]
fn reports_before_start_only_record_the_view() {
    let mut s = Sim::new(2, 1, 1);
    s.report_all();
    assert_eq!(s.r.status().overall, Overall::NotStarted);
    assert_eq!(s.r.poll_command(), None);
    assert_eq!(s.r.poll_timeout(), None);
    s.r.resume(s.now);
    assert_eq!(
        s.r.status().overall,
        Overall::NotStarted,
        "resume needs a stop"
    );
}

#[test]
fn a_rollout_taken_over_mid_way_is_interrupted_then_resumes_or_aborts() {
    // The old master: node 1 done, node 2 running its hook.
    let mut old = Sim::new(3, 1, 1);
    old.hold = vec![addr(2)];
    old.start();
    for _ in 0..20 {
        old.step();
        if matches!(old.state(2), NodeState::Running { .. }) {
            break;
        }
    }
    assert!(matches!(old.state(1), NodeState::Done { .. }));
    assert!(matches!(old.state(2), NodeState::Running { .. }));
    let before = old.r.status();
    let states: Vec<NodeState> = before.nodes.iter().map(|n| n.state.clone()).collect();

    // The new master restores it: node 2 to maint, the rollout interrupted.
    let mut new = Sim::new(3, 1, 1);
    new.pool = std::mem::take(&mut old.pool);
    new.now = old.now + Duration::from_secs(2);
    new.r = Rollout::restore(
        plan(3, 1, 1).unwrap(),
        before.overall.clone(),
        &states,
        "taken over",
        new.now,
    );
    new.pump();
    assert!(matches!(
        new.r.status().overall,
        Overall::Interrupted { .. }
    ));
    assert_eq!(
        new.log,
        vec![set(
            addr(2),
            Target::Maint {
                reason: "taken over".into()
            }
        )]
    );
    assert!(matches!(new.state(1), NodeState::Done { .. }));
    assert!(matches!(&new.state(2), NodeState::Failed { reason, .. } if reason == "taken over"));
    // Nothing moves until the operator acts.
    for _ in 0..5 {
        new.step();
    }
    assert_eq!(new.log.len(), 1, "{:?}", new.log);
    assert_eq!(new.r.poll_timeout(), None);

    // Resume: node 2 runs again, then node 3; node 1 is not touched again.
    let mut resumed = Sim::new(3, 1, 1);
    resumed.pool = std::mem::take(&mut new.pool);
    resumed.now = new.now;
    resumed.r = Rollout::restore(
        plan(3, 1, 1).unwrap(),
        before.overall.clone(),
        &states,
        "taken over",
        resumed.now,
    );
    resumed.pump();
    resumed.log.clear();
    resumed.r.resume(resumed.now);
    resumed.pump();
    resumed.run();
    assert_eq!(resumed.r.status().overall, Overall::Done);
    assert!(!resumed.touched(addr(1)));
    assert_eq!(resumed.runs(addr(2)).len(), 1);
    assert_eq!(resumed.runs(addr(3)).len(), 1);

    // Abort: it ends there, node 2 stays in maint.
    let mut aborted = Rollout::restore(
        plan(3, 1, 1).unwrap(),
        before.overall,
        &states,
        "taken over",
        Duration::ZERO,
    );
    aborted.abort(Duration::from_secs(1));
    assert_eq!(aborted.status().overall, Overall::Aborted);
    assert!(matches!(
        aborted.status().nodes[1].state,
        NodeState::Failed { .. }
    ));
    // A rollout that was over stays as it was.
    let done: Vec<NodeState> = (0..3)
        .map(|_| NodeState::Done { at: Duration::ZERO })
        .collect();
    let r = Rollout::restore(
        plan(3, 1, 1).unwrap(),
        Overall::Done,
        &done,
        "x",
        Duration::ZERO,
    );
    assert_eq!(r.status().overall, Overall::Done);
}

#[test]
fn min_ready_equal_to_the_nodes_waits_until_the_service_has_a_spare() {
    let mut s = Sim::new(2, 1, 2);
    s.start();
    for _ in 0..10 {
        s.step();
    }
    assert_eq!(
        s.r.status().overall,
        Overall::Waiting {
            usable: 2,
            min_ready: 2,
            batch: 1
        }
    );
    assert!(s.log.is_empty(), "nothing drained: {:?}", s.log);
    // A node outside the plan comes up (added for the occasion): it counts, so the
    // rollout proceeds, one node at a time, never below two usable in all.
    s.r.on_others(1, s.now);
    s.min_ready = 1; // the sim counts plan nodes only: 2 − 1 out ≥ 1, plus the spare
    s.pump();
    s.run();
    assert_eq!(s.r.status().overall, Overall::Done);
    assert_eq!(s.runs(addr(1)).len(), 1);
    assert_eq!(s.runs(addr(2)).len(), 1);
    // The spare goes away mid-way: the next batch waits again.
    let mut t = Sim::new(3, 1, 3);
    t.r.on_others(1, t.now);
    t.min_ready = 2;
    t.hold = vec![addr(1)];
    t.start();
    for _ in 0..5 {
        t.step();
    }
    t.r.on_others(0, t.now);
    t.hold.clear();
    for _ in 0..10 {
        t.step();
    }
    assert!(
        matches!(t.r.status().overall, Overall::Waiting { .. }),
        "{:?}",
        t.r.status()
    );
    assert_eq!(t.runs(addr(2)).len(), 0);
}
