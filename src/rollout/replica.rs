//! The maintenance state a failover master replicates to its backup, without IO: the
//! current rollout (its plan and where each node stands), the task jobs and the
//! maintenance windows, as text lines carried by the pair's state sync (`sync maint ID
//! PART/TOTAL`, see [`crate::ha::sync`]).
//!
//! What it owns: [`encode`] (the master's board → payload parts), [`decode`] (lines →
//! [`Replica`], every line checked, never a panic), and [`Parts`] (reassembly). Times
//! cross as ages in ms at the time of sending, windows as wall-clock ms, so neither
//! side's monotonic clock leaks to the other.
//!
//! What it does not do: run anything. A backup shows the replica as its own `rollout
//! status` / `task status` and keeps the windows; the rollout component adopts it only
//! when this distributor becomes master ([`super::driver`]), and then as an
//! interrupted rollout that waits for `rollout resume` or `rollout abort`.
//!
//! # Lines (after the header line; words separated by one space; a reason is the rest
//! of its line, on one line)
//! ```text
//! rollout ID SERVICE hook|task NAME BATCH MIN_READY DRAIN_MS HEALTHY_MS STATE [REASON]
//! rnode ADDR STATE AGE_MS [REASON]
//! job ID SERVICE TASK idle|now
//! jnode ADDR STATE AGE_MS [REASON]
//! window SERVICE ADDR OPENS_MS LENGTH_MS|- LEAD_MS scheduled|draining|open
//! ids ROLLOUT_ID JOB_ID
//! ```
//! STATE of a rollout is a word of [`super::board::overall_word`], with the failed
//! node as `failed@ADDR` and a wait as `waiting@USABLE/MIN_READY/BATCH`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::job::{Job, JobNodeState};
use super::machine::{NodeState, Overall, RunId, Status};
use super::plan::{Action, Plan};
use super::window::{Phase, Window};

/// Most parts one replica may span (a bound on reassembly state).
pub const MAX_PARTS: u16 = 64;
/// Longest reason carried (its last line, cut).
const MAX_REASON: usize = 200;

/// The replicated rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutCopy {
    /// Its id.
    pub id: u64,
    /// The service's name.
    pub service: String,
    /// The plan.
    pub plan: Plan,
    /// Where it stands.
    pub overall: Overall,
    /// Each node's state, in plan order, with its age in ms (how long ago it was
    /// entered, at the time of sending; 0 while pending).
    pub nodes: Vec<(NodeState, u64)>,
}

/// One replicated job node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobNodeCopy {
    /// The node.
    pub addr: SocketAddr,
    /// Its state word.
    pub state: String,
    /// Age in ms.
    pub age_ms: u64,
    /// Why it waits or failed.
    pub reason: Option<String>,
}

/// One replicated task job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCopy {
    /// Its id.
    pub id: u64,
    /// The service's name.
    pub service: String,
    /// The task.
    pub task: String,
    /// Whether it drains first.
    pub when_idle: bool,
    /// Its nodes.
    pub nodes: Vec<JobNodeCopy>,
}

/// One replicated maintenance window (by service name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCopy {
    /// The service's name.
    pub service: String,
    /// The window, its `service` index left 0 (the receiver maps the name).
    pub window: Window,
}

/// What a master replicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replica {
    /// The current or last rollout.
    pub rollout: Option<RolloutCopy>,
    /// The task jobs.
    pub jobs: Vec<JobCopy>,
    /// The maintenance windows.
    pub windows: Vec<WindowCopy>,
    /// The last rollout id and job id given out (a new master continues after them).
    pub last_ids: (u64, u64),
}

/// The last non-empty line of `s`, without control characters, at most 200 bytes.
pub(crate) fn one_line(s: &str) -> String {
    let last = s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut out: String = last.chars().filter(|c| !c.is_control()).collect();
    if out.len() > MAX_REASON {
        let mut cut = out.len() - MAX_REASON;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = out.split_off(cut);
    }
    out
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

fn overall_text(o: &Overall) -> (String, Option<&str>) {
    match o {
        Overall::NotStarted => ("starting".into(), None),
        Overall::Running => ("running".into(), None),
        Overall::Waiting {
            usable,
            min_ready,
            batch,
        } => (format!("waiting@{usable}/{min_ready}/{batch}"), None),
        Overall::Done => ("done".into(), None),
        Overall::Failed { node, reason } => (format!("failed@{node}"), Some(reason)),
        Overall::Aborted => ("aborted".into(), None),
        Overall::Interrupted { reason } => ("interrupted".into(), Some(reason)),
    }
}

/// The lines of `r`: `status` (with node times as durations since an origin that was
/// `elapsed` ago), jobs (times since an origin `jobs_elapsed` ago), windows named by
/// `service_name`.
pub fn lines(r: &Replica) -> Vec<String> {
    let mut out = vec![format!("ids {} {}", r.last_ids.0, r.last_ids.1)];
    if let Some(c) = &r.rollout {
        let (kind, name) = match c.plan.action() {
            Action::Hook(n) => ("hook", n),
            Action::Task(n) => ("task", n),
        };
        let (state, reason) = overall_text(&c.overall);
        let mut l = format!(
            "rollout {} {} {kind} {name} {} {} {} {} {state}",
            c.id,
            c.service,
            c.plan.batch(),
            c.plan.min_ready(),
            ms(c.plan.drain_timeout()),
            ms(c.plan.healthy_timeout()),
        );
        if let Some(r) = reason {
            l.push(' ');
            l.push_str(&one_line(r));
        }
        out.push(l);
        for (addr, (state, age)) in c.plan.nodes().iter().zip(&c.nodes) {
            let mut l = format!("rnode {addr} {} {age}", state.word());
            if let Some(r) = state.reason() {
                l.push(' ');
                l.push_str(&one_line(r));
            }
            out.push(l);
        }
    }
    for j in &r.jobs {
        out.push(format!(
            "job {} {} {} {}",
            j.id,
            j.service,
            j.task,
            if j.when_idle { "idle" } else { "now" }
        ));
        for n in &j.nodes {
            let mut l = format!("jnode {} {} {}", n.addr, n.state, n.age_ms);
            if let Some(r) = &n.reason {
                l.push(' ');
                l.push_str(&one_line(r));
            }
            out.push(l);
        }
    }
    for w in &r.windows {
        let phase = match w.window.phase {
            Phase::Scheduled => "scheduled",
            Phase::Draining => "draining",
            Phase::Open => "open",
        };
        out.push(format!(
            "window {} {} {} {} {} {phase}",
            w.service,
            w.window.addr,
            w.window.opens_ms,
            w.window
                .length
                .map_or("-".to_owned(), |l| ms(l).to_string()),
            ms(w.window.lead),
        ));
    }
    out
}

/// Packs `r` into payloads of at most `limit` bytes, each starting `sync maint ID
/// PART/TOTAL`. Lines beyond [`MAX_PARTS`] parts are left out.
pub fn encode(id: u64, r: &Replica, limit: usize) -> Vec<Vec<u8>> {
    const HEADER_ROOM: usize = 40;
    let mut bodies: Vec<String> = vec![String::new()];
    for l in lines(r) {
        if l.len() + 1 > limit.saturating_sub(HEADER_ROOM) {
            continue;
        }
        let cur = bodies.last().map_or(0, String::len);
        if cur + l.len() + 1 > limit.saturating_sub(HEADER_ROOM) {
            bodies.push(String::new());
        }
        if let Some(b) = bodies.last_mut() {
            b.push_str(&l);
            b.push('\n');
        }
    }
    bodies.truncate(usize::from(MAX_PARTS));
    let total = bodies.len();
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, b)| format!("sync maint {id} {}/{total}\n{b}", i + 1).into_bytes())
        .collect()
}

fn err(line: usize, what: impl Into<String>) -> String {
    format!("maint sync line {line}: {}", what.into())
}

fn num<T: std::str::FromStr>(line: usize, what: &str, v: Option<&str>) -> Result<T, String> {
    let v = v.ok_or_else(|| err(line, format!("missing {what}")))?;
    v.parse()
        .map_err(|_| err(line, format!("bad {what} {v:?}")))
}

fn rest(words: &[&str], from: usize) -> Option<String> {
    let r = words.get(from..).map(|w| w.join(" ")).unwrap_or_default();
    (!r.is_empty()).then_some(r)
}

fn parse_overall(line: usize, word: &str, reason: Option<String>) -> Result<Overall, String> {
    Ok(match word.split_once('@') {
        None => match word {
            "starting" => Overall::NotStarted,
            "running" => Overall::Running,
            "done" => Overall::Done,
            "aborted" => Overall::Aborted,
            "interrupted" => Overall::Interrupted {
                reason: reason.unwrap_or_default(),
            },
            w => return Err(err(line, format!("bad rollout state {w:?}"))),
        },
        Some(("failed", node)) => Overall::Failed {
            node: num(line, "node", Some(node))?,
            reason: reason.unwrap_or_default(),
        },
        Some(("waiting", n)) => {
            let mut it = n.split('/');
            Overall::Waiting {
                usable: num(line, "usable", it.next())?,
                min_ready: num(line, "min-ready", it.next())?,
                batch: num(line, "batch", it.next())?,
            }
        }
        _ => return Err(err(line, format!("bad rollout state {word:?}"))),
    })
}

/// Decodes the lines of a whole replica (header lines already taken off).
pub fn decode<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Replica, String> {
    let mut r = Replica::default();
    let mut plan_nodes: Vec<SocketAddr> = Vec::new();
    let mut states: Vec<(NodeState, u64)> = Vec::new();
    let mut head: Option<(u64, String, Action, [u64; 4], Overall)> = None;
    for (i, l) in lines.into_iter().enumerate() {
        let n = i + 1;
        let w: Vec<&str> = l.split(' ').collect();
        match w.first().copied() {
            Some("ids") => {
                r.last_ids = (
                    num(n, "id", w.get(1).copied())?,
                    num(n, "id", w.get(2).copied())?,
                )
            }
            Some("rollout") if head.is_none() => {
                let id = num(n, "id", w.get(1).copied())?;
                let service = w
                    .get(2)
                    .ok_or_else(|| err(n, "missing service"))?
                    .to_string();
                let name = w.get(4).ok_or_else(|| err(n, "missing name"))?.to_string();
                let action = match w.get(3).copied() {
                    Some("hook") => Action::Hook(name),
                    Some("task") => Action::Task(name),
                    other => return Err(err(n, format!("bad action {other:?}"))),
                };
                let mut nums = [0u64; 4];
                for (k, v) in nums.iter_mut().enumerate() {
                    *v = num(n, "number", w.get(5 + k).copied())?;
                }
                let state = w.get(9).ok_or_else(|| err(n, "missing state"))?;
                let overall = parse_overall(n, state, rest(&w, 10))?;
                head = Some((id, service, action, nums, overall));
            }
            Some("rnode") if head.is_some() => {
                let addr: SocketAddr = num(n, "address", w.get(1).copied())?;
                let age: u64 = num(n, "age", w.get(3).copied())?;
                // Times are filled in by the receiver (ages); 0 here.
                let z = Duration::ZERO;
                let state = match w.get(2).copied() {
                    Some("pending") => NodeState::Pending,
                    Some("draining") => NodeState::Draining { since: z },
                    Some("running") => NodeState::Running {
                        since: z,
                        id: RunId(0),
                    },
                    Some("waiting-healthy") => NodeState::WaitingHealthy { since: z },
                    Some("done") => NodeState::Done { at: z },
                    Some("failed") => NodeState::Failed {
                        at: z,
                        reason: rest(&w, 4).unwrap_or_default(),
                    },
                    other => return Err(err(n, format!("bad node state {other:?}"))),
                };
                plan_nodes.push(addr);
                states.push((state, age));
            }
            Some("job") => r.jobs.push(JobCopy {
                id: num(n, "id", w.get(1).copied())?,
                service: w
                    .get(2)
                    .ok_or_else(|| err(n, "missing service"))?
                    .to_string(),
                task: w.get(3).ok_or_else(|| err(n, "missing task"))?.to_string(),
                when_idle: match w.get(4).copied() {
                    Some("idle") => true,
                    Some("now") => false,
                    other => return Err(err(n, format!("bad job mode {other:?}"))),
                },
                nodes: Vec::new(),
            }),
            Some("jnode") => {
                let job = r
                    .jobs
                    .last_mut()
                    .ok_or_else(|| err(n, "jnode before any job"))?;
                let state = w.get(2).ok_or_else(|| err(n, "missing state"))?;
                if ![
                    "pending", "waiting", "draining", "running", "done", "failed",
                ]
                .contains(state)
                {
                    return Err(err(n, format!("bad job node state {state:?}")));
                }
                job.nodes.push(JobNodeCopy {
                    addr: num(n, "address", w.get(1).copied())?,
                    state: state.to_string(),
                    age_ms: num(n, "age", w.get(3).copied())?,
                    reason: rest(&w, 4),
                });
            }
            Some("window") => {
                let phase = match w.get(6).copied() {
                    Some("scheduled") => Phase::Scheduled,
                    Some("draining") => Phase::Draining,
                    Some("open") => Phase::Open,
                    other => return Err(err(n, format!("bad window phase {other:?}"))),
                };
                let length = match w.get(4).copied() {
                    Some("-") => None,
                    v => Some(Duration::from_millis(num(n, "length", v)?)),
                };
                r.windows.push(WindowCopy {
                    service: w
                        .get(1)
                        .ok_or_else(|| err(n, "missing service"))?
                        .to_string(),
                    window: Window {
                        service: 0,
                        addr: num(n, "address", w.get(2).copied())?,
                        opens_ms: num(n, "opening", w.get(3).copied())?,
                        length,
                        lead: Duration::from_millis(num(n, "lead", w.get(5).copied())?),
                        phase,
                    },
                });
            }
            Some("") if w.len() == 1 => {}
            _ => return Err(err(n, format!("unexpected line {:?}", one_line(l)))),
        }
    }
    if let Some((id, service, action, [batch, min_ready, drain, healthy], overall)) = head {
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let plan = Plan::new(
            plan_nodes,
            size(batch),
            size(min_ready),
            Duration::from_millis(drain),
            Duration::from_millis(healthy),
            action,
        )
        .map_err(|e| err(0, e.to_string()))?;
        r.rollout = Some(RolloutCopy {
            id,
            service,
            plan,
            overall,
            nodes: states,
        });
    }
    Ok(r)
}

/// Reassembles replica parts (one replica at a time: a newer id restarts it).
#[derive(Debug, Default)]
pub struct Parts {
    id: u64,
    total: u16,
    got: BTreeMap<u16, Vec<String>>,
}

impl Parts {
    /// Adds part `part` of `total` of replica `id`; the whole replica's lines once
    /// every part has arrived.
    pub fn push(
        &mut self,
        id: u64,
        part: u16,
        total: u16,
        lines: Vec<String>,
    ) -> Option<Vec<String>> {
        if total == 0 || total > MAX_PARTS || part == 0 || part > total {
            return None;
        }
        if id != self.id || total != self.total {
            if id < self.id && self.total != 0 {
                return None;
            }
            self.id = id;
            self.total = total;
            self.got.clear();
        }
        self.got.insert(part, lines);
        if self.got.len() < usize::from(total) {
            return None;
        }
        self.total = 0;
        Some(
            std::mem::take(&mut self.got)
                .into_values()
                .flatten()
                .collect(),
        )
    }
}

/// The node states of `c` on a clock at `t` (durations since the receiver's origin).
pub fn node_states(c: &RolloutCopy, t: Duration) -> Vec<NodeState> {
    c.nodes
        .iter()
        .map(|(s, age)| {
            let at = t.saturating_sub(Duration::from_millis(*age));
            match s {
                NodeState::Pending => NodeState::Pending,
                NodeState::Draining { .. } => NodeState::Draining { since: at },
                NodeState::Running { id, .. } => NodeState::Running { since: at, id: *id },
                NodeState::WaitingHealthy { .. } => NodeState::WaitingHealthy { since: at },
                NodeState::Done { .. } => NodeState::Done { at },
                NodeState::Failed { reason, .. } => NodeState::Failed {
                    at,
                    reason: reason.clone(),
                },
            }
        })
        .collect()
}

/// The status `c` shows on a clock at `t`.
pub fn status(c: &RolloutCopy, t: Duration) -> Status {
    Status {
        overall: c.overall.clone(),
        nodes: c
            .plan
            .nodes()
            .iter()
            .zip(node_states(c, t))
            .map(|(&addr, state)| super::machine::NodeStatus {
                addr,
                state,
                output_tail: None,
            })
            .collect(),
    }
}

/// The job `c` shows on a clock at `t`.
pub fn job(c: &JobCopy, t: Duration) -> Job {
    Job::restore(
        c.id,
        &c.service,
        &c.task,
        c.when_idle,
        c.nodes
            .iter()
            .map(|n| {
                let at = t.saturating_sub(Duration::from_millis(n.age_ms));
                let reason = n.reason.clone().unwrap_or_default();
                let state = match n.state.as_str() {
                    "waiting" => JobNodeState::Waiting(reason),
                    "draining" => JobNodeState::Draining {
                        since: at,
                        in_force: true,
                    },
                    "running" => JobNodeState::Running(at),
                    "done" => JobNodeState::Done(at),
                    "failed" => JobNodeState::Failed(at, reason),
                    _ => JobNodeState::Pending,
                };
                (n.addr, state)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 80))
    }

    fn replica() -> Replica {
        let plan = Plan::new(
            vec![a(1), a(2), a(3)],
            1,
            1,
            Duration::from_secs(5),
            Duration::from_secs(60),
            Action::Hook("restart".into()),
        )
        .unwrap();
        let z = Duration::ZERO;
        Replica {
            rollout: Some(RolloutCopy {
                id: 4,
                service: "web".into(),
                plan,
                overall: Overall::Failed {
                    node: a(2),
                    reason: "hook restart failed: disk full".into(),
                },
                nodes: vec![
                    (NodeState::Done { at: z }, 1500),
                    (
                        NodeState::Failed {
                            at: z,
                            reason: "hook restart failed: disk full".into(),
                        },
                        700,
                    ),
                    (NodeState::Pending, 0),
                ],
            }),
            jobs: vec![JobCopy {
                id: 2,
                service: "web".into(),
                task: "rotate".into(),
                when_idle: true,
                nodes: vec![
                    JobNodeCopy {
                        addr: a(1),
                        state: "done".into(),
                        age_ms: 30,
                        reason: None,
                    },
                    JobNodeCopy {
                        addr: a(2),
                        state: "waiting".into(),
                        age_ms: 0,
                        reason: Some("it is the service's only usable node".into()),
                    },
                ],
            }],
            windows: vec![WindowCopy {
                service: "web".into(),
                window: Window {
                    service: 0,
                    addr: a(3),
                    opens_ms: 1_700_000_000_000,
                    length: Some(Duration::from_secs(600)),
                    lead: Duration::from_secs(30),
                    phase: Phase::Draining,
                },
            }],
            last_ids: (4, 2),
        }
    }

    #[test]
    fn a_replica_round_trips_through_one_or_many_parts() {
        let r = replica();
        let text = lines(&r);
        assert_eq!(text[1], "rollout 4 web hook restart 1 1 5000 60000 failed@10.0.0.2:80 hook restart failed: disk full");
        assert_eq!(decode(text.iter().map(String::as_str)), Ok(r.clone()));
        for limit in [1024, 150] {
            let parts = encode(9, &r, limit);
            assert!(parts.iter().all(|p| p.len() <= limit), "{limit}");
            let mut asm = Parts::default();
            let mut whole = None;
            // Any order.
            for p in parts.iter().rev() {
                let text = std::str::from_utf8(p).unwrap();
                let mut ls = text.lines();
                let head: Vec<&str> = ls.next().unwrap().split(' ').collect();
                let (part, total) = head[3].split_once('/').unwrap();
                whole = asm.push(
                    9,
                    part.parse().unwrap(),
                    total.parse().unwrap(),
                    ls.map(str::to_owned).collect(),
                );
            }
            let whole = whole.expect("complete");
            assert_eq!(
                decode(whole.iter().map(String::as_str)),
                Ok(r.clone()),
                "{limit}"
            );
        }
        // An empty board is a valid (empty) replica.
        let empty = encode(1, &Replica::default(), 1024);
        assert_eq!(empty.len(), 1);
        assert_eq!(decode(["ids 0 0"]), Ok(Replica::default()));
    }

    #[test]
    fn bad_lines_are_errors_never_panics() {
        for bad in [
            "rollout x",
            "rollout 1 web hook r 1 1 5 5 sideways",
            "rollout 1 web nap r 1 1 5 5 done",
            "rnode 10.0.0.1:80 done 5",
            "jnode 10.0.0.1:80 done 5",
            "job 1 web t sometimes",
            "window web 10.0.0.1:80 1 - 5 ajar",
            "ids 1",
            "rm -rf /",
        ] {
            assert!(decode([bad]).is_err(), "{bad}");
        }
        // A rollout with no nodes is not a plan.
        assert!(decode(["rollout 1 web hook r 1 1 5 5 done"]).is_err());
        let mut p = Parts::default();
        assert_eq!(p.push(1, 0, 1, vec![]), None);
        assert_eq!(p.push(1, 2, 1, vec![]), None);
        assert_eq!(p.push(1, 1, MAX_PARTS + 1, vec![]), None);
    }

    #[test]
    fn ages_become_times_on_the_receivers_clock() {
        let r = replica();
        let c = r.rollout.as_ref().unwrap();
        let s = status(c, Duration::from_secs(100));
        assert_eq!(
            s.nodes[0].state,
            NodeState::Done {
                at: Duration::from_millis(98_500)
            }
        );
        let j = job(&r.jobs[0], Duration::from_secs(10));
        assert_eq!(
            j.nodes[0].state,
            JobNodeState::Done(Duration::from_millis(9_970))
        );
        assert!(matches!(j.nodes[1].state, JobNodeState::Waiting(_)));
    }
}
