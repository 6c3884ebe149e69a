//! Least connections, plain and weighted.
//!
//! Plain: the usable node with the fewest open flows. Weighted: the smallest
//! `(active + 1) / weight`, compared by cross-multiplication (no division, no floats);
//! the `+ 1` means that with no flows open the heaviest node goes first, as in HAProxy's
//! `leastconn`. Open-flow counts are the pool's atomics, so they cover all workers.
//! Ties are broken round-robin: the scan starts after the node picked last.

use super::{Candidate, Tier};

/// (Weighted) least-connections scheduler.
#[derive(Debug)]
pub struct LeastConn {
    weighted: bool,
    next: usize,
}

impl LeastConn {
    /// `weighted`: wlc instead of lc.
    pub fn new(weighted: bool) -> Self {
        LeastConn { weighted, next: 0 }
    }

    /// Is this wlc?
    pub fn weighted(&self) -> bool {
        self.weighted
    }

    /// Is `a` (active, weight) strictly less loaded than `b`?
    fn less(&self, a: (u64, u32), b: (u64, u32)) -> bool {
        if self.weighted {
            u128::from(a.0 + 1) * u128::from(b.1) < u128::from(b.0 + 1) * u128::from(a.1)
        } else {
            a.0 < b.0
        }
    }

    pub(super) fn pick<N: Candidate>(&mut self, nodes: &[N], tier: Tier<'_>) -> Option<usize> {
        let n = nodes.len();
        let mut best: Option<(usize, (u64, u32))> = None;
        for k in 0..n {
            let i = (self.next + k) % n;
            if !tier.usable(nodes, i) {
                continue;
            }
            let load = (nodes[i].active(), nodes[i].weight());
            if best.is_none_or(|(_, b)| self.less(load, b)) {
                best = Some((i, load));
            }
        }
        let (i, _) = best?;
        self.next = i + 1;
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{picks, t};
    use super::super::{Scheduler, SchedulerKind};
    use std::sync::Arc;

    #[test]
    fn picks_least_loaded() {
        let mut s = Scheduler::new(SchedulerKind::Lc, Arc::default());
        let mut nodes = vec![t(1), t(1), t(1)];
        nodes[0].active = 5;
        nodes[1].active = 2;
        nodes[2].active = 7;
        assert_eq!(s.pick(&nodes, &[]), Some(1));
        // Fill node 1 up to node 0's level: it keeps getting flows until tied.
        let got = picks(&mut s, &mut nodes, 3, true);
        assert_eq!(got, vec![1, 1, 1]);
    }

    #[test]
    fn ties_rotate() {
        let mut s = Scheduler::new(SchedulerKind::Lc, Arc::default());
        let mut nodes = vec![t(1), t(1), t(1)];
        // Nothing held open: every pick is a tie, so it must rotate.
        assert_eq!(picks(&mut s, &mut nodes, 6, false), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_respects_weights() {
        let mut s = Scheduler::new(SchedulerKind::Wlc, Arc::default());
        let mut nodes = vec![t(1), t(3)];
        let got = picks(&mut s, &mut nodes, 8, true);
        assert_eq!(got[0], 1, "heaviest first when idle");
        assert_eq!(nodes[1].active, 6);
        assert_eq!(nodes[0].active, 2);
    }

    #[test]
    fn weighted_prefers_lower_ratio() {
        let mut s = Scheduler::new(SchedulerKind::Wlc, Arc::default());
        let mut nodes = vec![t(2), t(1)];
        nodes[0].active = 3; // (3+1)/2 = 2
        nodes[1].active = 0; // (0+1)/1 = 1
        assert_eq!(s.pick(&nodes, &[]), Some(1));
        nodes[1].active = 2; // 3/1 = 3
        assert_eq!(s.pick(&nodes, &[]), Some(0));
    }
}
