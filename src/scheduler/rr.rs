//! Round-robin: usable nodes in turn, exact across workers.
//!
//! The position is one atomic counter shared by all workers (one `fetch_add` per new
//! flow), so N workers together produce one rotation instead of N interleaved ones.
//! The counter indexes the usable nodes of the chosen tier, so a node that is skipped
//! does not give its turn to its neighbour twice.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Candidate, SchedulerShared, Tier};

/// Round-robin scheduler.
#[derive(Debug)]
pub struct RoundRobin {
    shared: Arc<SchedulerShared>,
}

impl RoundRobin {
    /// A round-robin scheduler over the shared cursor.
    pub fn new(shared: Arc<SchedulerShared>) -> Self {
        RoundRobin { shared }
    }

    pub(super) fn pick<N: Candidate>(&mut self, nodes: &[N], tier: Tier<'_>) -> Option<usize> {
        let usable = (0..nodes.len()).filter(|&i| tier.usable(nodes, i)).count();
        if usable == 0 {
            return None;
        }
        let nth = self.shared.cursor.fetch_add(1, Ordering::Relaxed) % usable;
        (0..nodes.len()).filter(|&i| tier.usable(nodes, i)).nth(nth)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{picks, t};
    use super::super::{Scheduler, SchedulerKind};
    use std::sync::Arc;

    #[test]
    fn exact_sequence() {
        let mut s = Scheduler::new(SchedulerKind::Rr, Arc::default());
        let mut nodes = vec![t(1), t(5), t(1)];
        let got = picks(&mut s, &mut nodes, 9, false);
        assert_eq!(got, vec![0, 1, 2, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn skipped_node_does_not_double_its_neighbour() {
        let mut s = Scheduler::new(SchedulerKind::Rr, Arc::default());
        let mut nodes = vec![t(1), t(1), t(1)];
        nodes[1].ok = false;
        let got = picks(&mut s, &mut nodes, 6, false);
        assert_eq!(got, vec![0, 2, 0, 2, 0, 2]);
    }

    #[test]
    fn shared_cursor_makes_workers_one_rotation() {
        let shared = Arc::default();
        let mut a = Scheduler::new(SchedulerKind::Rr, Arc::clone(&shared));
        let mut b = Scheduler::new(SchedulerKind::Rr, shared);
        let nodes = vec![t(1), t(1), t(1)];
        let seq: Vec<usize> = (0..6)
            .map(|i| {
                if i % 2 == 0 {
                    a.pick(&nodes, &[])
                } else {
                    b.pick(&nodes, &[])
                }
                .unwrap()
            })
            .collect();
        assert_eq!(seq, vec![0, 1, 2, 0, 1, 2]);
    }
}
