//! The director: direct mode's [`Decide`]r — flow table, scheduler and neighbour table
//! working together to pick a node and its MAC for each TCP packet to the VIP.
//!
//! For a packet of a known flow, the flow's node. For an unknown flow:
//! - a SYN is a new connection: refused while distribution is disabled or the
//!   distributor drains; otherwise the scheduler picks among *eligible* nodes (Maglev
//!   hashes the 5-tuple, the others ignore it) and the flow is recorded;
//! - any other packet belongs to a connection this distributor has not seen start — after
//!   a failover, or after its entry expired. Maglev routes it to the slot's owner as long
//!   as that node may *continue* flows (not down, not in maintenance: a draining node
//!   keeps its established connections), so it lands where the other distributor sent
//!   it, and records it. Other schedulers cannot know the node: dropped (`no_flow`).
//!
//! Then the node's MAC comes from the neighbour table of the node address's family (ARP
//! for an IPv4 node, neighbour discovery for an IPv6 one; the VIP's family does not
//! matter: a node given by its IPv4 address serves an IPv6 VIP as well, at the same
//! MAC); while it is unknown the packet is
//! dropped (`no_neighbour`) and a request is scheduled — TCP retransmits the SYN.
//! Per-node connection counts, totals and bytes go to the pool's counters, as in proxy
//! mode. Pure logic: the clock is [`Director::set_now`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use pnet::util::MacAddr;

use super::arp::{NeighbourTiming, Neighbours};
use super::flow::{tcp_flags, FlowKey, FlowTable, Full, Offload};
use super::frame::{Decide, Target, TcpMeta};
use super::stats::DropReason;
use super::DirectShared;
use crate::pool::{AdminState, HealthState, Node, Stats};
use crate::scheduler::Scheduler;

/// Whether new flows are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// New flows are distributed.
    Open,
    /// Distribution is switched off (`disable`): new flows are refused.
    Disabled,
    /// Shutting down: new flows are refused, established ones finish.
    Draining,
}

/// A change to the kernel's fast path that a packet called for (`direct::offload`),
/// for the worker to carry out after the batch: the director does no IO.
#[derive(Debug, Clone)]
pub enum OffloadOp {
    /// Install `flow`: its frames go to `mac` (the node's) from now on.
    Install {
        /// The flow.
        flow: FlowKey,
        /// The node's MAC.
        mac: MacAddr,
    },
    /// Withdraw `flow`, and add what the fast path forwarded of it to `node`'s counters.
    Withdraw {
        /// The flow.
        flow: FlowKey,
        /// Its node.
        node: Arc<Node>,
    },
}

/// Flow table + scheduler + neighbours (see the module documentation).
#[derive(Debug)]
pub struct Director {
    flows: FlowTable,
    sched: Scheduler,
    nodes: Arc<[Arc<Node>]>,
    neigh: Neighbours<Ipv4Addr>,
    neigh6: Neighbours<Ipv6Addr>,
    direct: Arc<DirectShared>,
    pool_stats: Arc<Stats>,
    admission: Admission,
    now: Instant,
    offload_ops: Vec<OffloadOp>,
}

/// May a node keep receiving packets of a flow it (probably) already serves?
fn may_continue(n: &Node) -> bool {
    !n.is_removed() && n.health() != HealthState::Down && n.admin() != AdminState::Maint
}

fn ipv4_of(n: &Node) -> Option<Ipv4Addr> {
    match n.addr().ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}

fn ipv6_of(n: &Node) -> Option<Ipv6Addr> {
    match n.addr().ip() {
        IpAddr::V4(_) => None,
        IpAddr::V6(ip) => Some(ip),
    }
}

impl Director {
    /// A director over `nodes`, with its own scheduler and flow table.
    pub fn new(
        nodes: Arc<[Arc<Node>]>,
        sched: Scheduler,
        flows: FlowTable,
        timing: NeighbourTiming,
        direct: Arc<DirectShared>,
        pool_stats: Arc<Stats>,
        now: Instant,
    ) -> Self {
        let mut d = Director {
            flows,
            sched,
            nodes: Arc::from(Vec::new()),
            neigh: Neighbours::new(timing),
            neigh6: Neighbours::new(timing),
            direct,
            pool_stats,
            admission: Admission::Open,
            now,
            offload_ops: Vec::new(),
        };
        d.set_nodes(nodes);
        d
    }

    /// The fast-path changes decided since the last call, oldest first (see
    /// [`FlowTable::with_offload`]; none unless the table was built with it).
    pub fn offload_ops(&mut self) -> std::vec::Drain<'_, OffloadOp> {
        self.offload_ops.drain(..)
    }

    /// Sets the clock for the next decisions.
    #[inline]
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    /// A new pool snapshot: schedulers see the new set, the neighbour table tracks the
    /// new node IPs (keeping what it knows about the others).
    pub fn set_nodes(&mut self, nodes: Arc<[Arc<Node>]>) {
        self.neigh
            .set_targets(nodes.iter().filter_map(|n| ipv4_of(n)), self.now);
        self.neigh6
            .set_targets(nodes.iter().filter_map(|n| ipv6_of(n)), self.now);
        self.nodes = nodes;
        self.sched.reset();
    }

    /// Replaces the scheduler (the operator switched algorithms).
    pub fn set_scheduler(&mut self, sched: Scheduler) {
        self.sched = sched;
    }

    /// The scheduler in use.
    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    /// Whether new flows are accepted.
    pub fn set_admission(&mut self, a: Admission) {
        self.admission = a;
    }

    /// The flow table.
    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// The flow table, for expiry and shutdown.
    pub fn flows_mut(&mut self) -> &mut FlowTable {
        &mut self.flows
    }

    /// The IPv4 neighbour table, for ARP requests and deadlines.
    pub fn neighbours_mut(&mut self) -> &mut Neighbours<Ipv4Addr> {
        &mut self.neigh
    }

    /// The IPv6 neighbour table, for neighbour solicitations and deadlines.
    pub fn neighbours6_mut(&mut self) -> &mut Neighbours<Ipv6Addr> {
        &mut self.neigh6
    }

    /// The node for an unknown flow, or why there is none.
    fn choose(&mut self, pkt: &TcpMeta, syn: bool) -> Result<usize, DropReason> {
        let key = pkt.tuple.key();
        if syn {
            match self.admission {
                Admission::Open => {}
                Admission::Disabled => {
                    self.pool_stats
                        .refused_disabled
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(DropReason::Disabled);
                }
                Admission::Draining => return Err(DropReason::Draining),
            }
            return self.sched.pick_hashed(&self.nodes, &key).ok_or_else(|| {
                self.pool_stats.no_node.fetch_add(1, Ordering::Relaxed);
                DropReason::NoNode
            });
        }
        let nodes = &self.nodes;
        let Some(m) = self.sched.maglev_mut() else {
            return Err(DropReason::NoFlow);
        };
        m.prepare(nodes);
        let slot = m.slot(&key);
        m.walk(slot, false, |i| may_continue(&nodes[i]))
            .or_else(|| m.walk(slot, true, |i| may_continue(&nodes[i])))
            .ok_or(DropReason::NoNode)
    }

    fn target(&mut self, node: &Node, slot: usize, ip_len: u16) -> Result<Target, DropReason> {
        let mac = match node.addr().ip() {
            IpAddr::V4(ip) => {
                let m = self.neigh.lookup(ip);
                if m.is_none() {
                    self.neigh.want(ip, self.now);
                }
                m
            }
            IpAddr::V6(ip) => {
                let m = self.neigh6.lookup(ip);
                if m.is_none() {
                    self.neigh6.want(ip, self.now);
                }
                m
            }
        };
        match mac {
            Some(mac) => {
                node.counters.packets_in.fetch_add(1, Ordering::Relaxed);
                node.counters
                    .bytes_in
                    .fetch_add(u64::from(ip_len), Ordering::Relaxed);
                self.pool_stats
                    .bytes_in
                    .fetch_add(u64::from(ip_len), Ordering::Relaxed);
                Ok(Target { node: slot, mac })
            }
            None => Err(DropReason::NoNeighbour),
        }
    }
}

impl Decide for Director {
    fn decide(&mut self, pkt: &TcpMeta) -> Result<Target, DropReason> {
        let now = self.now;
        if let Some(t) = self.flows.touch(&pkt.tuple, pkt.flags, now) {
            let (node, slot, offload) = (Arc::clone(t.node), t.slot, t.offload);
            let target = self.target(&node, slot, pkt.ip_len);
            if let Some(op) = offload {
                let flow = pkt.tuple;
                match (op, &target) {
                    (Offload::Install, Ok(t)) => self
                        .offload_ops
                        .push(OffloadOp::Install { flow, mac: t.mac }),
                    // No MAC to install: the flow goes on through here (the table
                    // thinks it installed; expiry finds it absent and ends it as usual).
                    (Offload::Install, Err(_)) => {}
                    (Offload::Withdraw, _) => {
                        self.offload_ops.push(OffloadOp::Withdraw { flow, node })
                    }
                }
            }
            return target;
        }
        let syn = pkt.flags & tcp_flags::SYN != 0 && pkt.flags & tcp_flags::ACK == 0;
        let idx = self.choose(pkt, syn)?;
        // choose() returns positions of the current snapshot: in bounds.
        let node = Arc::clone(&self.nodes[idx]);
        match self
            .flows
            .insert(pkt.tuple, Arc::clone(&node), idx, pkt.flags, now)
        {
            Ok(evicted) => {
                self.direct
                    .stats
                    .flows_created
                    .fetch_add(1, Ordering::Relaxed);
                if evicted > 0 {
                    self.direct
                        .stats
                        .flows_evicted
                        .fetch_add(evicted, Ordering::Relaxed);
                    self.direct
                        .stats
                        .flows_removed
                        .fetch_add(evicted, Ordering::Relaxed);
                }
            }
            Err(Full) if self.sched.maglev_mut().is_some() => {
                self.direct.stats.stateless.fetch_add(1, Ordering::Relaxed);
            }
            Err(Full) => return Err(DropReason::TableFull),
        }
        // The flows gauge is kept by the worker (a sum over workers), not stored here.
        self.target(&node, idx, pkt.ip_len)
    }

    fn learn(&mut self, ip: IpAddr, mac: MacAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => self.neigh.learn(ip, mac, self.now),
            IpAddr::V6(ip) => self.neigh6.learn(ip, mac, self.now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::flow::tcp_flags::*;
    use crate::direct::flow::{FiveTuple, FiveTuple6, FlowKey, FlowState, Timeouts};
    use crate::pool::NodeSpec;
    use crate::scheduler::{Maglev, SchedulerKind};

    const MACS: [MacAddr; 3] = [
        MacAddr(2, 0, 0, 0, 0, 1),
        MacAddr(2, 0, 0, 0, 0, 2),
        MacAddr(2, 0, 0, 0, 0, 3),
    ];

    fn nodes(n: u8) -> Arc<[Arc<Node>]> {
        (1..=n)
            .map(|i| {
                Arc::new(Node::new(NodeSpec {
                    addr: ([10, 0, 0, i], 80).into(),
                    weight: 1,
                    backup: false,
                    maxconn: 0,
                    agent: false,
                }))
            })
            .collect::<Vec<_>>()
            .into()
    }

    fn director(kind: SchedulerKind, nodes: Arc<[Arc<Node>]>, cap: usize) -> Director {
        let now = Instant::now();
        let stats = Arc::new(Stats::default());
        let mut d = Director::new(
            nodes.clone(),
            Scheduler::new(kind, Arc::default()),
            FlowTable::new(cap, Timeouts::default(), Arc::clone(&stats)),
            NeighbourTiming::default(),
            Arc::default(),
            stats,
            now,
        );
        for (i, n) in nodes.iter().enumerate() {
            assert!(d.learn(n.addr().ip(), MACS[i]));
        }
        d
    }

    fn pkt(sport: u16, flags: u8) -> TcpMeta {
        TcpMeta {
            tuple: FlowKey::V4(FiveTuple {
                src: Ipv4Addr::new(192, 0, 2, 7),
                dst: Ipv4Addr::new(10, 0, 0, 100),
                sport,
                dport: 80,
                proto: 6,
            }),
            flags,
            ip_len: 60,
        }
    }

    #[test]
    fn flow_sticks_to_its_node_and_counts() {
        let ns = nodes(3);
        let mut d = director(SchedulerKind::Rr, ns.clone(), 16);
        let a = d.decide(&pkt(1, SYN)).unwrap();
        let b = d.decide(&pkt(2, SYN)).unwrap();
        assert_ne!(a.node, b.node, "round-robin");
        for _ in 0..5 {
            assert_eq!(d.decide(&pkt(1, ACK)).unwrap(), a);
        }
        assert_eq!(a.mac, MACS[a.node]);
        assert_eq!(ns[a.node].active(), 1);
        assert_eq!(ns[a.node].counters.bytes_in.load(Ordering::Relaxed), 6 * 60);
        assert_eq!(ns[a.node].counters.packets_in.load(Ordering::Relaxed), 6);
        d.decide(&pkt(1, FIN | ACK)).unwrap();
        assert_eq!(ns[a.node].active(), 0);
        assert_eq!(d.flows().state(&pkt(1, 0).tuple), Some(FlowState::Closing));
    }

    #[test]
    fn unknown_non_syn_dropped_unless_maglev() {
        let mut d = director(SchedulerKind::Rr, nodes(3), 16);
        assert_eq!(d.decide(&pkt(9, ACK)), Err(DropReason::NoFlow));
        let mut m = director(SchedulerKind::Maglev, nodes(3), 16);
        let t = m.decide(&pkt(9, ACK)).unwrap();
        assert_eq!(m.flows().state(&pkt(9, 0).tuple), Some(FlowState::Open));
        // Same answer as a fresh distributor picking the SYN of that flow.
        let mut other = director(SchedulerKind::Maglev, nodes(3), 16);
        assert_eq!(other.decide(&pkt(9, SYN)).unwrap(), t);
    }

    #[test]
    fn maglev_mid_flow_packets_reach_draining_owner_but_not_down_one() {
        let ns = nodes(3);
        let mut probe = Maglev::new(0);
        probe.prepare(&ns);
        // A flow key whose Maglev owner is node 0.
        let sport = (0u16..)
            .find(|&p| probe.owner(probe.slot(&pkt(p, 0).tuple.key())) == Some(0))
            .unwrap();
        ns[0].set_admin(AdminState::Drain);
        let mut d = director(SchedulerKind::Maglev, ns.clone(), 16);
        assert_eq!(
            d.decide(&pkt(sport, ACK)).unwrap().node,
            0,
            "established flow continues"
        );
        let mut fresh = director(SchedulerKind::Maglev, ns.clone(), 16);
        assert_ne!(
            fresh.decide(&pkt(sport, SYN)).unwrap().node,
            0,
            "no new flow"
        );
        ns[0].set_admin(AdminState::Ready);
        ns[0].set_health(HealthState::Down);
        let mut after = director(SchedulerKind::Maglev, ns.clone(), 16);
        assert_ne!(after.decide(&pkt(sport, ACK)).unwrap().node, 0);
    }

    #[test]
    fn admission_and_no_node() {
        let ns = nodes(2);
        let mut d = director(SchedulerKind::Rr, ns.clone(), 16);
        d.decide(&pkt(1, SYN)).unwrap();
        d.set_admission(Admission::Draining);
        assert_eq!(d.decide(&pkt(2, SYN)), Err(DropReason::Draining));
        assert!(d.decide(&pkt(1, ACK)).is_ok(), "established flows finish");
        d.set_admission(Admission::Disabled);
        assert_eq!(d.decide(&pkt(3, SYN)), Err(DropReason::Disabled));
        d.set_admission(Admission::Open);
        for n in ns.iter() {
            n.set_health(HealthState::Down);
        }
        assert_eq!(d.decide(&pkt(4, SYN)), Err(DropReason::NoNode));
    }

    #[test]
    fn unknown_neighbour_drops_and_asks() {
        let ns = nodes(1);
        let now = Instant::now();
        let stats = Arc::new(Stats::default());
        let mut d = Director::new(
            ns.clone(),
            Scheduler::new(SchedulerKind::Rr, Arc::default()),
            FlowTable::new(4, Timeouts::default(), Arc::clone(&stats)),
            NeighbourTiming::default(),
            Arc::default(),
            stats,
            now,
        );
        let mut due = Vec::new();
        d.neighbours_mut().due(now, &mut due);
        assert_eq!(due.len(), 1);
        assert_eq!(d.decide(&pkt(1, SYN)), Err(DropReason::NoNeighbour));
        assert_eq!(
            d.flows().len(),
            1,
            "the flow is kept for the retransmitted SYN"
        );
        assert_eq!(d.neighbours_mut().next_deadline(), Some(now));
        d.learn(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), MACS[0]);
        assert_eq!(d.decide(&pkt(1, SYN)).unwrap().mac, MACS[0]);
    }

    fn pkt6(sport: u16, flags: u8) -> TcpMeta {
        TcpMeta {
            tuple: FlowKey::V6(FiveTuple6 {
                src: "2001:db8::7".parse().unwrap(),
                dst: "fd99::100".parse().unwrap(),
                sport,
                dport: 80,
                proto: 6,
            }),
            flags,
            ip_len: 80,
        }
    }

    #[test]
    fn ipv6_flows_go_to_ipv4_and_ipv6_nodes_resolved_by_their_own_family() {
        // One node given by an IPv4 address, one by an IPv6 one: both serve v6 flows.
        let ns: Arc<[Arc<Node>]> = ["10.0.0.1:80", "[fd99::21]:80"]
            .iter()
            .map(|a| {
                Arc::new(Node::new(NodeSpec {
                    addr: a.parse().unwrap(),
                    weight: 1,
                    backup: false,
                    maxconn: 0,
                    agent: false,
                }))
            })
            .collect::<Vec<_>>()
            .into();
        let now = Instant::now();
        let stats = Arc::new(Stats::default());
        let mut d = Director::new(
            ns.clone(),
            Scheduler::new(SchedulerKind::Rr, Arc::default()),
            FlowTable::new(8, Timeouts::default(), Arc::clone(&stats)),
            NeighbourTiming::default(),
            Arc::default(),
            stats,
            now,
        );
        let (mut due4, mut due6) = (Vec::new(), Vec::new());
        d.neighbours_mut().due(now, &mut due4);
        d.neighbours6_mut().due(now, &mut due6);
        assert_eq!(due4, vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(due6, vec!["fd99::21".parse::<Ipv6Addr>().unwrap()]);
        assert!(d.learn("10.0.0.1".parse().unwrap(), MACS[0]));
        assert!(d.learn("fd99::21".parse().unwrap(), MACS[1]));
        assert!(!d.learn("fd99::99".parse().unwrap(), MACS[2]), "not a node");
        let a = d.decide(&pkt6(1, SYN)).unwrap();
        let b = d.decide(&pkt6(2, SYN)).unwrap();
        assert_ne!(a.node, b.node);
        assert_eq!(a.mac, MACS[a.node]);
        assert_eq!(b.mac, MACS[b.node]);
        assert_eq!(d.decide(&pkt6(1, ACK)).unwrap(), a, "sticks");
        // A v4 flow with the same ports is another flow.
        assert_eq!(d.flows().state(&pkt(1, 0).tuple), None);
        assert_eq!(d.flows().state(&pkt6(1, 0).tuple), Some(FlowState::Open));
    }

    #[test]
    fn full_table_maglev_goes_stateless_others_refuse() {
        let mut d = director(SchedulerKind::Rr, nodes(2), 1);
        d.decide(&pkt(1, SYN)).unwrap();
        d.decide(&pkt(1, ACK)).unwrap();
        assert_eq!(d.decide(&pkt(2, SYN)), Err(DropReason::TableFull));
        let mut m = director(SchedulerKind::Maglev, nodes(2), 1);
        m.decide(&pkt(1, SYN)).unwrap();
        m.decide(&pkt(1, ACK)).unwrap();
        let t = m.decide(&pkt(2, SYN)).unwrap();
        assert_eq!(m.decide(&pkt(2, ACK)).unwrap(), t, "stateless, same node");
        assert_eq!(m.direct.stats.stateless.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn least_connections_counts_from_the_flow_table() {
        let ns = nodes(2);
        let mut d = director(SchedulerKind::Lc, ns.clone(), 16);
        let first = d.decide(&pkt(1, SYN)).unwrap().node;
        // Node `first` holds one flow: the next three go 1 to the other, then alternate.
        let next = d.decide(&pkt(2, SYN)).unwrap().node;
        assert_ne!(first, next);
        d.decide(&pkt(1, RST)).unwrap();
        assert_eq!(ns[first].active(), 0);
        assert_eq!(d.decide(&pkt(3, SYN)).unwrap().node, first);
    }

    #[test]
    fn offload_ops_name_the_node_s_mac_then_the_node() {
        let ns = nodes(2);
        let mut d = director(SchedulerKind::Rr, ns.clone(), 16);
        d.flows = FlowTable::new(16, Default::default(), Arc::default()).with_offload(2);
        let first = d.decide(&pkt(1, SYN)).unwrap();
        d.decide(&pkt(1, ACK)).unwrap();
        assert_eq!(d.offload_ops().count(), 0, "one open packet");
        d.decide(&pkt(1, ACK)).unwrap();
        let ops: Vec<OffloadOp> = d.offload_ops().collect();
        match &ops[..] {
            [OffloadOp::Install { flow, mac }] => {
                assert_eq!(*mac, MACS[first.node]);
                assert_eq!(*flow, pkt(1, 0).tuple);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.offload_ops().count(), 0, "drained");
        d.decide(&pkt(1, FIN | ACK)).unwrap();
        match &d.offload_ops().collect::<Vec<_>>()[..] {
            [OffloadOp::Withdraw { flow, node }] => {
                assert_eq!(flow.sport(), 1);
                assert!(Arc::ptr_eq(node, &ns[first.node]));
            }
            other => panic!("{other:?}"),
        }
    }
}
