//! Runtime state shared by the data-plane workers of either forwarding mode and the
//! control plane: per service ([`Shared`]) the node pool, the counters, the scheduler
//! switch, the enabled/stop/cut flags and the passive-health observation channel; for
//! the whole process ([`Process`]) the drain and cut flags and the open-connection count
//! that `--max-conns` caps; and the handles of running workers.
//!
//! It sits below both modes (`proxy`, `direct`) and the control plane, so none of them
//! imports another to reach it. It does no IO of its own beyond waking a poll.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mio::Waker;

use crate::pool::{Pool, Stats};
use crate::scheduler::{self, SchedulerKind};

/// What workers report to the control plane (passive health detection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// A connect to `node` failed (refused, timed out).
    ConnectFailed {
        /// The node.
        node: SocketAddr,
        /// Short reason in words: `refused`, `timed out`, `reset`, `unreachable`, `error`.
        why: &'static str,
    },
}

/// What the whole process shares with its workers, whatever the service.
#[derive(Debug, Default)]
pub struct Process {
    /// Stop accepting on every service and drain (SIGTERM, `shutdown`).
    pub shutdown: AtomicBool,
    /// The drain time is over: close what is left, then exit.
    pub cut_now: AtomicBool,
    /// Open client connections over all services (what `--max-conns` caps).
    pub active: AtomicU64,
}

/// One service's state, which every worker reads; written by the control plane.
#[derive(Debug)]
pub struct Shared {
    /// The service's name (`default` for a configuration given by flags).
    pub name: Arc<str>,
    /// The nodes.
    pub pool: Arc<Pool>,
    /// Global counters.
    pub stats: Arc<Stats>,
    /// Cross-worker scheduler state (round-robin cursor).
    pub sched_shared: Arc<scheduler::SchedulerShared>,
    scheduler: AtomicU8,
    /// Distribution switched on (`enable`/`disable`).
    pub enabled: AtomicBool,
    /// Stop accepting on this service's listeners and drain (the service was removed by
    /// a reload, or the process drains).
    pub shutdown: AtomicBool,
    /// Drain time is over: close what is left of this service's connections.
    pub cut_now: AtomicBool,
    observer: Mutex<Option<(Sender<Observation>, Arc<Waker>)>>,
    observe_on: AtomicBool,
}

impl Shared {
    /// Shared state of the service `default` for a pool and a starting scheduler.
    pub fn new(pool: Arc<Pool>, stats: Arc<Stats>, kind: SchedulerKind) -> Self {
        Self::named("default", pool, stats, kind)
    }

    /// Shared state of the service `name` for a pool and a starting scheduler.
    pub fn named(name: &str, pool: Arc<Pool>, stats: Arc<Stats>, kind: SchedulerKind) -> Self {
        let s = Shared {
            name: Arc::from(name),
            pool,
            stats,
            sched_shared: Arc::default(),
            scheduler: AtomicU8::new(0),
            enabled: AtomicBool::new(true),
            shutdown: AtomicBool::new(false),
            cut_now: AtomicBool::new(false),
            observer: Mutex::new(None),
            observe_on: AtomicBool::new(false),
        };
        s.set_scheduler_kind(kind);
        s
    }

    /// The scheduler workers should use.
    pub fn scheduler_kind(&self) -> SchedulerKind {
        kind_from_u8(self.scheduler.load(Ordering::Relaxed))
    }

    /// Switches every worker to another scheduler (at its next new connection).
    pub fn set_scheduler_kind(&self, k: SchedulerKind) {
        let v = match k {
            SchedulerKind::Rr => 0,
            SchedulerKind::Wrr => 1,
            SchedulerKind::Lc => 2,
            SchedulerKind::Wlc => 3,
            SchedulerKind::Maglev => 4,
        };
        self.scheduler.store(v, Ordering::Relaxed);
    }

    /// Routes observations to `tx`, waking the consumer's poll with `waker`.
    pub fn set_observer(&self, tx: Sender<Observation>, waker: Arc<Waker>) {
        *self.observer.lock().unwrap_or_else(|e| e.into_inner()) = Some((tx, waker));
        self.observe_on.store(true, Ordering::Release);
    }

    /// Reports an observation if anyone listens: one atomic load when nobody does, a lock
    /// otherwise, which only the connect-failure path pays.
    pub fn observe(&self, o: Observation) {
        if !self.observe_on.load(Ordering::Acquire) {
            return;
        }
        if let Some((tx, waker)) = self
            .observer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.send(o);
            let _ = waker.wake();
        }
    }
}

/// Running workers.
pub struct Workers {
    /// One waker per worker, to make it look at the shared flags.
    pub wakers: Vec<Arc<Waker>>,
    /// Thread handles; each returns how many connections it cut.
    pub threads: Vec<JoinHandle<io::Result<u64>>>,
    /// Duplicates of every listener (proxy mode), for a reload's hand-over, each with
    /// its service's index.
    pub listener_fds: Vec<(usize, std::os::fd::OwnedFd)>,
}

impl Workers {
    /// Wakes every worker (after a flag change).
    pub fn wake_all(&self) {
        for w in &self.wakers {
            let _ = w.wake();
        }
    }
}

/// The scheduler kinds as stored in an atomic.
fn kind_from_u8(v: u8) -> SchedulerKind {
    match v {
        1 => SchedulerKind::Wrr,
        2 => SchedulerKind::Lc,
        3 => SchedulerKind::Wlc,
        4 => SchedulerKind::Maglev,
        _ => SchedulerKind::Rr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_kind_round_trips_through_the_atomic() {
        let s = Shared::new(Arc::new(Pool::new(&[])), Arc::default(), SchedulerKind::Rr);
        for k in [
            SchedulerKind::Rr,
            SchedulerKind::Wrr,
            SchedulerKind::Lc,
            SchedulerKind::Wlc,
            SchedulerKind::Maglev,
        ] {
            s.set_scheduler_kind(k);
            assert_eq!(s.scheduler_kind(), k);
        }
    }
}
