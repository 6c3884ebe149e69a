//! `fulcrum agent`: the broker that runs on a server node.
//!
//! Every `--interval` it probes the local service (same check kinds as the distributor),
//! reads the load average per CPU, decides its state (`down` if the probe fails,
//! `overloaded` above `--overload`, `drain` while `--drain-file` exists, else `ready`) and
//! sends an authenticated heartbeat to each distributor. Heartbeats keep a fixed pace so
//! that the distributor can count missing ones; the node's load is carried in the
//! message instead of being signalled by silence (as the LISA '98 broker did).
//!
//! Node tasks: the same socket receives the distributors' task requests
//! ([`crate::wire::task`]). A declared task (`--task NAME=COMMAND`) runs at most once
//! per request id, in its own process group, killed at the request's deadline; its
//! start, end and output tail ride in the following heartbeats, and a heartbeat goes
//! out at once when a task starts, ends or is refused ([`super::tasks`] decides).
//!
//! Blocking IO is fine here: this is a small process of its own, not an event loop
//! (it polls its signals and its socket, and its tasks every 100 ms while any runs).

// The flags' doc comments are their --help text, written for a terminal
// (`ADDR[,weight=N]`, `[::]:80`), not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use log::{info, warn};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::agent::config::AgentArgs;
use crate::health::config::CheckKind;
use crate::health::http::{build_request, parse_status, StatusSet};
use crate::sys::child::{ChildRun, Ended};
use crate::sys::signal::{self, Request};
use crate::time::wall_ms;
use crate::wire::heartbeat::{self as wire, AgentState, Heartbeat};
use crate::wire::task::TaskStatus;

use super::tasks::{Decision, Tasks};

/// How often running tasks are looked at.
const TASK_POLL: Duration = Duration::from_millis(100);
/// Output kept per running task (the heartbeats carry its last KiB).
const TASK_TAIL: usize = 4096;
/// The longest a task may be asked to run.
const MAX_TASK_TIME: Duration = Duration::from_secs(24 * 3600);

/// Probes the local service once; returns the round-trip time on success.
pub fn probe(
    kind: &CheckKind,
    addr: SocketAddr,
    statuses: &StatusSet,
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let CheckKind::Http { path } = kind else {
        return Ok(start.elapsed());
    };
    let left = |start: Instant| {
        timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(1))
    };
    s.set_write_timeout(Some(left(start)))
        .map_err(|e| e.to_string())?;
    let mut req = Vec::new();
    build_request(path, &addr.ip().to_string(), &mut req);
    s.write_all(&req).map_err(|e| format!("send: {e}"))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        s.set_read_timeout(Some(left(start)))
            .map_err(|e| e.to_string())?;
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        head.extend_from_slice(&chunk[..n]);
        match parse_status(&head) {
            Ok(Some(code)) if statuses.contains(code) => return Ok(start.elapsed()),
            Ok(Some(code)) => return Err(format!("status {code}")),
            Ok(None) if n > 0 && head.len() < 512 => {}
            Ok(None) => return Err("no status line".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The 1-minute load average divided by the number of CPUs.
pub fn load_per_cpu(path: &Path) -> io::Result<f64> {
    let text = std::fs::read_to_string(path)?;
    let first = text
        .split_whitespace()
        .next()
        .and_then(|f| f.parse::<f64>().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no load average", path.display()),
            )
        })?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(first / cpus as f64)
}

/// The state to report (pure).
pub fn decide(probe_ok: bool, load: f64, overload: f64, draining: bool) -> AgentState {
    if !probe_ok {
        AgentState::Down
    } else if draining {
        AgentState::Drain
    } else if load > overload {
        AgentState::Overloaded
    } else {
        AgentState::Ready
    }
}

/// Weight percentage for `--dynamic-weight` (pure): 100 % up to half the overload
/// threshold, then linearly down to 10 % at the threshold.
pub fn weight_pct(load: f64, overload: f64) -> u8 {
    let half = overload / 2.0;
    // NaN loads compare false everywhere: treat them as "no load information".
    if load.is_nan() || load <= half || overload <= 0.0 {
        return 100;
    }
    let f = ((load - half) / half).clamp(0.0, 1.0);
    (100.0 - 90.0 * f).round() as u8
}

/// Runs the agent until SIGTERM/SIGINT.
pub fn run(a: AgentArgs) -> io::Result<()> {
    let mut sfd = signal::signal_fd()?;
    let key = crate::secret::read("--key-file", &a.key_file).map_err(io::Error::other)?;
    let node_id = a.node_id.clone().unwrap_or_else(|| a.service.to_string());
    if node_id.is_empty() || node_id.len() > wire::MAX_NODE_ID_LEN {
        return Err(io::Error::other(format!(
            "--node-id must be 1..={} bytes",
            wire::MAX_NODE_ID_LEN
        )));
    }
    let bind: SocketAddr = if a.distributors.iter().all(|d| d.is_ipv6()) {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    }
    .parse()
    .map_err(io::Error::other)?;
    let sock = UdpSocket::bind(bind)?;
    sock.set_nonblocking(true)?;
    for (i, t) in a.tasks.iter().enumerate() {
        if a.tasks[..i].iter().any(|o| o.name == t.name) {
            return Err(io::Error::other(format!(
                "--task {}=…: the name {:?} is declared twice",
                t.name, t.name
            )));
        }
    }
    let mut tasks = Tasks::new(a.tasks.clone(), &node_id, wall_ms());
    info!(target: "fulcrum::agent",
        "agent for {node_id}: probing {} every {:?}, reporting to {:?}, tasks {:?}",
        a.service, a.interval, a.distributors, tasks.names());
    // Sequence numbers must grow across restarts: start from the wall clock in µs.
    let mut seq = wall_ms().saturating_mul(1000);
    let mut last: Option<AgentState> = None;
    let mut buf = Vec::with_capacity(wire::MAX_LEN);
    let mut rbuf = vec![0u8; 2048];
    let mut runs: Vec<(u64, String, ChildRun)> = Vec::new();
    let mut last_refusal_log: Option<Instant> = None;
    let mut beat = Beat::default();
    let mut next_probe = Instant::now();
    loop {
        let now = Instant::now();
        let mut send = false;
        if now >= next_probe {
            next_probe = now + a.interval;
            let probed = probe(&a.check, a.service, &a.check_status, a.check_timeout);
            let load = load_per_cpu(&a.loadavg_file).unwrap_or_else(|e| {
                warn!(target: "fulcrum::agent", "{e}");
                0.0
            });
            let draining = a.drain_file.as_deref().is_some_and(Path::exists);
            let state = decide(probed.is_ok(), load, a.overload, draining);
            if last != Some(state) {
                match &probed {
                    Err(e) => warn!(target: "fulcrum::agent", "state {state}: probe failed: {e}"),
                    Ok(_) => info!(target: "fulcrum::agent", "state {state} (load/cpu {load:.2})"),
                }
                last = Some(state);
            }
            beat = Beat {
                state,
                load,
                rtt: probed.ok(),
            };
            send = true;
        }
        // Task requests.
        for _ in 0..64 {
            let (n, from) = match sock.recv_from(&mut rbuf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let got = rbuf.get(..n).unwrap_or_default();
            match tasks.on_datagram(got, key.bytes(), wall_ms()) {
                Decision::Ignored => {}
                Decision::Known(id) => {
                    info!(target: "fulcrum::agent", "task request {id} from {from} again: already taken, not run again");
                    send = true;
                }
                Decision::Refused { id, why } => {
                    let t = Instant::now();
                    if last_refusal_log
                        .is_none_or(|l| t.saturating_duration_since(l) >= Duration::from_secs(1))
                    {
                        last_refusal_log = Some(t);
                        warn!(target: "fulcrum::agent", "task request {id} from {from} refused: {why} (further refusals this second not logged)");
                    }
                    send = true;
                }
                Decision::Run {
                    id,
                    name,
                    command,
                    deadline_ms,
                } => {
                    let left = Duration::from_millis(deadline_ms.saturating_sub(wall_ms()))
                        .clamp(Duration::from_millis(1), MAX_TASK_TIME);
                    let id_s = id.to_string();
                    let env = [
                        ("FULCRUM_TASK", name.as_str()),
                        ("FULCRUM_TASK_ID", id_s.as_str()),
                        ("FULCRUM_NODE", node_id.as_str()),
                    ];
                    match ChildRun::spawn(&command, &env, left, Instant::now(), TASK_TAIL) {
                        Ok(run) => {
                            info!(target: "fulcrum::agent", "task {name} (request {id} from {from}) started");
                            runs.push((id, name, run));
                        }
                        Err(e) => {
                            warn!(target: "fulcrum::agent", "task {name} (request {id}) could not start: {e}");
                            tasks.ended(id, TaskStatus::NotStarted, &e.to_string(), wall_ms());
                        }
                    }
                    send = true;
                }
            }
        }
        // Running tasks.
        let mut i = 0;
        while i < runs.len() {
            let (id, _, run) = &mut runs[i];
            let id = *id;
            let Some(ended) = run.poll(Instant::now()) else {
                tasks.progress(id, &run.output());
                i += 1;
                continue;
            };
            let output = run.output();
            let (_, name, _) = runs.swap_remove(i);
            let status = match ended {
                Ended::Ok => TaskStatus::Exited(0),
                Ended::Failed(st) => {
                    use std::os::unix::process::ExitStatusExt;
                    match (st.code(), st.signal()) {
                        (Some(c), _) => TaskStatus::Exited(c),
                        (None, Some(s)) => TaskStatus::Signalled(s),
                        (None, None) => TaskStatus::Exited(-1),
                    }
                }
                Ended::TimedOut(_) => TaskStatus::TimedOut,
            };
            info!(target: "fulcrum::agent", "task {name} (request {id}): {status}");
            tasks.ended(id, status, &output, wall_ms());
            send = true;
        }
        if send && last.is_some() {
            seq = seq.max(wall_ms().saturating_mul(1000)) + 1;
            let hb = Heartbeat {
                node_id: node_id.clone(),
                state: beat.state,
                sequence: seq,
                sent_at_ms: wall_ms(),
                load_per_cpu_milli: (beat.load * 1000.0).clamp(0.0, f64::from(u32::MAX)) as u32,
                probe_rtt: beat.rtt,
                weight_pct: a.dynamic_weight.then(|| weight_pct(beat.load, a.overload)),
                report: tasks.next_report(wall_ms()),
            };
            match wire::emit(&hb, key.bytes(), &mut buf) {
                Ok(()) => {
                    for d in &a.distributors {
                        if let Err(e) = sock.send_to(&buf, d) {
                            warn!(target: "fulcrum::agent", "send to {d}: {e}");
                        }
                    }
                }
                Err(e) => warn!(target: "fulcrum::agent", "cannot encode heartbeat: {e}"),
            }
        }
        // Sleep until the next probe (or the next look at the tasks), waking at once
        // on SIGTERM/SIGINT or a task request.
        let mut rest = next_probe.saturating_duration_since(Instant::now());
        if !runs.is_empty() {
            rest = rest.min(TASK_POLL);
        }
        let ms = PollTimeout::from(rest.as_millis().min(60_000) as u16);
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(sock.as_fd(), PollFlags::POLLIN),
        ];
        let _ = poll(&mut fds, ms);
        if fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            while let Some(sig) = signal::next(&mut sfd) {
                if sig.request == Request::Stop {
                    info!(target: "fulcrum::agent", "{}: stopping", sig.name);
                    for (id, name, mut run) in runs.drain(..) {
                        run.kill();
                        warn!(target: "fulcrum::agent", "task {name} (request {id}) killed: the agent is stopping");
                    }
                    return Ok(());
                }
                info!(target: "fulcrum::agent", "{}: ignored (the agent has nothing to reload)", sig.name);
            }
        }
    }
}

/// What the last probe found, repeated by the heartbeats sent between probes.
#[derive(Debug, Clone, Copy)]
struct Beat {
    state: AgentState,
    load: f64,
    rtt: Option<Duration>,
}

impl Default for Beat {
    fn default() -> Self {
        Beat {
            state: AgentState::Down,
            load: 0.0,
            rtt: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_orders_down_drain_overload() {
        assert_eq!(decide(false, 0.1, 2.0, true), AgentState::Down);
        assert_eq!(decide(true, 5.0, 2.0, true), AgentState::Drain);
        assert_eq!(decide(true, 2.5, 2.0, false), AgentState::Overloaded);
        assert_eq!(decide(true, 2.0, 2.0, false), AgentState::Ready);
    }

    #[test]
    fn weight_falls_with_load() {
        assert_eq!(weight_pct(0.5, 2.0), 100);
        assert_eq!(weight_pct(1.0, 2.0), 100);
        assert_eq!(weight_pct(1.5, 2.0), 55);
        assert_eq!(weight_pct(2.0, 2.0), 10);
        assert_eq!(weight_pct(9.0, 2.0), 10);
        assert_eq!(weight_pct(f64::NAN, 2.0), 100);
    }

    #[test]
    fn load_file_parsing() {
        let p = std::env::temp_dir().join(format!("fulcrum-loadavg-{}", std::process::id()));
        std::fs::write(&p, "4.00 3.00 2.00 1/100 42\n").unwrap();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        assert!((load_per_cpu(&p).unwrap() - 4.0 / cpus).abs() < 1e-9);
        std::fs::write(&p, "garbage").unwrap();
        assert!(load_per_cpu(&p).is_err());
        let _ = std::fs::remove_file(&p);
    }
}
