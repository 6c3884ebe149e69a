//! `fulcrum agent`: the broker that runs on a server node.
//!
//! Every `--interval` it probes the local service (same check kinds as the distributor),
//! reads the load average per CPU, decides its state (`down` if the probe fails,
//! `overloaded` above `--overload`, `drain` while `--drain-file` exists, else `ready`) and
//! sends an authenticated heartbeat to each distributor. Heartbeats keep a fixed pace so
//! that the distributor can count missing ones; the node's load is carried in the
//! message instead of being signalled by silence (as the LISA '98 broker did).
//!
//! Blocking IO is fine here: this is a small process of its own, not an event loop.

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
use crate::sys::signal::{self, Request};
use crate::time::wall_ms;
use crate::wire::heartbeat::{self as wire, AgentState, Heartbeat};

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
    info!(target: "fulcrum::agent",
        "agent for {node_id}: probing {} every {:?}, reporting to {:?}", a.service, a.interval, a.distributors);
    // Sequence numbers must grow across restarts: start from the wall clock in µs.
    let mut seq = wall_ms().saturating_mul(1000);
    let mut last: Option<AgentState> = None;
    let mut buf = Vec::with_capacity(wire::MAX_LEN);
    loop {
        let t0 = Instant::now();
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
        seq = seq.max(wall_ms().saturating_mul(1000)) + 1;
        let hb = Heartbeat {
            node_id: node_id.clone(),
            state,
            sequence: seq,
            sent_at_ms: wall_ms(),
            load_per_cpu_milli: (load * 1000.0).clamp(0.0, f64::from(u32::MAX)) as u32,
            probe_rtt: probed.ok(),
            weight_pct: a.dynamic_weight.then(|| weight_pct(load, a.overload)),
            report: None,
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
        // Sleep the rest of the interval, waking at once on SIGTERM/SIGINT.
        let rest = a.interval.saturating_sub(t0.elapsed());
        let ms = PollTimeout::from(rest.as_millis().min(60_000) as u16);
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, ms).unwrap_or(0) > 0 {
            while let Some(sig) = signal::next(&mut sfd) {
                if sig.request == Request::Stop {
                    info!(target: "fulcrum::agent", "{}: stopping", sig.name);
                    return Ok(());
                }
                info!(target: "fulcrum::agent", "{}: ignored (the agent has nothing to reload)", sig.name);
            }
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
