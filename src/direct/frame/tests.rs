//! Table-driven tests of [`super::process`]: `{description, input frame, aux, expected
//! verdict, expected output frame}` (Katran's fixture style), plus a seeded random-bytes
//! sweep that must never panic.

use super::*;
use crate::direct::stats::DropReason as R;

const OUR: MacAddr = MacAddr(0x02, 0x99, 0, 0, 0, 0x11);
const CLIENT: MacAddr = MacAddr(0x02, 0x99, 0, 0, 0, 0x10);
const SRV1: MacAddr = MacAddr(0x02, 0x99, 0, 0, 0, 0x21);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 100);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);
const SRV1_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 21);

fn local() -> Local {
    Local {
        mac: OUR,
        vips: Vips::new(&[SocketAddr::from((VIP, 80))]),
        max_frame: 1514,
        answer_arp: true,
    }
}

/// Sends every flow to node 1 (SRV1), except client port 9999 (no node); knows SRV1_IP.
#[derive(Default)]
struct Stub {
    decided: Vec<TcpMeta>,
    learned: Vec<(IpAddr, MacAddr)>,
}

impl Decide for Stub {
    fn decide(&mut self, pkt: &TcpMeta) -> Result<Target, DropReason> {
        self.decided.push(*pkt);
        if pkt.tuple.sport() == 9999 {
            return Err(R::NoNode);
        }
        Ok(Target { node: 1, mac: SRV1 })
    }
    fn learn(&mut self, ip: IpAddr, mac: MacAddr) -> bool {
        self.learned.push((ip, mac));
        ip == IpAddr::V4(SRV1_IP) || ip == IpAddr::V6(super::tests6::SRV1_IP6)
    }
}

/// Ones'-complement sum of 16-bit big-endian words (independent of pnet, to cross-check).
fn ones_sum(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        acc += u32::from(w);
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

fn pseudo_sum(src: Ipv4Addr, dst: Ipv4Addr, tcp_len: usize) -> u32 {
    let mut p = [0u8; 12];
    p[0..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = 6;
    p[10..12].copy_from_slice(&(tcp_len as u16).to_be_bytes());
    ones_sum(&p, 0)
}

/// Knobs of a test TCP frame.
#[derive(Clone)]
struct F {
    dst_mac: MacAddr,
    src_mac: MacAddr,
    ethertype: u16,
    version: u8,
    ihl: u8,
    total_len: Option<u16>,
    flags_frag: u16,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    data_off: u8,
    payload: Vec<u8>,
    /// Checksum field: full (a real wire), or the pseudo-header sum only (veth offload).
    partial_csum: bool,
    bad_ip_csum: bool,
    padding: usize,
}

fn f() -> F {
    F {
        dst_mac: OUR,
        src_mac: CLIENT,
        ethertype: 0x0800,
        version: 4,
        ihl: 5,
        total_len: None,
        flags_frag: 0x4000, // DF
        proto: 6,
        src: CLIENT_IP,
        dst: VIP,
        sport: 40000,
        dport: 80,
        tcp_flags: 0x02,
        data_off: 5,
        payload: Vec::new(),
        partial_csum: false,
        bad_ip_csum: false,
        padding: 0,
    }
}

impl F {
    fn bytes(&self) -> Vec<u8> {
        let opts = usize::from(self.ihl.max(5) - 5) * 4;
        let tcp_len = 20 + self.payload.len();
        let total = 20 + opts + tcp_len;
        let mut b = Vec::new();
        b.extend_from_slice(&self.dst_mac.octets());
        b.extend_from_slice(&self.src_mac.octets());
        b.extend_from_slice(&self.ethertype.to_be_bytes());
        let ip_start = b.len();
        b.push((self.version << 4) | (self.ihl & 0xf));
        b.push(0);
        b.extend_from_slice(&self.total_len.unwrap_or(total as u16).to_be_bytes());
        b.extend_from_slice(&0x1234u16.to_be_bytes());
        b.extend_from_slice(&self.flags_frag.to_be_bytes());
        b.push(64);
        b.push(self.proto);
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.src.octets());
        b.extend_from_slice(&self.dst.octets());
        b.extend(std::iter::repeat_n(1u8, opts)); // NOP options
        let ip_hdr_len = b.len() - ip_start;
        let c = !(ones_sum(&b[ip_start..ip_start + ip_hdr_len], 0) as u16);
        let c = if self.bad_ip_csum { c ^ 0x0101 } else { c };
        b[ip_start + 10..ip_start + 12].copy_from_slice(&c.to_be_bytes());
        let tcp_start = b.len();
        b.extend_from_slice(&self.sport.to_be_bytes());
        b.extend_from_slice(&self.dport.to_be_bytes());
        b.extend_from_slice(&1000u32.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.push(self.data_off << 4);
        b.push(self.tcp_flags);
        b.extend_from_slice(&65535u16.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&self.payload);
        let ps = pseudo_sum(self.src, self.dst, tcp_len);
        let csum = if self.partial_csum {
            // What Linux leaves with CHECKSUM_PARTIAL: the folded pseudo-header sum.
            ps as u16
        } else {
            !(ones_sum(&b[tcp_start..], ps) as u16)
        };
        b[tcp_start + 16..tcp_start + 18].copy_from_slice(&csum.to_be_bytes());
        b.extend(std::iter::repeat_n(0u8, self.padding));
        b
    }
}

/// `frame` rewritten as the node must receive it: MACs swapped, full checksum, no padding.
fn forwarded(spec: &F) -> Vec<u8> {
    let mut s = spec.clone();
    s.dst_mac = SRV1;
    s.src_mac = OUR;
    s.partial_csum = false;
    s.padding = 0;
    s.bytes()
}

fn csum_not_ready(len: usize) -> Aux {
    Aux {
        status: TP_STATUS_CSUMNOTREADY,
        ..Aux::host(len)
    }
}

fn arp_frame(op: u16, sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut b = vec![0xff; 6];
    b.extend_from_slice(&sender_mac.octets());
    b.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4]);
    b.extend_from_slice(&op.to_be_bytes());
    b.extend_from_slice(&sender_mac.octets());
    b.extend_from_slice(&sender_ip.octets());
    b.extend_from_slice(&[0; 6]);
    b.extend_from_slice(&target_ip.octets());
    b
}

fn arp_reply_to_client() -> Vec<u8> {
    let mut b = CLIENT.octets().to_vec();
    b.extend_from_slice(&OUR.octets());
    b.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02]);
    b.extend_from_slice(&OUR.octets());
    b.extend_from_slice(&VIP.octets());
    b.extend_from_slice(&CLIENT.octets());
    b.extend_from_slice(&CLIENT_IP.octets());
    b
}

struct Case {
    what: &'static str,
    input: Vec<u8>,
    aux: Option<Aux>,
    local: Local,
    verdict: Verdict,
    /// Expected output frame (`frame[..len]`) for Forward/ArpReply.
    output: Option<Vec<u8>>,
}

fn fwd(spec: &F, csum_completed: bool) -> (Verdict, Option<Vec<u8>>) {
    let out = forwarded(spec);
    (
        Verdict::Forward {
            node: 1,
            len: out.len(),
            csum_completed,
        },
        Some(out),
    )
}

fn case(what: &'static str, spec: F, aux: Option<Aux>, verdict: Verdict) -> Case {
    Case {
        what,
        input: spec.bytes(),
        aux,
        local: local(),
        verdict,
        output: None,
    }
}

fn fwd_case(what: &'static str, spec: F, aux: Option<Aux>, completed: bool) -> Case {
    let (verdict, output) = fwd(&spec, completed);
    Case {
        what,
        input: spec.bytes(),
        aux,
        local: local(),
        verdict,
        output,
    }
}

fn drop(r: R) -> Verdict {
    Verdict::Drop(r)
}

fn cases() -> Vec<Case> {
    let partial = F {
        partial_csum: true,
        payload: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        tcp_flags: 0x18,
        ..f()
    };
    let partial_len = partial.bytes().len();
    let odd = F {
        partial_csum: true,
        payload: b"odd".to_vec(),
        tcp_flags: 0x18,
        ..f()
    };
    let odd_len = odd.bytes().len();
    let padded = F {
        padding: 6,
        tcp_flags: 0x10,
        ..f()
    };
    let mut c = vec![
        fwd_case("SYN to the VIP, full checksum", f(), None, false),
        fwd_case(
            "data with a partial checksum (CSUMNOTREADY) is completed",
            partial,
            Some(csum_not_ready(partial_len)),
            true,
        ),
        fwd_case(
            "odd-length payload, partial checksum",
            odd,
            Some(csum_not_ready(odd_len)),
            true,
        ),
        fwd_case("Ethernet padding is cut", padded, None, false),
        case(
            "decider finds no node",
            F { sport: 9999, ..f() },
            None,
            drop(R::NoNode),
        ),
        case(
            "IPv4 total length beyond the frame",
            F {
                total_len: Some(400),
                ..f()
            },
            None,
            drop(R::BadLength),
        ),
        case(
            "IPv4 total length below the header",
            F {
                total_len: Some(19),
                ..f()
            },
            None,
            drop(R::BadLength),
        ),
        case(
            "IPv4 total length cuts the TCP header",
            F {
                total_len: Some(30),
                ..f()
            },
            None,
            drop(R::Truncated),
        ),
        case(
            "header length 4 words",
            F { ihl: 4, ..f() },
            None,
            drop(R::BadHeader),
        ),
        case(
            "IP version 6 in an IPv4 ethertype",
            F { version: 6, ..f() },
            None,
            drop(R::BadHeader),
        ),
        case("IP options", F { ihl: 6, ..f() }, None, drop(R::IpOptions)),
        case(
            "IP header checksum wrong",
            F {
                bad_ip_csum: true,
                ..f()
            },
            None,
            drop(R::BadChecksum),
        ),
        case(
            "first fragment (MF)",
            F {
                flags_frag: 0x2000,
                ..f()
            },
            None,
            drop(R::Fragment),
        ),
        case(
            "later fragment (offset)",
            F {
                flags_frag: 0x0010,
                ..f()
            },
            None,
            drop(R::Fragment),
        ),
        case(
            "UDP to the VIP",
            F { proto: 17, ..f() },
            None,
            drop(R::NotTcp),
        ),
        case(
            "TCP to another address",
            F {
                dst: Ipv4Addr::new(10, 99, 0, 11),
                ..f()
            },
            None,
            drop(R::NotForVip),
        ),
        case(
            "TCP to another port of the VIP",
            F { dport: 81, ..f() },
            None,
            drop(R::WrongPort),
        ),
        case(
            "TCP data offset below 5",
            F { data_off: 4, ..f() },
            None,
            drop(R::BadLength),
        ),
        case(
            "TCP data offset beyond the segment",
            F {
                data_off: 15,
                ..f()
            },
            None,
            drop(R::BadLength),
        ),
        case(
            "source 0.0.0.0",
            F {
                src: Ipv4Addr::UNSPECIFIED,
                ..f()
            },
            None,
            drop(R::Martian),
        ),
        case(
            "source is the VIP",
            F { src: VIP, ..f() },
            None,
            drop(R::Martian),
        ),
        case(
            "source multicast",
            F {
                src: Ipv4Addr::new(224, 0, 0, 1),
                ..f()
            },
            None,
            drop(R::Martian),
        ),
        case(
            "another socket's outgoing copy (pitfall #7)",
            f(),
            Some(Aux {
                pkttype: pkttype::OUTGOING,
                ..Aux::host(54)
            }),
            drop(R::Outgoing),
        ),
        case(
            "our own source MAC",
            F {
                src_mac: OUR,
                ..f()
            },
            None,
            drop(R::OwnFrame),
        ),
        case(
            "to another host's MAC",
            F {
                dst_mac: SRV1,
                ..f()
            },
            Some(Aux {
                pkttype: pkttype::OTHERHOST,
                ..Aux::host(54)
            }),
            drop(R::NotForUs),
        ),
        case(
            "IPv4 broadcast frame to the VIP",
            F {
                dst_mac: MacAddr::broadcast(),
                ..f()
            },
            Some(Aux {
                pkttype: pkttype::BROADCAST,
                ..Aux::host(54)
            }),
            drop(R::NotForUs),
        ),
        case(
            "super-frame: wire length beyond what we received (GRO)",
            f(),
            Some(Aux::host(4410)),
            drop(R::Oversize),
        ),
        case(
            "super-frame: received more than MTU + 14",
            F {
                payload: vec![7; 1500],
                ..f()
            },
            Some(Aux::host(1554)),
            drop(R::Oversize),
        ),
        case(
            "IPv4 bytes under the IPv6 ethertype",
            F {
                ethertype: 0x86dd,
                ..f()
            },
            None,
            drop(R::BadHeader),
        ),
        case(
            "LLDP ethertype",
            F {
                ethertype: 0x88cc,
                ..f()
            },
            None,
            drop(R::NotIpv4),
        ),
        case(
            "VLAN tag stripped by the NIC",
            f(),
            Some(Aux {
                status: super::TP_STATUS_VLAN_VALID,
                ..Aux::host(54)
            }),
            drop(R::NotIpv4),
        ),
    ];
    // Raw truncations of a valid SYN.
    let syn = f().bytes();
    for (what, n) in [
        ("empty frame", 0),
        ("half an Ethernet header", 7),
        ("Ethernet header only", 14),
        ("IPv4 header cut", 14 + 19),
        ("IPv4 header without TCP", 14 + 20),
    ] {
        let mut input = syn[..n].to_vec();
        if n >= 18 {
            // Keep the total length consistent with what is left, so the drop is for
            // the missing header and not the length.
            let tl = (n - 14) as u16;
            input[16..18].copy_from_slice(&tl.to_be_bytes());
            let mut ip = input[14..34.min(n)].to_vec();
            if ip.len() == 20 {
                ip[10] = 0;
                ip[11] = 0;
                let c = !(ones_sum(&ip, 0) as u16);
                input[24..26].copy_from_slice(&c.to_be_bytes());
            }
        }
        c.push(Case {
            what,
            aux: Some(Aux::host(n)),
            input,
            local: local(),
            verdict: drop(R::Truncated),
            output: None,
        });
    }
    // ARP.
    let mut standby = local();
    standby.answer_arp = false;
    c.extend([
        Case {
            what: "ARP request for the VIP is answered",
            input: arp_frame(1, CLIENT, CLIENT_IP, VIP),
            aux: Some(Aux {
                pkttype: pkttype::BROADCAST,
                ..Aux::host(42)
            }),
            local: local(),
            verdict: Verdict::ArpReply { len: 42 },
            output: Some(arp_reply_to_client()),
        },
        Case {
            what: "standby: ARP request for the VIP is not answered",
            input: arp_frame(1, CLIENT, CLIENT_IP, VIP),
            aux: None,
            local: standby,
            verdict: drop(R::ArpIgnored),
            output: None,
        },
        Case {
            what: "ARP reply from a node teaches its MAC",
            input: arp_frame(2, SRV1, SRV1_IP, Ipv4Addr::new(10, 99, 0, 11)),
            aux: None,
            local: local(),
            verdict: Verdict::Learned,
            output: None,
        },
        Case {
            what: "ARP request between other hosts",
            input: arp_frame(1, CLIENT, CLIENT_IP, Ipv4Addr::new(10, 99, 0, 1)),
            aux: None,
            local: local(),
            verdict: drop(R::ArpIgnored),
            output: None,
        },
        Case {
            what: "another host announces the VIP",
            input: arp_frame(1, SRV1, VIP, VIP),
            aux: None,
            local: local(),
            verdict: drop(R::VipConflict),
            output: None,
        },
        Case {
            what: "ARP cut short",
            input: arp_frame(1, CLIENT, CLIENT_IP, VIP)[..30].to_vec(),
            aux: None,
            local: local(),
            verdict: drop(R::Truncated),
            output: None,
        },
        Case {
            what: "ARP for IPv6 protocol type",
            input: {
                let mut a = arp_frame(1, CLIENT, CLIENT_IP, VIP);
                a[16] = 0x86;
                a[17] = 0xdd;
                a
            },
            aux: None,
            local: local(),
            verdict: drop(R::ArpMalformed),
            output: None,
        },
    ]);
    c
}

#[test]
fn table() {
    for c in cases() {
        let mut frame = c.input.clone();
        let aux = c.aux.unwrap_or(Aux::host(frame.len()));
        let mut d = Stub::default();
        let v = process(&mut frame, &aux, &c.local, &mut d);
        assert_eq!(v, c.verdict, "{}", c.what);
        match v {
            Verdict::Forward { len, .. } | Verdict::ArpReply { len } => {
                let expect = c.output.as_ref().expect("a case that sends has an output");
                assert_eq!(&frame[..len], &expect[..], "{}", c.what);
            }
            Verdict::Drop(_) | Verdict::Learned | Verdict::NeighbourAdvert(_) => {
                assert_eq!(frame, c.input, "{}: a dropped frame is left alone", c.what)
            }
        }
    }
}

#[test]
fn completed_checksum_verifies() {
    for payload in [&b""[..], b"x", b"hello world, an odd one", &[0xff; 1000]] {
        let spec = F {
            partial_csum: true,
            payload: payload.to_vec(),
            tcp_flags: 0x18,
            ..f()
        };
        let mut frame = spec.bytes();
        let aux = csum_not_ready(frame.len());
        let v = process(&mut frame, &aux, &local(), &mut Stub::default());
        let Verdict::Forward { len, .. } = v else {
            panic!("{v:?}")
        };
        let tcp = &frame[34..len];
        let s = ones_sum(tcp, pseudo_sum(CLIENT_IP, VIP, tcp.len()));
        assert_eq!(s, 0xffff, "checksum verifies for {} bytes", payload.len());
    }
}

#[test]
fn decider_sees_the_flow() {
    let mut d = Stub::default();
    let spec = F {
        tcp_flags: 0x11,
        sport: 1234,
        ..f()
    };
    let mut frame = spec.bytes();
    process(&mut frame, &Aux::host(54), &local(), &mut d);
    assert_eq!(
        d.decided,
        vec![TcpMeta {
            tuple: FlowKey::V4(FiveTuple {
                src: CLIENT_IP,
                dst: VIP,
                sport: 1234,
                dport: 80,
                proto: 6
            }),
            flags: 0x11,
            ip_len: 40,
        }]
    );
    let mut arp = arp_frame(2, SRV1, SRV1_IP, CLIENT_IP);
    process(&mut arp, &Aux::host(42), &local(), &mut d);
    assert_eq!(d.learned, vec![(IpAddr::V4(SRV1_IP), SRV1)]);
}

/// xorshift64*: deterministic, seedable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// 100 000 frames of random bytes and of randomly damaged valid frames: no panic, and a
/// frame is only ever sent within its own bounds. `FULCRUM_FRAME_SEED` replays a seed.
#[test]
fn random_frames_never_panic() {
    let seed = std::env::var("FULCRUM_FRAME_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d_u64);
    let mut rng = Rng(seed | 1);
    let valid = [
        f().bytes(),
        F {
            payload: vec![1; 100],
            partial_csum: true,
            ..f()
        }
        .bytes(),
        arp_frame(1, CLIENT, CLIENT_IP, VIP),
    ];
    let mut buf = vec![0u8; 2048];
    let mut sent = 0;
    for i in 0..100_000u32 {
        let len = if i % 2 == 0 {
            let n = (rng.next() % 1600) as usize;
            for b in &mut buf[..n] {
                *b = rng.next() as u8;
            }
            n
        } else {
            let v = &valid[(rng.next() % 3) as usize];
            buf[..v.len()].copy_from_slice(v);
            let flips = 1 + rng.next() % 4;
            for _ in 0..flips {
                let p = (rng.next() as usize) % v.len();
                buf[p] = rng.next() as u8;
            }
            let cut = (rng.next() as usize) % (v.len() + 1);
            if rng.next() % 4 == 0 {
                cut
            } else {
                v.len()
            }
        };
        let aux = Aux {
            pkttype: (rng.next() % 6) as u8,
            status: (rng.next() as u32) & (TP_STATUS_CSUMNOTREADY | super::TP_STATUS_VLAN_VALID),
            wire_len: len,
        };
        let frame = &mut buf[..len];
        match process(frame, &aux, &local(), &mut Stub::default()) {
            Verdict::Forward { len: n, .. } | Verdict::ArpReply { len: n } => {
                assert!(n <= len, "seed {seed}: iteration {i} sends {n} of {len}");
                sent += 1;
            }
            Verdict::Learned | Verdict::Drop(_) | Verdict::NeighbourAdvert(_) => {}
        }
    }
    assert!(sent > 0, "the damaged-frame half must still forward some");
}

/// A valid IPv4 SYN from the client to (`vip`, `port`), for the other test files.
pub(in crate::direct::frame) fn tests_v4_syn(vip: Ipv4Addr, port: u16) -> Vec<u8> {
    F {
        dst: vip,
        dport: port,
        ..f()
    }
    .bytes()
}
