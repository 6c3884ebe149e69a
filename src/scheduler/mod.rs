//! Schedulers: which node gets the next flow.
//!
//! Pure logic over a slice of [`Candidate`]s (the pool's nodes in production, plain
//! structs in tests). Each algorithm lives in its own file; [`Scheduler`] dispatches
//! statically. Every algorithm follows the same contract, tested once for all of them
//! at the bottom of this file:
//! - an empty set, or a set with no eligible node, yields `None`;
//! - ineligible (drained, maint, down, warning, at maxconn, weight 0) and excluded
//!   (just failed) nodes are never picked;
//! - backup nodes are picked only while no normal node is usable.
//!
//! Schedulers hold per-worker state (sequence position, smooth-weight counters) and are
//! told to [`Scheduler::reset`] when the node set or weights change.
//!
//! [`Maglev`] is the one hashing algorithm: [`Scheduler::pick_hashed`] gives it a flow key
//! (the 5-tuple in direct mode, the client address in proxy mode) and the same key maps
//! to the same node on every distributor that has the same node set. The other
//! algorithms ignore the key.

mod lc;
mod maglev;
mod rr;
mod wrr;

pub use lc::LeastConn;
pub use maglev::{Maglev, TableSizeError, DEFAULT_TABLE_SIZE};
pub use rr::RoundRobin;
pub use wrr::SmoothWeighted;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::pool::Node;

/// What a scheduler needs to know about a node.
pub trait Candidate {
    /// May it take a new flow (admin ready, health up, under maxconn, weight > 0)?
    fn eligible(&self) -> bool;
    /// Is it a backup node?
    fn backup(&self) -> bool;
    /// Effective weight.
    fn weight(&self) -> u32;
    /// Flows open to it right now, across all workers.
    fn active(&self) -> u64;
    /// A stable identity for consistent hashing: the same node must have the same
    /// identity on every distributor. `None`: the node's position in the list is used.
    fn identity(&self) -> Option<SocketAddr> {
        None
    }
}

impl Candidate for Node {
    fn eligible(&self) -> bool {
        Node::eligible(self)
    }
    fn backup(&self) -> bool {
        self.is_backup()
    }
    fn weight(&self) -> u32 {
        self.effective_weight()
    }
    fn active(&self) -> u64 {
        Node::active(self)
    }
    fn identity(&self) -> Option<SocketAddr> {
        Some(self.addr())
    }
}

impl<T: Candidate> Candidate for Arc<T> {
    fn eligible(&self) -> bool {
        (**self).eligible()
    }
    fn backup(&self) -> bool {
        (**self).backup()
    }
    fn weight(&self) -> u32 {
        (**self).weight()
    }
    fn active(&self) -> u64 {
        (**self).active()
    }
    fn identity(&self) -> Option<SocketAddr> {
        (**self).identity()
    }
}

/// The algorithm names accepted by `--scheduler` and `set scheduler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// Round-robin.
    Rr,
    /// Smooth weighted round-robin (nginx).
    Wrr,
    /// Least connections.
    Lc,
    /// Weighted least connections.
    Wlc,
    /// Maglev consistent hashing (default in direct mode).
    Maglev,
}

impl SchedulerKind {
    /// The flag spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Maglev => "maglev",
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchedulerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rr" => Ok(SchedulerKind::Rr),
            "wrr" => Ok(SchedulerKind::Wrr),
            "lc" => Ok(SchedulerKind::Lc),
            "wlc" => Ok(SchedulerKind::Wlc),
            "maglev" => Ok(SchedulerKind::Maglev),
            _ => Err(format!(
                "unknown scheduler \"{s}\" (expected rr, wrr, lc, wlc or maglev)"
            )),
        }
    }
}

/// State shared by the schedulers of all workers: the round-robin cursor, so that
/// round-robin is exact across workers rather than per worker, and the hash seed.
#[derive(Debug, Default)]
pub struct SchedulerShared {
    cursor: AtomicUsize,
    seed: AtomicU64,
}

impl SchedulerShared {
    /// The seed of hashing schedulers (Maglev). Distributors that must agree on the
    /// flow → node mapping (a failover pair) need the same seed.
    pub fn seed(&self) -> u64 {
        self.seed.load(Ordering::Relaxed)
    }

    /// Sets the hash seed; schedulers created afterwards use it.
    pub fn set_seed(&self, seed: u64) {
        self.seed.store(seed, Ordering::Relaxed);
    }
}

/// Any scheduler, statically dispatched.
#[derive(Debug)]
pub enum Scheduler {
    /// See [`RoundRobin`].
    Rr(RoundRobin),
    /// See [`SmoothWeighted`].
    Wrr(SmoothWeighted),
    /// See [`LeastConn`] (also weighted).
    Lc(LeastConn),
    /// See [`Maglev`]. Boxed: its tables are large and rarely moved.
    Maglev(Box<Maglev>),
}

impl Scheduler {
    /// A scheduler of this kind; `shared` is common to all workers.
    pub fn new(kind: SchedulerKind, shared: Arc<SchedulerShared>) -> Self {
        match kind {
            SchedulerKind::Rr => Scheduler::Rr(RoundRobin::new(shared)),
            SchedulerKind::Wrr => Scheduler::Wrr(SmoothWeighted::default()),
            SchedulerKind::Lc => Scheduler::Lc(LeastConn::new(false)),
            SchedulerKind::Wlc => Scheduler::Lc(LeastConn::new(true)),
            SchedulerKind::Maglev => Scheduler::Maglev(Box::new(Maglev::new(shared.seed()))),
        }
    }

    /// Which kind this is.
    pub fn kind(&self) -> SchedulerKind {
        match self {
            Scheduler::Rr(_) => SchedulerKind::Rr,
            Scheduler::Wrr(_) => SchedulerKind::Wrr,
            Scheduler::Lc(l) if l.weighted() => SchedulerKind::Wlc,
            Scheduler::Lc(_) => SchedulerKind::Lc,
            Scheduler::Maglev(_) => SchedulerKind::Maglev,
        }
    }

    /// Picks a node index for a new flow, never one in `exclude`.
    pub fn pick<N: Candidate>(&mut self, nodes: &[N], exclude: &[usize]) -> Option<usize> {
        let tier = Tier::choose(nodes, exclude)?;
        match self {
            Scheduler::Rr(s) => s.pick(nodes, tier),
            Scheduler::Wrr(s) => s.pick(nodes, tier),
            Scheduler::Lc(s) => s.pick(nodes, tier),
            Scheduler::Maglev(s) => s.pick(nodes, tier),
        }
    }

    /// Picks a node index for a new flow identified by `key` (flow-key bytes). Maglev
    /// hashes the key, so the same key gets the same node while that node is usable; the
    /// other algorithms ignore it and behave as [`Scheduler::pick`].
    pub fn pick_hashed<N: Candidate>(&mut self, nodes: &[N], key: &[u8]) -> Option<usize> {
        let tier = Tier::choose(nodes, &[])?;
        match self {
            Scheduler::Maglev(s) => s.pick_hashed(nodes, tier, key),
            Scheduler::Rr(s) => s.pick(nodes, tier),
            Scheduler::Wrr(s) => s.pick(nodes, tier),
            Scheduler::Lc(s) => s.pick(nodes, tier),
        }
    }

    /// The Maglev state, when this is Maglev (direct mode's stateless lookups).
    pub fn maglev_mut(&mut self) -> Option<&mut Maglev> {
        match self {
            Scheduler::Maglev(m) => Some(m),
            _ => None,
        }
    }

    /// Forgets per-node state; called when membership or weights change.
    pub fn reset(&mut self) {
        if let Scheduler::Wrr(s) = self {
            s.reset();
        }
    }
}

/// The set of nodes an algorithm may choose from for one pick: usable nodes of one
/// class (normal, or backup when no normal node is usable).
#[derive(Debug, Clone, Copy)]
pub struct Tier<'a> {
    backup: bool,
    exclude: &'a [usize],
}

impl<'a> Tier<'a> {
    /// Normal nodes if any is usable, else backup nodes if any is usable, else `None`.
    pub fn choose<N: Candidate>(nodes: &[N], exclude: &'a [usize]) -> Option<Self> {
        for backup in [false, true] {
            let t = Tier { backup, exclude };
            if (0..nodes.len()).any(|i| t.usable(nodes, i)) {
                return Some(t);
            }
        }
        None
    }

    /// May node `i` be picked in this tier?
    #[inline]
    pub fn usable<N: Candidate>(&self, nodes: &[N], i: usize) -> bool {
        let n = &nodes[i];
        n.backup() == self.backup && n.eligible() && !self.exclude.contains(&i)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A node for tests.
    #[derive(Debug, Clone)]
    pub struct T {
        pub ok: bool,
        pub backup: bool,
        pub w: u32,
        pub active: u64,
    }

    pub fn t(w: u32) -> T {
        T {
            ok: true,
            backup: false,
            w,
            active: 0,
        }
    }

    impl Candidate for T {
        fn eligible(&self) -> bool {
            self.ok && self.w > 0
        }
        fn backup(&self) -> bool {
            self.backup
        }
        fn weight(&self) -> u32 {
            self.w
        }
        fn active(&self) -> u64 {
            self.active
        }
    }

    pub fn all_kinds() -> Vec<Scheduler> {
        [
            SchedulerKind::Rr,
            SchedulerKind::Wrr,
            SchedulerKind::Lc,
            SchedulerKind::Wlc,
            SchedulerKind::Maglev,
        ]
        .into_iter()
        .map(|k| Scheduler::new(k, Arc::default()))
        .collect()
    }

    /// Picks `n` times, counting a flow open on each pick (so lc moves on).
    pub fn picks(s: &mut Scheduler, nodes: &mut [T], n: usize, hold: bool) -> Vec<usize> {
        (0..n)
            .map(|_| {
                let i = s.pick(nodes, &[]).expect("a node");
                if hold {
                    nodes[i].active += 1;
                }
                i
            })
            .collect()
    }

    #[test]
    fn contract_empty_and_none_eligible() {
        for mut s in all_kinds() {
            let empty: Vec<T> = vec![];
            assert_eq!(s.pick(&empty, &[]), None, "{:?}", s.kind());
            let mut nodes = vec![t(1), t(1)];
            nodes[0].ok = false;
            nodes[1].w = 0;
            assert_eq!(s.pick(&nodes, &[]), None, "{:?}", s.kind());
        }
    }

    #[test]
    fn contract_never_picks_ineligible_or_excluded() {
        for mut s in all_kinds() {
            let mut nodes = vec![t(1), t(3), t(1), t(2)];
            nodes[1].ok = false;
            for _ in 0..100 {
                let i = s.pick(&nodes, &[2]).unwrap();
                assert!(i == 0 || i == 3, "{:?} picked {i}", s.kind());
                nodes[i].active += 1;
            }
            assert_eq!(s.pick(&nodes, &[0, 2, 3]), None);
        }
    }

    #[test]
    fn contract_backup_only_when_primaries_unusable() {
        for mut s in all_kinds() {
            let mut nodes = vec![t(1), t(1), t(1), t(1)];
            nodes[2].backup = true;
            nodes[3].backup = true;
            for _ in 0..20 {
                let i = s.pick(&nodes, &[]).unwrap();
                assert!(i < 2, "{:?} picked backup {i} while primaries up", s.kind());
            }
            // One primary down, the other just failed: backups take over.
            nodes[0].ok = false;
            let i = s.pick(&nodes, &[1]).unwrap();
            assert!(i >= 2, "{:?}", s.kind());
            nodes[1].ok = false;
            let mut seen = [0; 4];
            for _ in 0..20 {
                let i = s.pick(&nodes, &[]).unwrap();
                seen[i] += 1;
                nodes[i].active += 1;
            }
            assert_eq!(seen[0] + seen[1], 0);
            assert!(seen[2] > 0 && seen[3] > 0, "{:?}: {seen:?}", s.kind());
            // A primary comes back: it gets the traffic again.
            nodes[1].ok = true;
            assert_eq!(s.pick(&nodes, &[]), Some(1), "{:?}", s.kind());
        }
    }

    #[test]
    fn contract_weights_respected_over_many_picks() {
        // Equal-weight algorithms spread evenly; weighted ones follow 3:1.
        for mut s in all_kinds() {
            if s.kind() == SchedulerKind::Maglev {
                // Exempt: Maglev follows weights statistically (hash of the flow key),
                // not within ±2 of 400 picks; `maglev::tests::weights_respected_within_tolerance`
                // checks it over 60 000 keys within 3 %.
                continue;
            }
            let mut nodes = vec![t(3), t(1)];
            let got = picks(&mut s, &mut nodes, 400, true);
            let a = got.iter().filter(|&&i| i == 0).count();
            let expect = match s.kind() {
                SchedulerKind::Rr | SchedulerKind::Lc => 200,
                SchedulerKind::Wrr | SchedulerKind::Wlc => 300,
                SchedulerKind::Maglev => unreachable!("skipped above"),
            };
            assert!(a.abs_diff(expect) <= 2, "{:?}: {a} of 400", s.kind());
        }
    }

    #[test]
    fn contract_hashed_pick_never_picks_ineligible() {
        for mut s in all_kinds() {
            let mut nodes = vec![t(1), t(3), t(1), t(2)];
            nodes[1].ok = false;
            nodes[3].backup = true;
            for k in 0u32..200 {
                let i = s.pick_hashed(&nodes, &k.to_be_bytes()).unwrap();
                assert!(i == 0 || i == 2, "{:?} picked {i}", s.kind());
            }
            nodes[0].ok = false;
            nodes[2].ok = false;
            assert_eq!(s.pick_hashed(&nodes, b"k"), Some(3), "{:?}", s.kind());
            nodes[3].ok = false;
            assert_eq!(s.pick_hashed(&nodes, b"k"), None, "{:?}", s.kind());
        }
    }

    #[test]
    fn kind_names_round_trip() {
        for k in ["rr", "wrr", "lc", "wlc", "maglev"] {
            assert_eq!(k.parse::<SchedulerKind>().unwrap().as_str(), k);
        }
        assert!("maglevv"
            .parse::<SchedulerKind>()
            .unwrap_err()
            .contains("maglevv"));
    }
}
