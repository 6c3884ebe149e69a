//! The kernel fast path for established flows (`--offload on`): the flow's node is still
//! chosen here, on the packets of its start; once a flow is established and has sent
//! [`OFFLOAD_AFTER`] packets, the worker installs it in a BPF hash map (one per family),
//! and from then on the kernel forwards its frames itself, without waking the data plane.
//!
//! Two programs read the maps, both built here over the same test of a frame (untagged;
//! IPv4 without options or fragmentation, or IPv6 whose next header is TCP; TCP without
//! SYN, FIN or RST; and its (source, destination, ports) in its family's map):
//! - the tcx ingress classifier rewrites the two MACs of such a frame (the node's, then
//!   ours: both in the map value, 12 bytes in one store), adds it to the flow's packet
//!   and byte counts, stamps the time, and redirects it out of the same interface
//!   (`bpf_redirect`): a GRO/TSO super-frame leaves whole, with its segmentation
//!   metadata, as it does from the ring. Every other frame goes on ("next"). It is
//!   attached at the head of the hook's chain and the host sink
//!   ([`super::filter::sink`]) at its tail: the forward comes before any other program
//!   on the hook, the drop after all of them;
//! - the rings' socket filter, which replaces [`super::filter::data`], refuses such a
//!   frame (the ring does not copy it and the worker is not woken) and takes the rest as
//!   before.
//!
//! The packet taps run before tcx, so the socket filter sees each frame first. A flow
//! installed between the two looks is forwarded twice (once from each side; TCP drops
//! the duplicate); one withdrawn between them is dropped once (TCP sends it again).
//! Frames still queued in a ring when their flow is installed leave after the fast
//! path's first ones, so a busy flow may see a few segments reordered, once. All of it
//! only at a flow's installation or end.
//!
//! A SYN, FIN or RST always takes the ring: the flow table sees every state change, so
//! a closing flow is withdrawn ([`Offload::Withdraw`](super::flow::Offload)) and its last
//! ACKs linger on the same node through here, as before. The table no longer sees an
//! installed flow's other packets: at its idle timeout it asks the map when the flow
//! last passed (see [`FlowTable::expire_offloaded`](super::flow::FlowTable::expire_offloaded)).
//! What the fast path forwarded is added to the node's counters when the flow is
//! withdrawn (so a long transfer is counted at its end), and to
//! `fulcrum_direct_offload_frames_total` / `_bytes_total`.
//!
//! Tagged frames, IPv4 with options or fragmented and IPv6 with extension headers stay
//! on the ring (which drops the last three). The maps' entries point at MACs: a node
//! that changes its MAC keeps getting its installed flows at the old one until they end.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};

use pnet::util::MacAddr;

use super::flow::{FiveTuple, FiveTuple6, FlowKey};
use crate::sys::bpf::{
    Asm, HashMap, Insn, Link, Program, Reg, Size, FN_KTIME_GET_NS, FN_MAP_LOOKUP_ELEM, FN_REDIRECT,
    FN_SKB_STORE_BYTES, SKB_LEN, SKB_VLAN_PRESENT,
};

/// Packets a flow sends through the ring while established before it is installed: a
/// short connection (a request and a close) ends before, and costs no map updates.
pub const OFFLOAD_AFTER: u32 = 8;
/// IPv4 map key: source address, destination address, ports — three host-order words,
/// as the programs read them (`ld_abs` converts from network order).
const KEY_SIZE: usize = 12;
/// IPv6 map key: the same, in nine words (four per address).
const KEY6_SIZE: usize = 36;
/// Map value: node MAC, our MAC, 4 bytes of padding, packets, bytes (with Ethernet
/// headers), last packet (`CLOCK_MONOTONIC` ns).
const VALUE_SIZE: usize = 40;
const V_PACKETS: i16 = 16;
const V_BYTES: i16 = 24;
const V_LAST: i16 = 32;
/// Socket filter verdict for a frame the ring takes (as [`super::filter::data`]).
const ACCEPT: i32 = 0x0004_0000;

/// The IPv4 map key of `flow`.
pub fn key(flow: &FiveTuple) -> [u8; KEY_SIZE] {
    let mut k = [0u8; KEY_SIZE];
    k[0..4].copy_from_slice(&u32::from(flow.src).to_ne_bytes());
    k[4..8].copy_from_slice(&u32::from(flow.dst).to_ne_bytes());
    let ports = (u32::from(flow.sport) << 16) | u32::from(flow.dport);
    k[8..12].copy_from_slice(&ports.to_ne_bytes());
    k
}

/// The IPv6 map key of `flow`.
pub fn key6(flow: &FiveTuple6) -> [u8; KEY6_SIZE] {
    let mut k = [0u8; KEY6_SIZE];
    let (src, dst) = (flow.src.octets(), flow.dst.octets());
    for (i, w) in src.chunks_exact(4).chain(dst.chunks_exact(4)).enumerate() {
        let n = u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
        k[4 * i..4 * i + 4].copy_from_slice(&n.to_ne_bytes());
    }
    let ports = (u32::from(flow.sport) << 16) | u32::from(flow.dport);
    k[32..36].copy_from_slice(&ports.to_ne_bytes());
    k
}

/// A new map value: frames go from `ours` to `node`, nothing counted yet.
fn value(node: MacAddr, ours: MacAddr) -> [u8; VALUE_SIZE] {
    let mut v = [0u8; VALUE_SIZE];
    v[0..6].copy_from_slice(&node.octets());
    v[6..12].copy_from_slice(&ours.octets());
    v
}

/// What the fast path did with a flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// Frames forwarded (a super-frame counts once).
    pub packets: u64,
    /// Their IP bytes (Ethernet headers taken off).
    pub bytes: u64,
    /// When the last one passed (`CLOCK_MONOTONIC`, ns; 0: none yet).
    pub last_ns: u64,
}

impl Forwarded {
    fn read(v: &[u8; VALUE_SIZE]) -> Forwarded {
        let word = |at: i16| {
            let at = at as usize;
            let mut b = [0u8; 8];
            b.copy_from_slice(&v[at..at + 8]);
            u64::from_ne_bytes(b)
        };
        let packets = word(V_PACKETS);
        Forwarded {
            packets,
            bytes: word(V_BYTES).saturating_sub(14 * packets),
            last_ns: word(V_LAST),
        }
    }
}

/// The test both programs start with: falls through with the map value's address in
/// `r0` when the frame belongs to an installed flow (`maps`: IPv4's, IPv6's), jumps to
/// `miss` otherwise. Expects the context in `r6` and the frame's length in `r7`; uses the
/// stack's top 40 bytes and the labels `fast_v6` and `fast_hit`.
fn installed(a: &mut Asm, maps: (RawFd, RawFd), miss: &'static str) {
    let (r0, r10) = (Reg(0), Reg(10));
    a.push(Insn::ldx_w(r0, Reg(6), SKB_VLAN_PRESENT))
        .jump(Insn::jne32_imm(r0, 0, 0), miss)
        .jump(Insn::jlt32_imm(Reg(7), 54, 0), miss)
        .push(Insn::ld_abs(Size::H, 12))
        .jump(Insn::jeq32_imm(r0, 0x86dd, 0), "fast_v6")
        .jump(Insn::jne32_imm(r0, 0x0800, 0), miss)
        .push(Insn::ld_abs(Size::B, 14)) // version 4, header of 20 bytes
        .jump(Insn::jne32_imm(r0, 0x45, 0), miss)
        .push(Insn::ld_abs(Size::H, 20)) // more fragments, fragment offset
        .push(Insn::and32_imm(r0, 0x3fff))
        .jump(Insn::jne32_imm(r0, 0, 0), miss)
        .push(Insn::ld_abs(Size::B, 23))
        .jump(Insn::jne32_imm(r0, 6, 0), miss)
        .push(Insn::ld_abs(Size::B, 47)) // TCP flags
        .push(Insn::and32_imm(r0, 0x07)) // FIN, SYN, RST
        .jump(Insn::jne32_imm(r0, 0, 0), miss);
    // Source, destination, ports: bytes 26..38.
    for i in 0..3 {
        a.push(Insn::ld_abs(Size::W, 26 + 4 * i))
            .push(Insn::stx_w(r10, -16 + 4 * i as i16, r0));
    }
    lookup(a, maps.0, -16, miss);
    a.jump(Insn::ja(0), "fast_hit").label("fast_v6");
    // IPv6: TCP right after the fixed header; flags at 14 + 40 + 13.
    a.jump(Insn::jlt32_imm(Reg(7), 74, 0), miss)
        .push(Insn::ld_abs(Size::B, 20))
        .jump(Insn::jne32_imm(r0, 6, 0), miss)
        .push(Insn::ld_abs(Size::B, 67))
        .push(Insn::and32_imm(r0, 0x07))
        .jump(Insn::jne32_imm(r0, 0, 0), miss);
    // Source, destination, ports: bytes 22..58.
    for i in 0..9 {
        a.push(Insn::ld_abs(Size::W, 22 + 4 * i))
            .push(Insn::stx_w(r10, -40 + 4 * i as i16, r0));
    }
    lookup(a, maps.1, -40, miss);
    a.label("fast_hit");
}

/// `r0 = lookup(map, fp + key_at)`; jumps to `miss` when absent.
fn lookup(a: &mut Asm, map: RawFd, key_at: i32, miss: &'static str) {
    let (r0, r1, r2, r10) = (Reg(0), Reg(1), Reg(2), Reg(10));
    let [m0, m1] = Insn::ld_map_fd(r1, map);
    a.push(Insn::mov64_reg(r2, r10))
        .push(Insn::add64_imm(r2, key_at))
        .push(m0)
        .push(m1)
        .push(Insn::call(FN_MAP_LOOKUP_ELEM))
        .jump(Insn::jeq_imm(r0, 0, 0), miss);
}

/// The tcx ingress program (see the module documentation): installed flows' frames
/// out of `ifindex` to their node, the rest on down the chain.
pub fn classifier(maps: (RawFd, RawFd), ifindex: u32) -> Result<Vec<Insn>, String> {
    let (r0, r1, r2, r3, r4, r5, r6, r7, r8) = (
        Reg(0),
        Reg(1),
        Reg(2),
        Reg(3),
        Reg(4),
        Reg(5),
        Reg(6),
        Reg(7),
        Reg(8),
    );
    let mut a = Asm::new();
    a.push(Insn::mov64_reg(r6, r1))
        .push(Insn::ldx_w(r7, r1, SKB_LEN));
    installed(&mut a, maps, "next");
    a.push(Insn::mov64_reg(r8, r0))
        // Both MACs in one store, from the value.
        .push(Insn::mov64_reg(r1, r6))
        .push(Insn::mov64_imm(r2, 0))
        .push(Insn::mov64_reg(r3, r8))
        .push(Insn::mov64_imm(r4, 12))
        .push(Insn::mov64_imm(r5, 0))
        .push(Insn::call(FN_SKB_STORE_BYTES))
        // Not rewritten: never send it on with our own MAC as its destination.
        .jump(Insn::jne32_imm(r0, 0, 0), "drop")
        .push(Insn::mov64_imm(r1, 1))
        .push(Insn::atomic_add_dw(r8, V_PACKETS, r1))
        .push(Insn::ldx_w(r1, r6, SKB_LEN))
        .push(Insn::atomic_add_dw(r8, V_BYTES, r1))
        .push(Insn::call(FN_KTIME_GET_NS))
        .push(Insn::stx_dw(r8, V_LAST, r0))
        .push(Insn::mov64_imm(r1, ifindex as i32))
        .push(Insn::mov64_imm(r2, 0))
        .push(Insn::call(FN_REDIRECT))
        .push(Insn::exit());
    super::filter::tcx_exits(&mut a);
    a.finish()
}

/// The rings' socket filter (see the module documentation): what
/// [`super::filter::data`] takes, minus the frames of installed flows.
pub fn socket_filter(
    maps: (RawFd, RawFd),
    v4: &[Ipv4Addr],
    v6: &[Ipv6Addr],
) -> Result<Vec<Insn>, String> {
    let (r0, r1, r6, r7) = (Reg(0), Reg(1), Reg(6), Reg(7));
    let mut a = Asm::new();
    a.push(Insn::mov64_reg(r6, r1))
        .push(Insn::ldx_w(r7, r1, SKB_LEN));
    installed(&mut a, maps, "ring");
    a.jump(Insn::ja(0), "refuse").label("ring");
    super::filter::vip_match(&mut a, v4, v6, "accept", "refuse");
    a.label("accept")
        .push(Insn::mov64_imm(r0, ACCEPT))
        .push(Insn::exit())
        .label("refuse")
        .push(Insn::mov64_imm(r0, 0))
        .push(Insn::exit());
    a.finish()
}

/// The fast path of one interface: the map, the classifier attached to its tcx ingress
/// hook (detached when this is dropped), and the socket filter for the rings.
#[derive(Debug)]
pub struct Fastpath {
    /// Field order is drop order: detach first.
    _link: Link,
    _classifier: Program,
    filter: Program,
    map: HashMap,
    map6: HashMap,
    ours: MacAddr,
}

impl Fastpath {
    /// Creates the maps (room for `flows` installed flows each), loads both programs
    /// and attaches the classifier at the head of `ifindex`'s tcx ingress chain (our
    /// MAC: `ours`; the VIPs, for the rings' filter: `v4`, `v6`).
    pub fn attach(
        ifindex: u32,
        ours: MacAddr,
        flows: u32,
        v4: &[Ipv4Addr],
        v6: &[Ipv6Addr],
    ) -> io::Result<Fastpath> {
        let map = HashMap::new(KEY_SIZE as u32, VALUE_SIZE as u32, flows)?;
        let map6 = HashMap::new(KEY6_SIZE as u32, VALUE_SIZE as u32, flows)?;
        let fds = (map.as_raw_fd(), map6.as_raw_fd());
        let classifier = classifier(fds, ifindex).map_err(io::Error::other)?;
        let classifier = Program::load_classifier("fulcrum_fast", &classifier)?;
        let filter = socket_filter(fds, v4, v6).map_err(io::Error::other)?;
        let filter = Program::load_socket_filter("fulcrum_ring", &filter)?;
        let link = Link::attach_tcx_ingress_first(&classifier, ifindex)?;
        Ok(Fastpath {
            _link: link,
            _classifier: classifier,
            filter,
            map,
            map6,
            ours,
        })
    }

    /// Gives a ring socket the filter that leaves installed flows to the fast path.
    pub fn filter_ring(&self, ring: RawFd) -> io::Result<()> {
        self.filter.attach_to_socket(ring)
    }

    /// `flow`'s map and key.
    fn slot(&self, flow: &FlowKey) -> (&HashMap, Key) {
        match flow {
            FlowKey::V4(t) => (&self.map, Key::V4(key(t))),
            FlowKey::V6(t) => (&self.map6, Key::V6(key6(t))),
        }
    }

    /// Installs `flow`: its frames go to `node` from now on. `E2BIG` when the map is
    /// full (the flow goes on through the ring).
    pub fn install(&self, flow: &FlowKey, node: MacAddr) -> io::Result<()> {
        let (map, k) = self.slot(flow);
        map.update(k.bytes(), &value(node, self.ours))
    }

    /// What the fast path did with `flow` so far (`None`: not installed).
    pub fn peek(&self, flow: &FlowKey) -> io::Result<Option<Forwarded>> {
        let (map, k) = self.slot(flow);
        let mut v = [0u8; VALUE_SIZE];
        Ok(map.lookup(k.bytes(), &mut v)?.then(|| Forwarded::read(&v)))
    }

    /// Withdraws `flow`, returning what the fast path did with it (`None`: it was not
    /// installed).
    pub fn withdraw(&self, flow: &FlowKey) -> io::Result<Option<Forwarded>> {
        let (map, k) = self.slot(flow);
        let mut v = [0u8; VALUE_SIZE];
        Ok(map.take(k.bytes(), &mut v)?.then(|| Forwarded::read(&v)))
    }
}

/// A map key of either family.
enum Key {
    V4([u8; KEY_SIZE]),
    V6([u8; KEY6_SIZE]),
}

impl Key {
    fn bytes(&self) -> &[u8] {
        match self {
            Key::V4(k) => k,
            Key::V6(k) => k,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::bpf::{ktime_ns, TCX_NEXT, TCX_REDIRECT};

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 100);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 0x100);
    const OURS: MacAddr = MacAddr(2, 0, 0, 0, 0, 0xaa);
    const NODE: MacAddr = MacAddr(2, 0, 0, 0, 0, 0x01);

    fn flow(sport: u16) -> FiveTuple {
        FiveTuple {
            src: Ipv4Addr::new(192, 0, 2, 7),
            dst: VIP,
            sport,
            dport: 80,
            proto: 6,
        }
    }

    /// An Ethernet + IPv4 + TCP frame of `flow` with `flags` and `payload` bytes.
    fn frame(f: &FiveTuple, flags: u8, payload: usize) -> Vec<u8> {
        let mut b = vec![0u8; 54 + payload];
        b[0..6].copy_from_slice(&OURS.octets());
        b[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x77]);
        b[12..14].copy_from_slice(&[0x08, 0x00]);
        b[14] = 0x45;
        b[16..18].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        b[22] = 64;
        b[23] = 6;
        b[26..30].copy_from_slice(&f.src.octets());
        b[30..34].copy_from_slice(&f.dst.octets());
        b[34..36].copy_from_slice(&f.sport.to_be_bytes());
        b[36..38].copy_from_slice(&f.dport.to_be_bytes());
        b[46] = 0x50;
        b[47] = flags;
        b
    }

    /// Loads both programs over fresh maps (IPv4's, IPv6's); `None` without CAP_BPF.
    fn programs() -> Option<((HashMap, HashMap), Program, Program)> {
        let map = match HashMap::new(KEY_SIZE as u32, VALUE_SIZE as u32, 64) {
            Ok(m) => m,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!("skipped: no CAP_BPF ({e})");
                return None;
            }
            Err(e) => panic!("map: {e}"),
        };
        let map6 = HashMap::new(KEY6_SIZE as u32, VALUE_SIZE as u32, 64).unwrap();
        let fd = (map.as_raw_fd(), map6.as_raw_fd());
        let v6 = [VIP6];
        let c = classifier(fd, 1).unwrap();
        let c = Program::load_classifier("fulcrum_fast", &c)
            .unwrap_or_else(|e| panic!("classifier refused: {e}"));
        let s = socket_filter(fd, &[VIP], &v6).unwrap();
        let s = Program::load_socket_filter("fulcrum_ring", &s)
            .unwrap_or_else(|e| panic!("socket filter refused: {e}"));
        Some(((map, map6), c, s))
    }

    /// Runs the socket filter on `frame` as a packet socket would (from the Ethernet
    /// header on). `BPF_PROG_TEST_RUN` takes a socket filter's input from the network
    /// header, after pulling 14 bytes: 14 bytes of padding in front line it up.
    fn sock_run(filter: &Program, frame: &[u8]) -> u32 {
        let mut padded = vec![0u8; 14];
        padded.extend_from_slice(frame);
        filter.test_run(&padded).unwrap()
    }

    #[test]
    fn keys_are_the_words_the_programs_read() {
        let k = key(&flow(0x1234));
        assert_eq!(&k[0..4], &u32::from_be_bytes([192, 0, 2, 7]).to_ne_bytes());
        assert_eq!(&k[8..12], &0x1234_0050u32.to_ne_bytes());
    }

    /// In the kernel (`BPF_PROG_TEST_RUN`): an installed flow's plain frames are
    /// rewritten and redirected by the classifier and refused by the ring's filter; its
    /// SYN/FIN/RST, other flows, fragments and IP options are left to the ring and go
    /// on down the tcx chain (to the sink); the counts and the time stamp add up; a
    /// withdrawn flow is the ring's again.
    #[test]
    fn installed_flows_take_the_fast_path_and_nothing_else_does() {
        let Some(((map, _), classifier, filter)) = programs() else {
            return;
        };
        let fast = flow(40_000);
        map.update(&key(&fast), &value(NODE, OURS)).unwrap();
        let before = ktime_ns();
        for payload in [0, 100, 1400] {
            let (verdict, out) = classifier
                .test_run_out(&frame(&fast, 0x10, payload))
                .unwrap();
            assert_eq!(verdict as i32, TCX_REDIRECT);
            assert_eq!(&out[0..6], &NODE.octets(), "destination: the node");
            assert_eq!(&out[6..12], &OURS.octets(), "source: us");
            assert_eq!(
                &out[12..],
                &frame(&fast, 0x10, payload)[12..],
                "rest untouched"
            );
            assert_eq!(sock_run(&filter, &frame(&fast, 0x18, payload)), 0);
        }
        let mut v = [0u8; VALUE_SIZE];
        assert!(map.lookup(&key(&fast), &mut v).unwrap());
        let f = Forwarded::read(&v);
        assert_eq!(f.packets, 3);
        assert_eq!(f.bytes, 3 * 40 + 1500, "IP bytes");
        assert!(f.last_ns >= before && f.last_ns <= ktime_ns());
        // Left to the ring (filter accepts) and to the next program (the sink).
        let mut frag = frame(&fast, 0x10, 10);
        frag[20] = 0x20; // more fragments
        let mut options = frame(&fast, 0x10, 10);
        options[14] = 0x46;
        let mut runt = frame(&fast, 0x10, 0);
        runt.truncate(53);
        for (what, f) in [
            ("SYN", frame(&fast, 0x02, 0)),
            ("FIN", frame(&fast, 0x11, 0)),
            ("RST", frame(&fast, 0x04, 0)),
            ("another flow", frame(&flow(40_001), 0x10, 0)),
            ("a fragment", frag),
            ("IP options", options),
            ("a runt", runt),
        ] {
            assert_eq!(sock_run(&filter, &f) as i32, ACCEPT, "{what}");
            assert_eq!(classifier.test_run(&f).unwrap() as i32, TCX_NEXT, "{what}");
        }
        // Not for a VIP at all: the stack's.
        let mut other = flow(1);
        other.dst = Ipv4Addr::new(10, 99, 0, 7);
        assert_eq!(sock_run(&filter, &frame(&other, 0x10, 0)), 0);
        assert_eq!(
            classifier.test_run(&frame(&other, 0x10, 0)).unwrap() as i32,
            TCX_NEXT
        );
        assert!(map.take(&key(&fast), &mut v).unwrap());
        assert_eq!(Forwarded::read(&v).packets, 3, "taken with its counts");
        assert_eq!(sock_run(&filter, &frame(&fast, 0x10, 0)) as i32, ACCEPT);
        assert_eq!(
            classifier.test_run(&frame(&fast, 0x10, 0)).unwrap() as i32,
            TCX_NEXT
        );
    }

    fn flow6(sport: u16) -> FiveTuple6 {
        FiveTuple6 {
            src: "2001:db8::7".parse().unwrap(),
            dst: VIP6,
            sport,
            dport: 80,
            proto: 6,
        }
    }

    /// An Ethernet + IPv6 + TCP frame of `f` with `flags` and `payload` bytes.
    fn frame6(f: &FiveTuple6, next: u8, flags: u8, payload: usize) -> Vec<u8> {
        let mut b = vec![0u8; 74 + payload];
        b[0..6].copy_from_slice(&OURS.octets());
        b[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x77]);
        b[12..14].copy_from_slice(&[0x86, 0xdd]);
        b[14] = 0x60;
        b[18..20].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
        b[20] = next;
        b[21] = 64;
        b[22..38].copy_from_slice(&f.src.octets());
        b[38..54].copy_from_slice(&f.dst.octets());
        b[54..56].copy_from_slice(&f.sport.to_be_bytes());
        b[56..58].copy_from_slice(&f.dport.to_be_bytes());
        b[66] = 0x50;
        b[67] = flags;
        b
    }

    /// The same for IPv6, in its own map: an installed flow's frames are forwarded by
    /// the classifier and skipped by the ring; its SYN, another flow and a frame with an
    /// extension header are the ring's; an IPv4 flow with the same ports is not confused.
    #[test]
    fn installed_ipv6_flows_take_the_fast_path_too() {
        let Some(((map, map6), classifier, filter)) = programs() else {
            return;
        };
        let fast = flow6(40_000);
        map6.update(&key6(&fast), &value(NODE, OURS)).unwrap();
        let (verdict, out) = classifier
            .test_run_out(&frame6(&fast, 6, 0x18, 200))
            .unwrap();
        assert_eq!(verdict as i32, TCX_REDIRECT);
        assert_eq!(&out[0..6], &NODE.octets());
        assert_eq!(&out[6..12], &OURS.octets());
        assert_eq!(&out[12..], &frame6(&fast, 6, 0x18, 200)[12..]);
        assert_eq!(sock_run(&filter, &frame6(&fast, 6, 0x10, 0)), 0);
        let mut v = [0u8; VALUE_SIZE];
        assert!(map6.lookup(&key6(&fast), &mut v).unwrap());
        let f = Forwarded::read(&v);
        assert_eq!((f.packets, f.bytes), (1, 260), "IPv6 header, TCP, payload");
        for (what, f) in [
            ("SYN", frame6(&fast, 6, 0x02, 0)),
            ("FIN", frame6(&fast, 6, 0x11, 0)),
            ("another flow", frame6(&flow6(40_001), 6, 0x10, 0)),
        ] {
            assert_eq!(sock_run(&filter, &f) as i32, ACCEPT, "{what}");
            assert_eq!(classifier.test_run(&f).unwrap() as i32, TCX_NEXT, "{what}");
        }
        // An extension header: the rings' filter refuses it (next header not TCP), the
        // classifier leaves it.
        let ext = frame6(&fast, 0, 0x10, 0);
        assert_eq!(sock_run(&filter, &ext), 0);
        assert_eq!(classifier.test_run(&ext).unwrap() as i32, TCX_NEXT);
        // The IPv4 map is not consulted for IPv6, nor the other way round.
        assert_eq!(
            classifier.test_run(&frame(&flow(40_000), 0x10, 0)).unwrap() as i32,
            TCX_NEXT
        );
        map.update(&key(&flow(40_000)), &value(NODE, OURS)).unwrap();
        assert!(map6.take(&key6(&fast), &mut v).unwrap());
        assert_eq!(
            classifier.test_run(&frame6(&fast, 6, 0x10, 0)).unwrap() as i32,
            TCX_NEXT
        );
    }
}
