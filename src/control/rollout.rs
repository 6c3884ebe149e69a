//! The `rollout …` commands on the control interface: validation of `rollout start`
//! into a [`Plan`], the requests queued for the rollout component, and the text and
//! JSON of `rollout status`; and the maintenance windows (`set state ADDR maint at
//! TIME [for DUR]`, `cancel maint ADDR`), kept on the same board.
//!
//! What it owns: turning a [`RolloutCommand`] into a [`Reply`] now. It starts nothing
//! itself: a valid start becomes a [`Request`] on the plane's board, which
//! [`crate::rollout::driver`] takes on its tick in the same loop turn. A hook is found
//! by name among the declared ones (`--hook`); nothing else can be named.

use std::time::{Duration, Instant};

use log::info;

use crate::control::command::{At, Command, RolloutCommand, Scoped, StartSpec};
use crate::control::render::JsonObject;
use crate::control::reply::Reply;
use crate::duration::format_duration;
use crate::plane::Plane;
use crate::pool::AdminState;
use crate::rollout::board::{overall_word, Report, Request};
use crate::rollout::takeover::refuse_on_backup;
use crate::rollout::window::{Phase, Window};
use crate::rollout::{Action, NodeState, Overall, Plan};

/// `healthy-timeout` when not given.
pub const DEFAULT_HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
/// `batch` when not given.
pub const DEFAULT_BATCH: usize = 1;
/// `min-ready` when not given.
pub const DEFAULT_MIN_READY: usize = 1;

/// Runs one `rollout …` command from `who`.
pub fn run(plane: &mut Plane, cmd: &RolloutCommand, who: &str, now: Instant) -> Reply {
    let changes = !matches!(
        cmd,
        RolloutCommand::Status { .. } | RolloutCommand::TaskStatus { .. }
    );
    if let Some(why) = changes.then(|| refuse_on_backup(plane)).flatten() {
        return Reply::error(why);
    }
    match cmd {
        RolloutCommand::Start(spec) => start(plane, spec, who),
        RolloutCommand::Status { json } => Reply::ok(status_reply(plane, now, *json)),
        RolloutCommand::Abort => {
            let interrupted = plane
                .rollout
                .report
                .as_ref()
                .is_some_and(|r| matches!(r.status.overall, Overall::Interrupted { .. }));
            if !plane.rollout.busy() && !interrupted {
                return Reply::error("no rollout in progress (see rollout status)");
            }
            plane.rollout.requests.push(Request::Abort {
                who: who.to_owned(),
            });
            Reply::ok(format!(
                "rollout {} aborting: nothing new starts; the nodes it has out stay in maint",
                plane.rollout.last_id
            ))
        }
        // Dispatched by `exec` to `control::task`.
        RolloutCommand::Task(_) | RolloutCommand::TaskStatus { .. } => {
            Reply::error("not a rollout command")
        }
        RolloutCommand::Resume => {
            let stopped = plane.rollout.report.as_ref().filter(|r| {
                matches!(
                    r.status.overall,
                    Overall::Failed { .. } | Overall::Aborted | Overall::Interrupted { .. }
                )
            });
            let Some(r) = stopped else {
                return Reply::error("no failed or aborted rollout to resume (see rollout status)");
            };
            let id = r.id;
            let interrupted = matches!(r.status.overall, Overall::Interrupted { .. });
            if plane.rollout.busy() && !interrupted {
                return Reply::error("a rollout is in progress");
            }
            plane.rollout.requests.push(Request::Resume {
                who: who.to_owned(),
            });
            Reply::ok(format!(
                "rollout {id} resuming: the stopped nodes run the hook again"
            ))
        }
    }
}

fn start(plane: &mut Plane, spec: &StartSpec, who: &str) -> Reply {
    if plane.rollout.busy() {
        return Reply::error(format!(
            "rollout {} is in progress (rollout status; rollout abort)",
            plane.rollout.last_id
        ));
    }
    match &spec.action {
        Action::Hook(hook) if plane.cfg.hooks.get(hook).is_none() => {
            return Reply::error(format!(
                "hook {hook:?} is not declared (declared: {})",
                plane.cfg.hooks.names()
            ));
        }
        Action::Task(_) => {
            if let Err(e) = channel(plane) {
                return Reply::error(e);
            }
        }
        Action::Hook(_) => {}
    }
    if plane.rollout.idle_job_busy() {
        return Reply::error("a when-idle task job is in progress (task status)");
    }
    let service = match one_service(plane, spec.service.as_deref()) {
        Ok(i) => i,
        Err(e) => return Reply::error(e),
    };
    let svc = &plane.services[service];
    let nodes = svc
        .shared
        .pool
        .snapshot()
        .0
        .iter()
        .map(|n| n.addr())
        .collect();
    let plan = match Plan::new(
        nodes,
        spec.batch.unwrap_or(DEFAULT_BATCH),
        spec.min_ready.unwrap_or(DEFAULT_MIN_READY),
        spec.drain_timeout.unwrap_or(svc.cfg.remove_deadline),
        spec.healthy_timeout.unwrap_or(DEFAULT_HEALTHY_TIMEOUT),
        spec.action.clone(),
    ) {
        Ok(p) => p,
        Err(e) => return Reply::error(e),
    };
    let id = plane.rollout.last_id.saturating_add(1);
    plane.rollout.last_id = id;
    let mut reply = format!(
        "rollout {id} started: {} on service {}, {} nodes, batch {}, min-ready {}",
        spec.action,
        svc.name(),
        plan.nodes().len(),
        plan.batch(),
        plan.min_ready()
    );
    let n = plan.nodes().len();
    if plan.batch().min(n) + plan.min_ready() > n {
        reply.push_str(&format!(
            "; it waits until the service has {} usable nodes (add a node, or rollout abort)",
            plan.batch().min(n) + plan.min_ready()
        ));
    }
    plane.rollout.requests.push(Request::Start {
        service,
        plan,
        id,
        who: who.to_owned(),
    });
    Reply::ok(reply)
}

/// Why agent tasks cannot be sent, if they cannot.
pub fn channel(plane: &Plane) -> Result<(), String> {
    match plane.cfg.health.agent {
        Some(_) => Ok(()),
        None => Err(
            "agent tasks need the agents' channel: start fulcrum serve with --agent-listen and --agent-key-file"
                .into(),
        ),
    }
}

/// The service `name` names, or the only running one when `None`.
pub fn one_service(plane: &Plane, name: Option<&str>) -> Result<usize, String> {
    match name {
        Some(name) => plane
            .service_index(name)
            .ok_or_else(|| format!("no such service {name:?} (see show services)")),
        None => {
            let live: Vec<usize> = plane.live().map(|(i, _)| i).collect();
            match live[..] {
                [one] => Ok(one),
                _ => {
                    let names: Vec<&str> = plane.live().map(|(_, s)| s.name()).collect();
                    Err(format!(
                        "several services ({}): name one with service NAME",
                        names.join(", ")
                    ))
                }
            }
        }
    }
}

/// `set state ADDR maint at TIME [for DUR]` and `cancel maint ADDR` on service `svc`.
/// The window's steps are taken by the rollout component; a cancelled window that
/// already took the node out puts it back (ready) here.
pub fn window(plane: &mut Plane, svc: usize, cmd: &Command, who: &str) -> Reply {
    if let Some(why) = refuse_on_backup(plane) {
        return Reply::error(why);
    }
    let service = &plane.services[svc];
    let name = service.name().to_owned();
    let now = crate::time::wall_ms();
    match cmd {
        Command::ScheduleMaint { addr, at, length } => {
            if service.shared.pool.find(*addr).is_none() {
                return Reply::error(format!("no such node {addr}"));
            }
            if plane
                .rollout
                .windows
                .iter()
                .any(|w| w.service == svc && w.addr == *addr)
            {
                return Reply::error(format!(
                    "node {addr} has a maintenance window already (cancel maint {addr} first)"
                ));
            }
            let opens_ms = at.resolve(now);
            if matches!(at, At::Utc(_)) && opens_ms < now {
                return Reply::error(format!("{at} is in the past"));
            }
            let lead = service.cfg.remove_deadline;
            let w = Window {
                service: svc,
                addr: *addr,
                opens_ms,
                length: *length,
                lead,
                phase: Phase::Scheduled,
            };
            let msg = format!(
                "node {addr}: {} (opens {}; drained from {} before)",
                w.describe(now),
                crate::rollout::window::format_utc(opens_ms / 1000),
                format_duration(lead)
            );
            info!(target: "fulcrum::control", "{who}: service {name} {cmd} -> {msg}");
            plane.rollout.windows.push(w);
            Reply::ok(msg)
        }
        Command::CancelMaint { addr } => {
            let Some(i) = plane
                .rollout
                .windows
                .iter()
                .position(|w| w.service == svc && w.addr == *addr)
            else {
                return Reply::error(format!("node {addr} has no maintenance window"));
            };
            let w = plane.rollout.windows.remove(i);
            let msg = match w.cancel() {
                Some(_) => {
                    if let Some(n) = service.shared.pool.find(*addr) {
                        n.clear_cut();
                    }
                    plane.queued_admin.push((
                        "maint window",
                        Scoped::new(
                            Some(&name),
                            Command::SetState {
                                addr: *addr,
                                state: AdminState::Ready,
                            },
                        ),
                    ));
                    format!("node {addr}: maintenance window cancelled; ready again")
                }
                None => format!("node {addr}: maintenance window cancelled"),
            };
            info!(target: "fulcrum::control", "{who}: service {name} {cmd} -> {msg}");
            Reply::ok(msg)
        }
        _ => Reply::error("not a maintenance window command"),
    }
}

/// `rollout status [--json]` (also `GET /api/v1/rollout`): the last rollout, or that
/// none has run (`{"rollout":null}`).
pub fn status_reply(plane: &Plane, now: Instant, json: bool) -> String {
    match &plane.rollout.report {
        Some(r) if json => status_json(r, now),
        Some(r) => status_text(r, now),
        None if json => "{\"rollout\":null}".to_owned(),
        None => "no rollout has run".to_owned(),
    }
}

/// Seconds with one decimal: `12.3s`.
fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn summary(r: &Report) -> String {
    format!(
        "rollout {}: {} (service {}, {}, batch {}, min-ready {})",
        r.id,
        overall_word(&r.status.overall),
        r.service,
        r.plan.action(),
        r.plan.batch(),
        r.plan.min_ready()
    )
}

/// Why the rollout stands still, if it does.
fn why(o: &Overall) -> Option<String> {
    match o {
        Overall::Waiting {
            usable,
            min_ready,
            batch,
        } => Some(format!(
            "waiting: {usable} usable nodes; taking out {batch} would leave fewer than min-ready {min_ready}"
        )),
        Overall::Failed { node, reason } => Some(format!("failed at {node}: {reason}")),
        Overall::Aborted => Some("aborted by operator (rollout resume re-runs the stopped nodes)".into()),
        Overall::Interrupted { reason } => Some(format!(
            "interrupted: {reason} (rollout resume re-runs the stopped nodes; rollout abort ends it)"
        )),
        _ => None,
    }
}

/// `rollout status`: a summary line, why it waits or stopped, one line per node, and
/// the output of the nodes whose hook failed.
pub fn status_text(r: &Report, now: Instant) -> String {
    let mut out = summary(r);
    if let Some(w) = why(&r.status.overall) {
        out.push('\n');
        out.push_str(&w);
    }
    out.push_str(&format!(
        "\n{:<24} {:<16} {:<10} DETAIL",
        "NODE", "STATE", "SINCE"
    ));
    for n in &r.status.nodes {
        let since = n
            .state
            .since()
            .map_or(String::new(), |at| secs(r.ago(at, now)));
        let detail = n.state.reason().unwrap_or("");
        out.push_str(&format!(
            "\n{:<24} {:<16} {:<10} {detail}",
            n.addr.to_string(),
            n.state.word(),
            since
        ));
    }
    for n in &r.status.nodes {
        if !matches!(n.state, NodeState::Failed { .. }) {
            continue;
        }
        let Some(o) = r.outputs.get(&n.addr).filter(|o| !o.trim().is_empty()) else {
            continue;
        };
        out.push_str(&format!("\noutput of {} (last 4 KiB):", n.addr));
        for l in o.lines() {
            out.push_str("\n  | ");
            out.push_str(l);
        }
    }
    out
}

/// `rollout status --json`.
pub fn status_json(r: &Report, now: Instant) -> String {
    let mut out = String::new();
    let mut o = JsonObject::open(&mut out);
    o.num("id", r.id);
    o.str("service", &r.service);
    o.str(
        "action",
        match r.plan.action() {
            Action::Hook(_) => "hook",
            Action::Task(_) => "task",
        },
    );
    o.str("hook", r.plan.action().name());
    o.str("state", overall_word(&r.status.overall));
    o.opt_str("reason", why(&r.status.overall).as_deref());
    o.num("batch", r.plan.batch() as u64);
    o.num("min_ready", r.plan.min_ready() as u64);
    o.objects("nodes", &r.status.nodes, |n, node| {
        n.str("addr", &node.addr.to_string());
        n.str("state", node.state.word());
        n.opt_num(
            "since_ms",
            node.state
                .since()
                .map(|at| r.ago(at, now).as_millis() as u64),
        );
        n.opt_str("reason", node.state.reason());
        n.opt_str("output", r.outputs.get(&node.addr).map(String::as_str));
    });
    o.close();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{NodeStatus, Status};
    use std::collections::HashMap;

    fn report() -> (Report, Instant) {
        let a = "127.0.0.1:8001".parse().unwrap();
        let b = "127.0.0.1:8002".parse().unwrap();
        let plan = Plan::new(
            vec![a, b],
            1,
            1,
            Duration::from_secs(5),
            Duration::from_secs(5),
            Action::Hook("restart".into()),
        )
        .unwrap();
        let origin = Instant::now();
        let mut outputs = HashMap::new();
        outputs.insert(b, "checking\n\"disk\" full\n".to_owned());
        let r = Report {
            id: 4,
            service: "web".into(),
            plan,
            status: Status {
                overall: Overall::Failed {
                    node: b,
                    reason: "hook restart failed: \"disk\" full".into(),
                },
                nodes: vec![
                    NodeStatus {
                        addr: a,
                        state: NodeState::Done {
                            at: Duration::from_secs(1),
                        },
                        output_tail: None,
                    },
                    NodeStatus {
                        addr: b,
                        state: NodeState::Failed {
                            at: Duration::from_secs(2),
                            reason: "hook restart failed: \"disk\" full".into(),
                        },
                        output_tail: None,
                    },
                ],
            },
            origin,
            outputs,
        };
        (r, origin + Duration::from_millis(3500))
    }

    /// A plane with three nodes and the hook `deploy` declared.
    fn plane() -> Plane {
        Plane::for_tests(&[
            "--listen",
            "127.0.0.1:1",
            "--backend",
            "127.0.0.1:9001",
            "--backend",
            "127.0.0.1:9002",
            "--backend",
            "127.0.0.1:9003",
            "--hook",
            "deploy=true",
        ])
    }

    fn line(p: &mut Plane, l: &str) -> Reply {
        match crate::control::command::parse(l) {
            Ok(Command::Rollout(r)) => run(p, &r, "test", Instant::now()),
            other => panic!("{l}: {other:?}"),
        }
    }

    #[test]
    fn a_plan_that_must_wait_says_so_at_the_start() {
        let mut p = plane();
        let r = line(&mut p, "rollout start hook deploy batch 2 min-ready 2");
        assert!(r.ok, "{}", r.body);
        assert!(
            r.body.ends_with("min-ready 2; it waits until the service has 4 usable nodes (add a node, or rollout abort)"),
            "{}",
            r.body
        );
    }

    #[test]
    fn start_validates_then_queues_one_rollout() {
        let mut p = plane();
        let r = line(&mut p, "rollout start hook rm");
        assert_eq!(
            r.body,
            "error: hook \"rm\" is not declared (declared: deploy)"
        );
        let r = line(&mut p, "rollout start hook deploy service api");
        assert_eq!(r.body, "error: no such service \"api\" (see show services)");
        assert!(line(&mut p, "rollout abort")
            .body
            .starts_with("error: no rollout"));
        assert!(line(&mut p, "rollout resume")
            .body
            .starts_with("error: no failed"));
        assert!(p.rollout.requests.is_empty());

        let r = line(&mut p, "rollout start hook deploy drain-timeout 5s");
        assert_eq!(
            r.body,
            "rollout 1 started: hook deploy on service default, 3 nodes, batch 1, min-ready 1"
        );
        match &p.rollout.requests[..] {
            [Request::Start {
                service: 0,
                plan,
                id: 1,
                ..
            }] => {
                assert_eq!(plan.nodes().len(), 3);
                assert_eq!(plan.drain_timeout(), Duration::from_secs(5));
                assert_eq!(plan.healthy_timeout(), DEFAULT_HEALTHY_TIMEOUT);
            }
            other => panic!("{other:?}"),
        }
        let r = line(&mut p, "rollout start hook deploy");
        assert_eq!(
            r.body,
            "error: rollout 1 is in progress (rollout status; rollout abort)"
        );
        assert!(line(&mut p, "rollout abort").ok);
        assert_eq!(p.rollout.requests.len(), 2);
    }

    #[test]
    fn text_names_the_failure_and_quotes_the_output() {
        let (r, now) = report();
        let t = status_text(&r, now);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "rollout 4: failed (service web, hook restart, batch 1, min-ready 1)"
        );
        assert_eq!(
            lines[1],
            "failed at 127.0.0.1:8002: hook restart failed: \"disk\" full"
        );
        assert!(
            lines[3].starts_with("127.0.0.1:8001           done             2.5s"),
            "{t}"
        );
        assert!(
            lines[4].contains("failed           1.5s       hook restart failed"),
            "{t}"
        );
        assert_eq!(lines[5], "output of 127.0.0.1:8002 (last 4 KiB):");
        assert_eq!(lines[7], "  | \"disk\" full");
    }

    #[test]
    fn json_is_escaped_and_complete() {
        let (r, now) = report();
        let j = status_json(&r, now);
        assert!(
            j.starts_with(
                "{\"id\":4,\"service\":\"web\",\"action\":\"hook\",\"hook\":\"restart\",\"state\":\"failed\","
            ),
            "{j}"
        );
        assert!(j.contains("{\"addr\":\"127.0.0.1:8001\",\"state\":\"done\",\"since_ms\":2500,\"reason\":null,\"output\":null}"), "{j}");
        assert!(
            j.contains("\"output\":\"checking\\n\\\"disk\\\" full\\n\"}"),
            "{j}"
        );
        assert!(j.ends_with("]}"));
    }
}
