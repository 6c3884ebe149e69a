//! The `task …` commands on the control interface: validation of `task NAME …` into a
//! request for the rollout component, and the text and JSON of `task status`.
//!
//! What it owns: turning a [`TaskSpec`] into a [`Reply`] now. It runs nothing: a valid
//! job becomes a [`Request::Task`] on the plane's board, which
//! [`crate::rollout::driver`] takes on its tick. The task is named, never given: the
//! node's agent runs it only if it declared it.

use std::time::{Duration, Instant};

use crate::control::command::TaskSpec;
use crate::control::render::JsonObject;
use crate::control::reply::Reply;
use crate::control::rollout::{channel, one_service};
use crate::plane::Plane;
use crate::rollout::board::{Request, TaskCounters};
use crate::rollout::job::Job;
use crate::rollout::takeover::refuse_on_backup;
use crate::wire::task::Refusal;

/// `task NAME [service S] [when-idle] [all | ADDR ...]` from `who`.
pub fn start(plane: &mut Plane, spec: &TaskSpec, who: &str) -> Reply {
    if let Some(why) = refuse_on_backup(plane) {
        return Reply::error(why);
    }
    if let Err(e) = channel(plane) {
        return Reply::error(e);
    }
    let service = match one_service(plane, spec.service.as_deref()) {
        Ok(i) => i,
        Err(e) => return Reply::error(e),
    };
    if spec.when_idle && (plane.rollout.busy() || plane.rollout.idle_job_busy()) {
        return Reply::error(
            "a rollout or another when-idle task job is in progress (rollout status; task status)",
        );
    }
    let svc = &plane.services[service];
    let pool: Vec<_> = svc
        .shared
        .pool
        .snapshot()
        .0
        .iter()
        .filter(|n| !n.is_removed())
        .map(|n| n.addr())
        .collect();
    let nodes = if spec.nodes.is_empty() {
        pool
    } else {
        if let Some(a) = spec.nodes.iter().find(|a| !pool.contains(a)) {
            return Reply::error(format!("no such node {a} in service {}", svc.name()));
        }
        spec.nodes.clone()
    };
    if nodes.is_empty() {
        return Reply::error(format!("service {} has no nodes", svc.name()));
    }
    let id = plane.rollout.last_job_id.saturating_add(1);
    plane.rollout.last_job_id = id;
    let reply = format!(
        "task job {id} started: {} on service {}, {} nodes{}",
        spec.task,
        svc.name(),
        nodes.len(),
        if spec.when_idle {
            ", one at a time, each once idle"
        } else {
            ""
        }
    );
    plane.rollout.requests.push(Request::Task {
        service,
        task: spec.task.clone(),
        nodes,
        when_idle: spec.when_idle,
        id,
        who: who.to_owned(),
    });
    Reply::ok(reply)
}

/// `task status [--json]`: the last task jobs, newest first.
pub fn status_reply(plane: &Plane, now: Instant, json: bool) -> String {
    let origin = plane.rollout.jobs_origin.unwrap_or(now);
    let ago = |at: Duration| now.saturating_duration_since(origin).saturating_sub(at);
    let jobs: Vec<&Job> = plane.rollout.jobs.iter().rev().collect();
    if json {
        let mut out = String::new();
        let mut o = JsonObject::open(&mut out);
        o.objects("jobs", &jobs, |j, job| {
            j.num("id", job.id);
            j.str("service", &job.service);
            j.str("task", &job.task);
            j.bool("when_idle", job.when_idle);
            j.str("state", job.word());
            j.objects("nodes", &job.nodes, |n, node| {
                n.str("addr", &node.addr.to_string());
                n.str("state", node.state.word());
                n.opt_num(
                    "since_ms",
                    node.state.since().map(|at| ago(at).as_millis() as u64),
                );
                n.opt_str("reason", node.state.reason());
                n.opt_str(
                    "output",
                    Some(node.output.as_str()).filter(|o| !o.is_empty()),
                );
            });
        });
        o.close();
        return out;
    }
    if jobs.is_empty() {
        return "no task job has run".to_owned();
    }
    let mut out = String::new();
    for job in jobs {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!(
            "task job {}: {} (task {}, service {}{})\n{:<24} {:<10} {:<10} DETAIL",
            job.id,
            job.word(),
            job.task,
            job.service,
            if job.when_idle { ", when idle" } else { "" },
            "NODE",
            "STATE",
            "SINCE"
        ));
        for n in &job.nodes {
            let since = n
                .state
                .since()
                .map_or(String::new(), |at| format!("{:.1}s", ago(at).as_secs_f64()));
            let detail = n
                .state
                .reason()
                .and_then(|r| r.lines().last())
                .unwrap_or("");
            out.push_str(&format!(
                "\n{:<24} {:<10} {:<10} {detail}",
                n.addr.to_string(),
                n.state.word(),
                since
            ));
        }
        for n in job.nodes.iter().filter(|n| !n.output.trim().is_empty()) {
            out.push_str(&format!("\noutput of {} (last KiB):", n.addr));
            for l in n.output.lines() {
                out.push_str("\n  | ");
                out.push_str(l);
            }
        }
    }
    out
}

/// The agent-task families of `/metrics` (with the agents' channel only).
pub fn prometheus(c: &TaskCounters, out: &mut String) {
    use std::fmt::Write;
    for (name, help, value) in [
        (
            "fulcrum_agent_task_requests_sent_total",
            "Task request datagrams sent to agents (first sends and resends).",
            c.requests_sent,
        ),
        (
            "fulcrum_agent_tasks_done_total",
            "Agent task runs that exited 0.",
            c.done,
        ),
        (
            "fulcrum_agent_tasks_failed_total",
            "Agent task runs that failed, were refused, timed out or got no answer.",
            c.failed,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let name = "fulcrum_agent_task_refusals_total";
    let _ = writeln!(
        out,
        "# HELP {name} Task requests the agents reported refused, by reason (also requests this distributor did not send).\n# TYPE {name} counter"
    );
    for (why, n) in Refusal::ALL.iter().zip(c.refused) {
        let _ = writeln!(out, "{name}{{reason=\"{}\"}} {n}", why.label());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::command::{parse, Command, RolloutCommand};

    fn plane(agent: bool) -> Plane {
        // One file per call: tests run in parallel, and a file being rewritten by one
        // would read empty in another.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = std::env::temp_dir().join(format!("fulcrum-task-key-{}-{n}", std::process::id()));
        std::fs::write(&key, "0123456789abcdef0123456789abcdef").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let key = key.display().to_string();
        let (a, b) = if agent {
            ("127.0.0.1:9001,agent", "127.0.0.1:9002,agent")
        } else {
            ("127.0.0.1:9001", "127.0.0.1:9002")
        };
        let mut args = vec!["--listen", "127.0.0.1:1", "--backend", a, "--backend", b];
        if agent {
            args.extend_from_slice(&["--agent-listen", "127.0.0.1:0", "--agent-key-file", &key]);
        }
        let p = Plane::for_tests(&args);
        let _ = std::fs::remove_file(&key);
        p
    }

    fn line(p: &mut Plane, l: &str) -> Reply {
        match parse(l) {
            Ok(Command::Rollout(RolloutCommand::Task(spec))) => start(p, &spec, "test"),
            Ok(Command::Rollout(r)) => crate::control::rollout::run(p, &r, "test", Instant::now()),
            other => panic!("{l}: {other:?}"),
        }
    }

    #[test]
    fn a_job_is_validated_then_queued() {
        let mut p = plane(false);
        let r = line(&mut p, "task rotate");
        assert!(!r.ok && r.body.contains("--agent-listen"), "{}", r.body);
        let mut p = plane(true);
        let r = line(&mut p, "task rotate 127.0.0.1:9009");
        assert!(
            !r.ok && r.body.contains("no such node 127.0.0.1:9009"),
            "{}",
            r.body
        );
        let r = line(&mut p, "task rotate service nope");
        assert!(!r.ok && r.body.contains("no such service"), "{}", r.body);
        let r = line(&mut p, "task rotate when-idle 127.0.0.1:9002");
        assert!(r.ok, "{}", r.body);
        assert_eq!(
            r.body,
            "task job 1 started: rotate on service default, 1 nodes, one at a time, each once idle"
        );
        assert!(matches!(
            p.rollout.requests.as_slice(),
            [Request::Task { id: 1, when_idle: true, nodes, .. }] if nodes.len() == 1
        ));
        // One when-idle job at a time, and no rollout beside it.
        let r = line(&mut p, "task rotate when-idle");
        assert!(!r.ok, "{}", r.body);
        let r = line(&mut p, "rollout start task deploy");
        assert!(!r.ok && r.body.contains("when-idle"), "{}", r.body);
        // A job that drains nothing may run beside it.
        let r = line(&mut p, "task rotate all");
        assert!(r.ok && r.body.contains("2 nodes"), "{}", r.body);
        assert_eq!(
            status_reply(&p, Instant::now(), false),
            "no task job has run"
        );
        assert_eq!(status_reply(&p, Instant::now(), true), "{\"jobs\":[]}");
        assert!(matches!(
            parse("task status"),
            Ok(Command::Rollout(RolloutCommand::TaskStatus { json: false }))
        ));
    }

    #[test]
    fn status_shows_each_node_and_the_output() {
        let mut p = plane(true);
        let a = "127.0.0.1:9001".parse().unwrap();
        let b = "127.0.0.1:9002".parse().unwrap();
        let mut job = Job::new(3, "default", "rotate", &[a, b], false, Duration::ZERO);
        job.step(Duration::ZERO, |_| None);
        job.on_result(a, Ok(()), "rotated\n", Duration::from_secs(1));
        job.on_result(
            b,
            Err("disk full\nfailed: exit status 2".into()),
            "disk full\n",
            Duration::from_secs(2),
        );
        let now = Instant::now();
        p.rollout.jobs.push(job);
        p.rollout.jobs_origin = Some(now - Duration::from_secs(5));
        let text = status_reply(&p, now, false);
        assert!(
            text.starts_with("task job 3: failed (task rotate, service default)"),
            "{text}"
        );
        assert!(
            text.contains("127.0.0.1:9001           done       4.0s"),
            "{text}"
        );
        assert!(
            text.contains("failed     3.0s       failed: exit status 2"),
            "{text}"
        );
        assert!(
            text.contains("output of 127.0.0.1:9002 (last KiB):\n  | disk full"),
            "{text}"
        );
        let json = status_reply(&p, now, true);
        assert!(json.starts_with("{\"jobs\":[{\"id\":3,\"service\":\"default\",\"task\":\"rotate\",\"when_idle\":false,\"state\":\"failed\""), "{json}");
        assert!(json.contains("\"output\":\"rotated\\n\""), "{json}");
    }

    #[test]
    fn counters_in_prometheus_text() {
        let mut c = TaskCounters {
            requests_sent: 5,
            done: 2,
            failed: 1,
            ..TaskCounters::default()
        };
        c.count_refusal(Refusal::BadMac);
        let mut out = String::new();
        prometheus(&c, &mut out);
        assert!(
            out.contains("\nfulcrum_agent_task_requests_sent_total 5\n"),
            "{out}"
        );
        assert!(
            out.contains("\nfulcrum_agent_tasks_done_total 2\n"),
            "{out}"
        );
        assert!(
            out.contains("fulcrum_agent_task_refusals_total{reason=\"bad-mac\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("fulcrum_agent_task_refusals_total{reason=\"busy\"} 0\n"),
            "{out}"
        );
    }
}
