//! Smooth weighted round-robin, as nginx does it (`ngx_http_upstream_get_peer`).
//!
//! Each pick adds every usable node's weight to its running counter, takes the node with
//! the largest counter and subtracts the total weight from it. Weights 5:1:1 give
//! `a a b a c a a`: the heavy node's turns are spread out rather than bunched.
//! The counters are per worker; together the workers still follow the weights.

use super::{Candidate, Tier};

/// Smooth weighted round-robin scheduler.
#[derive(Debug, Default)]
pub struct SmoothWeighted {
    current: Vec<i64>,
}

impl SmoothWeighted {
    pub(super) fn reset(&mut self) {
        self.current.clear();
    }

    pub(super) fn pick<N: Candidate>(&mut self, nodes: &[N], tier: Tier<'_>) -> Option<usize> {
        if self.current.len() != nodes.len() {
            self.current = vec![0; nodes.len()];
        }
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for i in 0..nodes.len() {
            if !tier.usable(nodes, i) {
                continue;
            }
            let w = i64::from(nodes[i].weight());
            self.current[i] += w;
            total += w;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{picks, t};
    use super::super::{Scheduler, SchedulerKind};
    use std::sync::Arc;

    #[test]
    fn nginx_smooth_order_5_1_1() {
        let mut s = Scheduler::new(SchedulerKind::Wrr, Arc::default());
        let mut nodes = vec![t(5), t(1), t(1)];
        let got = picks(&mut s, &mut nodes, 21, false);
        let one = [0, 0, 1, 0, 2, 0, 0];
        let expect: Vec<usize> = one.iter().cycle().take(21).copied().collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn equal_weights_are_plain_round_robin() {
        let mut s = Scheduler::new(SchedulerKind::Wrr, Arc::default());
        let mut nodes = vec![t(2), t(2), t(2)];
        assert_eq!(picks(&mut s, &mut nodes, 6, false), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn reset_after_weight_change() {
        let mut s = Scheduler::new(SchedulerKind::Wrr, Arc::default());
        let mut nodes = vec![t(1), t(1)];
        picks(&mut s, &mut nodes, 3, false);
        nodes[0].w = 3;
        s.reset();
        let got = picks(&mut s, &mut nodes, 8, false);
        assert_eq!(got.iter().filter(|&&i| i == 0).count(), 6);
    }
}
