//! The flow table: which node each client TCP connection goes to.
//!
//! Keyed by the 5-tuple ([`FlowKey`]: IPv4 or IPv6) of the client → VIP direction (the only direction a direct-mode
//! distributor sees). An entry is created on a SYN (and, with Maglev, on any packet of an
//! unknown flow — the director decides that, not this table) and moves through three
//! states, each with its own timeout measured from the flow's last packet:
//!
//! | state      | entered on                         | expires after        |
//! |------------|------------------------------------|----------------------|
//! | `HalfOpen` | a SYN                              | `Timeouts::half_open` |
//! | `Open`     | the first packet without SYN       | `Timeouts::idle`      |
//! | `Closing`  | a FIN or RST from the client       | `Timeouts::linger`    |
//!
//! The linger keeps the last ACKs of a close (and any half-closed transfer, whose ACKs
//! refresh it) on the same node. Because a timeout is constant per state, each state's
//! entries form a list in last-packet order: touching moves an entry to the tail, expiry
//! pops from the head — O(1) per packet, no scan. Entries live in a pre-allocated slab and
//! the index is a pre-sized hash map, so a packet never allocates.
//!
//! **When the table is full** (`capacity` entries), a new flow first evicts the oldest
//! `Closing` entry, then the oldest `HalfOpen` one (a SYN flood fills the table with
//! half-open entries; evicting them is the SYN-cache answer, and a real client's next
//! packet still finds its node under Maglev). If every entry is `Open`, the new flow is
//! refused with [`Full`]: established connections are never broken to make room. The
//! director then routes Maglev packets statelessly (same node, no entry) and drops the
//! SYN for the other schedulers (counted as `table_full`).
//!
//! Least-connections reads each node's `counters.active`, which this table keeps equal to
//! the number of its `HalfOpen` + `Open` entries; the pool-wide `Stats::active` likewise.
//! Pure logic: time comes in as `now`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::pool::{Node, Stats};

/// TCP flag bits (RFC 9293 §3.1).
pub mod tcp_flags {
    /// FIN: no more data from sender.
    pub const FIN: u8 = 0x01;
    /// SYN: synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// RST: reset the connection.
    pub const RST: u8 = 0x04;
    /// ACK: acknowledgment field significant.
    pub const ACK: u8 = 0x10;
}

/// An IPv4 TCP flow as seen arriving at the VIP: client address and port, VIP and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// Client address.
    pub src: Ipv4Addr,
    /// Destination (the VIP).
    pub dst: Ipv4Addr,
    /// Client port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol number (6 for TCP).
    pub proto: u8,
}

/// An IPv6 TCP flow as seen arriving at the VIP (same fields as [`FiveTuple`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple6 {
    /// Client address.
    pub src: Ipv6Addr,
    /// Destination (the VIP).
    pub dst: Ipv6Addr,
    /// Client port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Next header of the TCP payload (6).
    pub proto: u8,
}

/// The flow table's key: one flow of either family.
///
/// An enum rather than one struct with `IpAddr` fields: a v4 key cannot carry a v6
/// address, and [`Hash`] is written by hand so a v4 key hashes exactly as the v4-only
/// key did (no discriminant fed to the hasher): the IPv4 path costs what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKey {
    /// An IPv4 flow.
    V4(FiveTuple),
    /// An IPv6 flow.
    V6(FiveTuple6),
}

impl Hash for FlowKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Eq tells the families apart; the hash need not (a v4/v6 collision only costs a
        // comparison).
        match self {
            FlowKey::V4(t) => t.hash(state),
            FlowKey::V6(t) => t.hash(state),
        }
    }
}

impl FiveTuple {
    /// The bytes Maglev hashes for this flow ([`FlowKey::key`]).
    pub fn key(&self) -> KeyBytes {
        FlowKey::V4(*self).key()
    }
}

impl From<FiveTuple> for FlowKey {
    fn from(t: FiveTuple) -> FlowKey {
        FlowKey::V4(t)
    }
}

impl From<FiveTuple6> for FlowKey {
    fn from(t: FiveTuple6) -> FlowKey {
        FlowKey::V6(t)
    }
}

/// The bytes Maglev hashes for a flow: 13 for IPv4, 37 for IPv6 (see [`FlowKey::key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyBytes {
    buf: [u8; 37],
    len: u8,
}

impl std::ops::Deref for KeyBytes {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl FlowKey {
    /// The bytes Maglev hashes: src, dst, sport, dport (big-endian), proto — 13 bytes for
    /// IPv4 (the layout of every earlier version, so a mixed-version pair agrees), 37 for
    /// IPv6. Every distributor must use this exact layout to agree on the mapping.
    #[inline]
    pub fn key(&self) -> KeyBytes {
        let mut k = KeyBytes {
            buf: [0u8; 37],
            len: 0,
        };
        let (a, rest) = match self {
            FlowKey::V4(t) => {
                k.buf[0..4].copy_from_slice(&t.src.octets());
                k.buf[4..8].copy_from_slice(&t.dst.octets());
                (8, (t.sport, t.dport, t.proto))
            }
            FlowKey::V6(t) => {
                k.buf[0..16].copy_from_slice(&t.src.octets());
                k.buf[16..32].copy_from_slice(&t.dst.octets());
                (32, (t.sport, t.dport, t.proto))
            }
        };
        k.buf[a..a + 2].copy_from_slice(&rest.0.to_be_bytes());
        k.buf[a + 2..a + 4].copy_from_slice(&rest.1.to_be_bytes());
        k.buf[a + 4] = rest.2;
        k.len = (a + 5) as u8;
        k
    }

    /// The client's port.
    pub fn sport(&self) -> u16 {
        match self {
            FlowKey::V4(t) => t.sport,
            FlowKey::V6(t) => t.sport,
        }
    }

    /// The VIP's port.
    pub fn dport(&self) -> u16 {
        match self {
            FlowKey::V4(t) => t.dport,
            FlowKey::V6(t) => t.dport,
        }
    }
}

/// Per-state timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A flow that has only sent SYNs.
    pub half_open: Duration,
    /// An established flow without packets.
    pub idle: Duration,
    /// After the client's FIN or RST.
    pub linger: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            half_open: Duration::from_secs(30),
            idle: Duration::from_secs(300),
            linger: Duration::from_secs(4),
        }
    }
}

/// State of a flow (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// Only SYNs seen.
    HalfOpen = 0,
    /// Established.
    Open = 1,
    /// FIN or RST seen; lingering.
    Closing = 2,
}

impl FlowState {
    fn counts_as_active(self) -> bool {
        self != FlowState::Closing
    }
    /// The state after a packet with `flags`.
    fn next(self, flags: u8) -> FlowState {
        use tcp_flags::*;
        if flags & (FIN | RST) != 0 {
            FlowState::Closing
        } else if self == FlowState::HalfOpen && flags & SYN == 0 {
            FlowState::Open
        } else {
            self
        }
    }
}

/// The table is full of established flows: the new flow was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

const NIL: usize = usize::MAX;

/// A flow's per-packet state. Its key is kept apart, in [`FlowTable::keys`]: it is only
/// read to remove the entry from the index, and an IPv6 key (40 bytes) inside every
/// entry would make the entries an IPv4 packet touches (its own and its list
/// neighbours') larger than before IPv6 existed.
#[derive(Debug)]
struct Entry {
    node: Arc<Node>,
    /// The node's position in the pool snapshot when the flow was created.
    slot: usize,
    state: FlowState,
    /// Packets seen here while `Open` (saturating), for [`FlowTable::with_offload`].
    open_packets: u32,
    /// Installed in the kernel's fast path (see [`Offload`]).
    offloaded: bool,
    last: Instant,
    prev: usize,
    next: usize,
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: usize,
    tail: usize,
}

/// What [`FlowTable::expire`] and removals report, for counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// Entries removed.
    pub count: u64,
}

/// The offload change `e`'s packet calls for (and records it in `e`).
fn offload_step(e: &mut Entry, after: Option<u32>) -> Option<Offload> {
    let after = after?;
    if e.state == FlowState::Open && !e.offloaded && e.open_packets >= after {
        e.offloaded = true;
        Some(Offload::Install)
    } else if e.state == FlowState::Closing && e.offloaded {
        e.offloaded = false;
        Some(Offload::Withdraw)
    } else {
        None
    }
}

/// The flow table (see the module documentation).
#[derive(Debug)]
pub struct FlowTable {
    index: HashMap<FlowKey, usize>,
    slab: Slab<Entry>,
    /// The key of the entry at each slab position (slab keys stay below `capacity`).
    keys: Vec<FlowKey>,
    lists: [List; 3],
    capacity: usize,
    timeouts: Timeouts,
    stats: Arc<Stats>,
    /// Offload a flow after this many packets seen here while open (`None`: never).
    offload_after: Option<u32>,
}

/// A change a packet made to a flow's place in the kernel's fast path
/// (`direct::offload`): the caller installs or withdraws the flow there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// The flow is established and busy enough: install it.
    Install,
    /// The flow is closing (FIN or RST): withdraw it, so the rest of the close passes
    /// here and lingers on the same node.
    Withdraw,
}

/// What [`FlowTable::touch`] found.
#[derive(Debug)]
pub struct Touched<'a> {
    /// The flow's node.
    pub node: &'a Arc<Node>,
    /// The node's snapshot position at the flow's creation.
    pub slot: usize,
    /// Whether the caller must install or withdraw the flow in the fast path now.
    pub offload: Option<Offload>,
}

impl FlowTable {
    /// A table for up to `capacity` flows (at least 1), memory reserved up front.
    /// `stats` receives the pool-wide open-flow count.
    pub fn new(capacity: usize, timeouts: Timeouts, stats: Arc<Stats>) -> Self {
        let capacity = capacity.max(1);
        FlowTable {
            index: HashMap::with_capacity(capacity),
            slab: Slab::with_capacity(capacity),
            keys: vec![
                FlowKey::V4(FiveTuple {
                    src: Ipv4Addr::UNSPECIFIED,
                    dst: Ipv4Addr::UNSPECIFIED,
                    sport: 0,
                    dport: 0,
                    proto: 0,
                });
                capacity
            ],
            lists: [List {
                head: NIL,
                tail: NIL,
            }; 3],
            capacity,
            timeouts,
            stats,
            offload_after: None,
        }
    }

    /// Asks [`FlowTable::touch`] to report [`Offload::Install`] for a flow once
    /// it has been open for `after` packets (at least 1), and [`Offload::Withdraw`] when
    /// an installed flow starts closing.
    pub fn with_offload(mut self, after: u32) -> Self {
        self.offload_after = Some(after.max(1));
        self
    }

    /// Flows in the table, all states.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Is the table empty?
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// State of a flow, if known (tests, diagnostics).
    pub fn state(&self, t: &FlowKey) -> Option<FlowState> {
        self.index.get(t).map(|&k| self.slab[k].state)
    }

    /// A packet of a known flow: updates its state from `flags` and its last-packet
    /// time, and returns its node and the node's snapshot position at creation.
    /// `None`: unknown flow — or a SYN on a closing flow, which is the client reusing
    /// the tuple for a new connection: the old entry is removed so the caller picks
    /// again.
    pub fn touch(&mut self, t: &FlowKey, flags: u8, now: Instant) -> Option<Touched<'_>> {
        let k = *self.index.get(t)?;
        let old = self.slab[k].state;
        if old == FlowState::Closing && flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0 {
            self.remove_key(k);
            return None;
        }
        let new = old.next(flags);
        self.unlink(k);
        let after = self.offload_after;
        let offload = {
            let e = &mut self.slab[k];
            e.state = new;
            e.last = now;
            if new == FlowState::Open {
                e.open_packets = e.open_packets.saturating_add(1);
            }
            offload_step(e, after)
        };
        self.link_tail(k);
        if old.counts_as_active() && !new.counts_as_active() {
            self.count_active(k, false);
        }
        let e = &self.slab[k];
        Some(Touched {
            node: &e.node,
            slot: e.slot,
            offload,
        })
    }

    /// Records a new flow to `node` (at position `slot` of the pool snapshot) in the
    /// state `flags` imply (a SYN: half-open; anything else: open; FIN/RST: closing).
    /// Evicts per the module's policy when full. Returns how many entries were evicted,
    /// or [`Full`].
    pub fn insert(
        &mut self,
        t: FlowKey,
        node: Arc<Node>,
        slot: usize,
        flags: u8,
        now: Instant,
    ) -> Result<u64, Full> {
        if self.index.contains_key(&t) {
            self.remove(&t);
        }
        let mut evicted = 0;
        if self.slab.len() >= self.capacity {
            let victim = [FlowState::Closing, FlowState::HalfOpen]
                .into_iter()
                .map(|s| self.lists[s as usize].head)
                .find(|&h| h != NIL)
                .ok_or(Full)?;
            self.remove_key(victim);
            evicted = 1;
        }
        let state = if flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0 {
            FlowState::HalfOpen
        } else {
            FlowState::Open.next(flags)
        };
        node.counters.total.fetch_add(1, Ordering::Relaxed);
        self.stats.total.fetch_add(1, Ordering::Relaxed);
        let k = self.slab.insert(Entry {
            node,
            slot,
            state,
            open_packets: u32::from(state == FlowState::Open),
            offloaded: false,
            last: now,
            prev: NIL,
            next: NIL,
        });
        // The slab never holds more than `capacity` entries (a full table evicts first),
        // so its keys stay below `capacity`: the slot exists.
        if let Some(slot) = self.keys.get_mut(k) {
            *slot = t;
        }
        self.index.insert(t, k);
        self.link_tail(k);
        if state.counts_as_active() {
            self.count_active(k, true);
        }
        Ok(evicted)
    }

    /// Removes a flow; returns whether it existed.
    pub fn remove(&mut self, t: &FlowKey) -> bool {
        match self.index.get(t) {
            Some(&k) => {
                self.remove_key(k);
                true
            }
            None => false,
        }
    }

    /// Removes up to `budget` flows whose state's timeout has passed at `now`; returns
    /// how many were removed. Bounded so one call never stalls the data plane.
    pub fn expire(&mut self, now: Instant, budget: usize) -> usize {
        self.expire_offloaded(now, budget, &mut |_, _| false)
    }

    /// [`FlowTable::expire`] for a table whose flows may be installed in the kernel's
    /// fast path, where their packets no longer pass here: for each installed flow whose
    /// time is up, `still_busy(key, node)` says whether the fast path saw it within its
    /// timeout (then it stays, as if touched `now`; so it ends at most twice its timeout
    /// after its last packet) or not (then it is removed here, and `still_busy` has
    /// withdrawn it there). Each such question counts against `budget`.
    pub fn expire_offloaded(
        &mut self,
        now: Instant,
        budget: usize,
        still_busy: &mut dyn FnMut(&FlowKey, &Arc<Node>) -> bool,
    ) -> usize {
        let mut n = 0;
        let mut asked = 0;
        for s in [FlowState::HalfOpen, FlowState::Open, FlowState::Closing] {
            let timeout = match s {
                FlowState::HalfOpen => self.timeouts.half_open,
                FlowState::Open => self.timeouts.idle,
                FlowState::Closing => self.timeouts.linger,
            };
            while n + asked < budget {
                let h = self.lists[s as usize].head;
                if h == NIL || now.saturating_duration_since(self.slab[h].last) < timeout {
                    break;
                }
                if self.slab[h].offloaded {
                    asked += 1;
                    if let Some(key) = self.keys.get(h).copied() {
                        if still_busy(&key, &self.slab[h].node) {
                            self.unlink(h);
                            self.slab[h].last = now;
                            self.link_tail(h);
                            continue;
                        }
                    }
                }
                self.remove_key(h);
                n += 1;
            }
        }
        n
    }

    /// Earliest time at which some flow expires, if any.
    pub fn next_expiry(&self) -> Option<Instant> {
        [FlowState::HalfOpen, FlowState::Open, FlowState::Closing]
            .into_iter()
            .filter_map(|s| {
                let h = self.lists[s as usize].head;
                (h != NIL).then(|| {
                    self.slab[h].last
                        + match s {
                            FlowState::HalfOpen => self.timeouts.half_open,
                            FlowState::Open => self.timeouts.idle,
                            FlowState::Closing => self.timeouts.linger,
                        }
                })
            })
            .min()
    }

    /// The flows installed in the fast path, with their nodes.
    pub fn offloaded(&self) -> impl Iterator<Item = (FlowKey, &Arc<Node>)> + '_ {
        self.slab
            .iter()
            .filter(|(_, e)| e.offloaded)
            .filter_map(|(k, e)| Some((*self.keys.get(k)?, &e.node)))
    }

    /// Removes every flow (shutdown); returns how many were open or half-open.
    pub fn clear(&mut self) -> u64 {
        let keys: Vec<usize> = self.slab.iter().map(|(k, _)| k).collect();
        let mut active = 0;
        for k in keys {
            if self.slab[k].state.counts_as_active() {
                active += 1;
            }
            self.remove_key(k);
        }
        active
    }

    fn remove_key(&mut self, k: usize) {
        self.unlink(k);
        let e = self.slab.remove(k);
        if let Some(t) = self.keys.get(k) {
            self.index.remove(t);
        }
        if e.state.counts_as_active() {
            e.node.counters.active.fetch_sub(1, Ordering::Relaxed);
            self.stats.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn count_active(&self, k: usize, up: bool) {
        let node = &self.slab[k].node;
        if up {
            node.counters.active.fetch_add(1, Ordering::Relaxed);
            self.stats.active.fetch_add(1, Ordering::Relaxed);
        } else {
            node.counters.active.fetch_sub(1, Ordering::Relaxed);
            self.stats.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn unlink(&mut self, k: usize) {
        let (prev, next, s) = {
            let e = &self.slab[k];
            (e.prev, e.next, e.state as usize)
        };
        if prev == NIL {
            self.lists[s].head = next;
        } else {
            self.slab[prev].next = next;
        }
        if next == NIL {
            self.lists[s].tail = prev;
        } else {
            self.slab[next].prev = prev;
        }
        let e = &mut self.slab[k];
        e.prev = NIL;
        e.next = NIL;
    }

    fn link_tail(&mut self, k: usize) {
        let s = self.slab[k].state as usize;
        let tail = self.lists[s].tail;
        self.slab[k].prev = tail;
        self.slab[k].next = NIL;
        if tail == NIL {
            self.lists[s].head = k;
        } else {
            self.slab[tail].next = k;
        }
        self.lists[s].tail = k;
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_flags::*;
    use super::*;
    use crate::pool::NodeSpec;

    fn node(last: u8) -> Arc<Node> {
        Arc::new(Node::new(NodeSpec {
            addr: ([10, 0, 0, last], 80).into(),
            weight: 1,
            backup: false,
            maxconn: 0,
            agent: false,
        }))
    }

    fn tuple(sport: u16) -> FlowKey {
        FlowKey::V4(FiveTuple {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(10, 0, 0, 100),
            sport,
            dport: 80,
            proto: 6,
        })
    }

    fn tuple6(sport: u16) -> FlowKey {
        FlowKey::V6(FiveTuple6 {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::100".parse().unwrap(),
            sport,
            dport: 80,
            proto: 6,
        })
    }

    fn table(cap: usize) -> (FlowTable, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        (
            FlowTable::new(cap, Timeouts::default(), Arc::clone(&stats)),
            stats,
        )
    }

    #[test]
    fn key_layout_is_fixed() {
        assert_eq!(
            &*tuple(0x1234).key(),
            &[192, 0, 2, 1, 10, 0, 0, 100, 0x12, 0x34, 0, 80, 6]
        );
        let v6 = tuple6(0x1234);
        let k = v6.key();
        assert_eq!(k.len(), 37);
        assert_eq!(&k[..2], &[0x20, 0x01]);
        assert_eq!(&k[16..18], &[0x20, 0x01]);
        assert_eq!(&k[31..], &[0x00, 0x12, 0x34, 0, 80, 6]);
        assert_eq!(k[15], 1);
    }

    #[test]
    fn v4_and_v6_flows_are_distinct_entries() {
        let (mut t, _) = table(8);
        let n = node(1);
        let now = Instant::now();
        let v6 = tuple6(1);
        // The same ports and a v4-mapped-looking address must not meet the v4 flow.
        t.insert(tuple(1), Arc::clone(&n), 0, SYN, now).unwrap();
        assert_eq!(t.state(&v6), None);
        t.insert(v6, Arc::clone(&n), 0, ACK, now).unwrap();
        assert_eq!(t.state(&v6), Some(FlowState::Open));
        assert_eq!(t.state(&tuple(1)), Some(FlowState::HalfOpen));
        assert_eq!(t.len(), 2);
        assert!(t.remove(&v6));
        assert_eq!(t.state(&v6), None);
    }

    #[test]
    fn lifecycle_and_active_counts() {
        let (mut t, stats) = table(8);
        let n = node(1);
        let now = Instant::now();
        t.insert(tuple(1), Arc::clone(&n), 0, SYN, now).unwrap();
        assert_eq!(t.state(&tuple(1)), Some(FlowState::HalfOpen));
        assert_eq!(n.active(), 1);
        assert_eq!(stats.active.load(Ordering::Relaxed), 1);
        // Retransmitted SYN: still half-open.
        t.touch(&tuple(1), SYN, now).unwrap();
        assert_eq!(t.state(&tuple(1)), Some(FlowState::HalfOpen));
        t.touch(&tuple(1), ACK, now).unwrap();
        assert_eq!(t.state(&tuple(1)), Some(FlowState::Open));
        assert_eq!(n.active(), 1);
        t.touch(&tuple(1), FIN | ACK, now).unwrap();
        assert_eq!(t.state(&tuple(1)), Some(FlowState::Closing));
        assert_eq!(n.active(), 0, "closing flows do not count for lc");
        assert_eq!(stats.active.load(Ordering::Relaxed), 0);
        // The last ACK still finds the node.
        assert!(Arc::ptr_eq(t.touch(&tuple(1), ACK, now).unwrap().node, &n));
        assert_eq!(t.state(&tuple(1)), Some(FlowState::Closing));
        assert_eq!(n.counters.total.load(Ordering::Relaxed), 1);
        assert_eq!(stats.total.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn timeouts_per_state_from_last_packet() {
        let (mut t, _) = table(8);
        let n = node(1);
        let t0 = Instant::now();
        let to = t.timeouts();
        t.insert(tuple(1), Arc::clone(&n), 0, SYN, t0).unwrap(); // half-open
        t.insert(tuple(2), Arc::clone(&n), 0, ACK, t0).unwrap(); // open
        t.insert(tuple(3), Arc::clone(&n), 0, SYN, t0).unwrap();
        t.touch(&tuple(3), RST, t0).unwrap(); // closing
        assert_eq!(t.next_expiry(), Some(t0 + to.linger));
        assert_eq!(t.expire(t0 + to.linger - Duration::from_millis(1), 100), 0);
        assert_eq!(t.expire(t0 + to.linger, 100), 1);
        assert_eq!(t.state(&tuple(3)), None);
        // A packet refreshes the open flow.
        t.touch(&tuple(2), ACK, t0 + to.half_open).unwrap();
        assert_eq!(t.expire(t0 + to.half_open, 100), 1);
        assert_eq!(t.state(&tuple(1)), None);
        assert_eq!(t.expire(t0 + to.idle, 100), 0, "refreshed at half_open");
        assert_eq!(t.expire(t0 + to.half_open + to.idle, 100), 1);
        assert!(t.is_empty());
        assert_eq!(n.active(), 0);
    }

    #[test]
    fn expire_respects_budget() {
        let (mut t, _) = table(100);
        let n = node(1);
        let t0 = Instant::now();
        for p in 0..50 {
            t.insert(tuple(p), Arc::clone(&n), 0, SYN, t0).unwrap();
        }
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(t.expire(later, 20), 20);
        assert_eq!(t.len(), 30);
        assert_eq!(t.expire(later, 1000), 30);
        assert_eq!(n.active(), 0);
    }

    #[test]
    fn full_table_evicts_closing_then_half_open_never_open() {
        let (mut t, stats) = table(3);
        let (a, b) = (node(1), node(2));
        let now = Instant::now();
        t.insert(tuple(1), Arc::clone(&a), 0, ACK, now).unwrap(); // open
        t.insert(tuple(2), Arc::clone(&a), 0, SYN, now).unwrap(); // half-open
        t.insert(tuple(3), Arc::clone(&b), 0, ACK, now).unwrap(); // open
        t.touch(&tuple(3), FIN, now).unwrap(); // closing
        assert_eq!(t.insert(tuple(4), Arc::clone(&b), 0, SYN, now), Ok(1));
        assert_eq!(t.state(&tuple(3)), None, "closing evicted first");
        assert_eq!(t.insert(tuple(5), Arc::clone(&b), 0, SYN, now), Ok(1));
        assert_eq!(t.state(&tuple(2)), None, "then the oldest half-open");
        assert_eq!(t.insert(tuple(6), Arc::clone(&b), 0, SYN, now), Ok(1));
        assert_eq!(t.state(&tuple(4)), None);
        // Now: open(1), half-open(5), half-open(6). Make them all open.
        t.touch(&tuple(5), ACK, now).unwrap();
        t.touch(&tuple(6), ACK, now).unwrap();
        assert_eq!(t.insert(tuple(7), Arc::clone(&b), 0, SYN, now), Err(Full));
        assert_eq!(t.len(), 3);
        assert_eq!(a.active() + b.active(), 3);
        assert_eq!(stats.active.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn syn_on_closing_flow_starts_over() {
        let (mut t, _) = table(4);
        let a = node(1);
        let now = Instant::now();
        t.insert(tuple(1), Arc::clone(&a), 0, SYN, now).unwrap();
        assert!(t.touch(&tuple(1), SYN, now).is_some(), "retransmitted SYN");
        t.touch(&tuple(1), ACK, now).unwrap();
        t.touch(&tuple(1), FIN | ACK, now).unwrap();
        assert!(
            t.touch(&tuple(1), SYN, now).is_none(),
            "new connection, same tuple"
        );
        assert!(t.is_empty());
        assert_eq!(a.active(), 0);
    }

    #[test]
    fn reinsert_same_tuple_replaces() {
        let (mut t, _) = table(4);
        let (a, b) = (node(1), node(2));
        let now = Instant::now();
        t.insert(tuple(1), Arc::clone(&a), 0, ACK, now).unwrap();
        t.touch(&tuple(1), FIN, now).unwrap();
        t.insert(tuple(1), Arc::clone(&b), 0, SYN, now).unwrap();
        assert_eq!(t.len(), 1);
        assert!(Arc::ptr_eq(t.touch(&tuple(1), ACK, now).unwrap().node, &b));
        assert_eq!((a.active(), b.active()), (0, 1));
        assert_eq!(t.clear(), 1);
        assert_eq!(b.active(), 0);
    }

    #[test]
    fn offload_is_asked_after_n_open_packets_and_withdrawn_at_close() {
        let (t, _) = table(8);
        let mut t = t.with_offload(3);
        let now = Instant::now();
        let n = node(1);
        t.insert(tuple(1), Arc::clone(&n), 0, SYN, now).unwrap();
        let mut asked = Vec::new();
        for flags in [SYN, ACK, ACK, ACK, ACK | 0x08, ACK, FIN | ACK, ACK] {
            asked.push(t.touch(&tuple(1), flags, now).unwrap().offload);
        }
        assert_eq!(
            asked,
            [
                None,                   // retransmitted SYN: not open yet
                None,                   // open, 1
                None,                   // 2
                Some(Offload::Install), // 3
                None,
                None,
                Some(Offload::Withdraw), // FIN: the close passes here
                None,
            ]
        );
        // IPv6 flows the same; without with_offload nothing is ever asked.
        let v6 = tuple6(1);
        t.insert(v6, Arc::clone(&n), 0, ACK, now).unwrap(); // open: 1
        let (mut plain, _) = table(8);
        plain.insert(tuple(2), n, 0, ACK, now).unwrap();
        let asked6: Vec<_> = (0..4)
            .map(|_| t.touch(&v6, ACK, now).unwrap().offload)
            .collect();
        assert_eq!(asked6, [None, Some(Offload::Install), None, None]);
        for _ in 0..10 {
            assert_eq!(plain.touch(&tuple(2), ACK, now).unwrap().offload, None);
        }
        // A mid-flow first packet (Maglev after a failover) counts as the first open one.
        t.insert(tuple(3), node(2), 0, ACK, now).unwrap();
        assert_eq!(t.touch(&tuple(3), ACK, now).unwrap().offload, None);
        assert_eq!(
            t.touch(&tuple(3), ACK, now).unwrap().offload,
            Some(Offload::Install)
        );
    }

    #[test]
    fn idle_installed_flows_ask_the_fast_path_before_going() {
        let (t, stats) = table(8);
        let mut t = t.with_offload(1);
        let to = t.timeouts();
        let t0 = Instant::now();
        for p in 1..=3 {
            t.insert(tuple(p), node(1), 0, SYN, t0).unwrap();
        }
        for p in 1..=2 {
            assert_eq!(
                t.touch(&tuple(p), ACK, t0).unwrap().offload,
                Some(Offload::Install)
            );
        }
        t.touch(&tuple(3), ACK, t0).unwrap(); // installed too (after = 1)
        let mut asked = Vec::new();
        let later = t0 + to.idle;
        // Flow 1 was busy in the fast path, flow 2 was not, flow 3 answers too.
        let removed = t.expire_offloaded(later, 100, &mut |k, _| {
            asked.push(k.sport());
            k.sport() != 2
        });
        assert_eq!(removed, 1);
        assert_eq!(asked, [1, 2, 3]);
        assert_eq!(t.state(&tuple(2)), None);
        assert_eq!(t.state(&tuple(1)), Some(FlowState::Open), "kept");
        assert_eq!(stats.active.load(Ordering::Relaxed), 2);
        // Kept as if touched at `later`: not asked again before another timeout.
        let mut again = 0;
        t.expire_offloaded(
            later + to.idle - Duration::from_millis(1),
            100,
            &mut |_, _| {
                again += 1;
                false
            },
        );
        assert_eq!(again, 0);
        // The questions count against the budget.
        let mut n = 0;
        let removed = t.expire_offloaded(later + to.idle, 1, &mut |_, _| {
            n += 1;
            true
        });
        assert_eq!((removed, n), (0, 1));
        // A flow that is not installed is not asked about.
        let (mut plain, _) = table(8);
        plain.insert(tuple(9), node(1), 0, ACK, t0).unwrap();
        assert_eq!(
            plain.expire_offloaded(later, 100, &mut |_, _| panic!("asked")),
            1
        );
    }
}
