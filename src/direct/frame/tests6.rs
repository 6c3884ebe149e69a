//! Table-driven tests of [`super::process`] for IPv6 (TCP to an IPv6 VIP, neighbour
//! discovery) and for several VIPs in one [`Local`]: `{description, input frame, aux,
//! expected verdict, expected output frame}`, as in `tests.rs`.

use super::*;
use crate::direct::stats::DropReason as R;

const OUR: MacAddr = MacAddr(0x02, 0x99, 0, 0, 0, 0x11);
const CLIENT: MacAddr = MacAddr(0x02, 0x99, 0, 0, 0, 0x10);
const SRV1: MacAddr = MacAddr(0x02, 0x99, 0, 0, 0, 0x21);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 0x100);
const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 0x10);
/// The node the shared stub knows (see `tests.rs`).
pub(super) const SRV1_IP6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 0x21);
const VIP4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 100);

/// One IPv6 VIP on port 80 and one IPv4 VIP on ports 80 and 443.
fn local() -> Local {
    Local {
        mac: OUR,
        vips: Vips::new(&[
            SocketAddr::from((VIP6, 80)),
            SocketAddr::from((VIP4, 80)),
            SocketAddr::from((VIP4, 443)),
        ]),
        max_frame: 1514,
        answer_arp: true,
    }
}

#[derive(Default)]
struct Stub {
    decided: Vec<TcpMeta>,
}

impl Decide for Stub {
    fn decide(&mut self, pkt: &TcpMeta) -> Result<Target, DropReason> {
        self.decided.push(*pkt);
        Ok(Target { node: 1, mac: SRV1 })
    }
    fn learn(&mut self, ip: IpAddr, _mac: MacAddr) -> bool {
        ip == IpAddr::V6(SRV1_IP6)
    }
}

fn ones_sum(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, len: usize) -> u32 {
    let mut p = [0u8; 40];
    p[0..16].copy_from_slice(&src.octets());
    p[16..32].copy_from_slice(&dst.octets());
    p[32..36].copy_from_slice(&(len as u32).to_be_bytes());
    p[39] = next;
    ones_sum(&p, 0)
}

/// Knobs of a test IPv6 TCP frame.
#[derive(Clone)]
struct F6 {
    dst_mac: MacAddr,
    src_mac: MacAddr,
    version: u8,
    payload_len: Option<u16>,
    next: u8,
    /// An 8-byte extension header inserted before TCP (its next header is TCP).
    ext: bool,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    data_off: u8,
    payload: Vec<u8>,
    partial_csum: bool,
    padding: usize,
}

fn f6() -> F6 {
    F6 {
        dst_mac: OUR,
        src_mac: CLIENT,
        version: 6,
        payload_len: None,
        next: 6,
        ext: false,
        src: CLIENT_IP6,
        dst: VIP6,
        sport: 40000,
        dport: 80,
        tcp_flags: 0x02,
        data_off: 5,
        payload: Vec::new(),
        partial_csum: false,
        padding: 0,
    }
}

impl F6 {
    fn bytes(&self) -> Vec<u8> {
        let ext_len = if self.ext { 8 } else { 0 };
        let tcp_len = 20 + self.payload.len();
        let mut b = Vec::new();
        b.extend_from_slice(&self.dst_mac.octets());
        b.extend_from_slice(&self.src_mac.octets());
        b.extend_from_slice(&[0x86, 0xdd]);
        b.extend_from_slice(&[self.version << 4, 0, 0, 0]);
        let plen = self.payload_len.unwrap_or((ext_len + tcp_len) as u16);
        b.extend_from_slice(&plen.to_be_bytes());
        b.push(self.next);
        b.push(64);
        b.extend_from_slice(&self.src.octets());
        b.extend_from_slice(&self.dst.octets());
        if self.ext {
            b.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // next: TCP, PadN
        }
        let t = b.len();
        b.extend_from_slice(&self.sport.to_be_bytes());
        b.extend_from_slice(&self.dport.to_be_bytes());
        b.extend_from_slice(&1000u32.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.push(self.data_off << 4);
        b.push(self.tcp_flags);
        b.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        b.extend_from_slice(&self.payload);
        let ps = pseudo6(self.src, self.dst, 6, tcp_len);
        let c = if self.partial_csum {
            ps as u16
        } else {
            !(ones_sum(&b[t..], ps) as u16)
        };
        b[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
        b.extend(std::iter::repeat_n(0u8, self.padding));
        b
    }
}

fn forwarded(spec: &F6) -> Vec<u8> {
    F6 {
        dst_mac: SRV1,
        src_mac: OUR,
        partial_csum: false,
        padding: 0,
        ..spec.clone()
    }
    .bytes()
}

/// An ND frame: `ty` 135/136 with `target`, from (`src_mac`, `src`) to (`dst_mac`,
/// `dst`), one link-layer option carrying `src_mac`, NA flags `flags`.
#[allow(clippy::too_many_arguments)]
fn nd(
    ty: u8,
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    flags: u8,
    hop_limit: u8,
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&dst_mac.octets());
    b.extend_from_slice(&src_mac.octets());
    b.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 32, 58, hop_limit]);
    b.extend_from_slice(&src.octets());
    b.extend_from_slice(&dst.octets());
    let icmp = b.len();
    b.extend_from_slice(&[ty, 0, 0, 0, flags, 0, 0, 0]);
    b.extend_from_slice(&target.octets());
    b.extend_from_slice(&[if ty == 135 { 1 } else { 2 }, 1]);
    b.extend_from_slice(&src_mac.octets());
    let c = ndp::icmpv6_checksum(&src, &dst, &b[icmp..]);
    b[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
    b
}

fn ns_for(target: Ipv6Addr) -> Vec<u8> {
    let group = ndp::solicited_node(target);
    nd(
        135,
        CLIENT,
        ndp::multicast_mac(group),
        CLIENT_IP6,
        group,
        target,
        0,
        255,
    )
}

fn multicast(len: usize) -> Option<Aux> {
    Some(Aux {
        pkttype: pkttype::MULTICAST,
        ..Aux::host(len)
    })
}

struct Case {
    what: &'static str,
    input: Vec<u8>,
    aux: Option<Aux>,
    local: Local,
    verdict: Verdict,
    output: Option<Vec<u8>>,
}

fn case(what: &'static str, spec: F6, verdict: Verdict) -> Case {
    Case {
        what,
        input: spec.bytes(),
        aux: None,
        local: local(),
        verdict,
        output: None,
    }
}

fn fwd_case(what: &'static str, spec: F6, aux: Option<Aux>, completed: bool) -> Case {
    let out = forwarded(&spec);
    Case {
        what,
        input: spec.bytes(),
        aux,
        local: local(),
        verdict: Verdict::Forward {
            node: 1,
            len: out.len(),
            csum_completed: completed,
        },
        output: Some(out),
    }
}

fn drop(r: R) -> Verdict {
    Verdict::Drop(r)
}

fn cases() -> Vec<Case> {
    let partial = F6 {
        partial_csum: true,
        payload: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        tcp_flags: 0x18,
        ..f6()
    };
    let partial_len = partial.bytes().len();
    let mut standby = local();
    standby.answer_arp = false;
    let c = vec![
        fwd_case("SYN to [VIP6]:80", f6(), None, false),
        fwd_case(
            "ACK with data and Ethernet padding (cut)",
            F6 {
                tcp_flags: 0x10,
                payload: vec![9; 3],
                padding: 7,
                ..f6()
            },
            None,
            false,
        ),
        fwd_case(
            "partial checksum completed (RFC 8200 §8.1 pseudo-header)",
            partial,
            Some(Aux {
                status: TP_STATUS_CSUMNOTREADY,
                ..Aux::host(partial_len)
            }),
            true,
        ),
        case(
            "v6 VIP, port only the v4 VIP has",
            F6 { dport: 443, ..f6() },
            drop(R::WrongPort),
        ),
        case(
            "another IPv6 destination",
            F6 {
                dst: "fd99::101".parse().unwrap(),
                ..f6()
            },
            drop(R::NotForVip),
        ),
        case(
            "hop-by-hop options header",
            F6 {
                next: 0,
                ext: true,
                ..f6()
            },
            drop(R::Ipv6ExtHeader),
        ),
        case(
            "destination options header",
            F6 {
                next: 60,
                ext: true,
                ..f6()
            },
            drop(R::Ipv6ExtHeader),
        ),
        case(
            "routing header",
            F6 {
                next: 43,
                ext: true,
                ..f6()
            },
            drop(R::Ipv6ExtHeader),
        ),
        case(
            "fragment header",
            F6 {
                next: 44,
                ext: true,
                ..f6()
            },
            drop(R::Fragment),
        ),
        case("UDP", F6 { next: 17, ..f6() }, drop(R::NotTcp)),
        case(
            "version 4 in an IPv6 ethertype",
            F6 { version: 4, ..f6() },
            drop(R::BadHeader),
        ),
        case(
            "payload length past the frame",
            F6 {
                payload_len: Some(21),
                ..f6()
            },
            drop(R::BadLength),
        ),
        case(
            "payload length shorter than a TCP header",
            F6 {
                payload_len: Some(12),
                ..f6()
            },
            drop(R::Truncated),
        ),
        case(
            "TCP data offset 4",
            F6 {
                data_off: 4,
                ..f6()
            },
            drop(R::BadLength),
        ),
        case(
            "multicast source",
            F6 {
                src: "ff02::1".parse().unwrap(),
                ..f6()
            },
            drop(R::Martian),
        ),
        case(
            "source is the VIP",
            F6 { src: VIP6, ..f6() },
            drop(R::Martian),
        ),
        case(
            "IPv4-mapped source",
            F6 {
                src: "::ffff:10.99.0.10".parse().unwrap(),
                ..f6()
            },
            drop(R::Martian),
        ),
        case(
            "TCP to another host's MAC",
            F6 {
                dst_mac: SRV1,
                ..f6()
            },
            drop(R::NotForUs),
        ),
        Case {
            what: "NS for the VIP (to its solicited-node group) is answered",
            input: ns_for(VIP6),
            aux: multicast(86),
            local: local(),
            verdict: Verdict::NeighbourAdvert(ndp::Answer {
                target: VIP6,
                eth_dst: CLIENT,
                dst: CLIENT_IP6,
                solicited: true,
            }),
            output: None,
        },
        Case {
            what: "standby: NS for the VIP is not answered",
            input: ns_for(VIP6),
            aux: multicast(86),
            local: standby,
            verdict: drop(R::NdpIgnored),
            output: None,
        },
        Case {
            what: "NS for another address",
            input: ns_for(CLIENT_IP6),
            aux: multicast(86),
            local: local(),
            verdict: drop(R::NdpIgnored),
            output: None,
        },
        Case {
            what: "NS with hop limit 254 (came through a router)",
            input: {
                let mut f = ns_for(VIP6);
                f[21] = 254;
                f
            },
            aux: multicast(86),
            local: local(),
            verdict: drop(R::NdpMalformed),
            output: None,
        },
        Case {
            what: "NA from a node teaches its MAC",
            input: nd(136, SRV1, OUR, SRV1_IP6, CLIENT_IP6, SRV1_IP6, 0x60, 255),
            aux: None,
            local: local(),
            verdict: Verdict::Learned,
            output: None,
        },
        Case {
            what: "NA from a host that is not a node",
            input: nd(
                136, CLIENT, OUR, CLIENT_IP6, SRV1_IP6, CLIENT_IP6, 0x60, 255,
            ),
            aux: None,
            local: local(),
            verdict: drop(R::NdpIgnored),
            output: None,
        },
        Case {
            what: "another host advertises the VIP",
            input: nd(
                136,
                SRV1,
                ndp::multicast_mac(ndp::ALL_NODES),
                VIP6,
                ndp::ALL_NODES,
                VIP6,
                0x20,
                255,
            ),
            aux: multicast(86),
            local: local(),
            verdict: drop(R::VipConflict),
            output: None,
        },
        Case {
            what: "NS from a node (its source link-layer option teaches its MAC)",
            input: nd(135, SRV1, OUR, SRV1_IP6, CLIENT_IP6, CLIENT_IP6, 0, 255),
            aux: None,
            local: local(),
            verdict: Verdict::Learned,
            output: None,
        },
        Case {
            what: "ICMPv6 echo request to the VIP",
            input: {
                let mut f = ns_for(VIP6);
                f[54] = 128;
                f
            },
            aux: None,
            local: local(),
            verdict: drop(R::NdpIgnored),
            output: None,
        },
    ];
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
            Verdict::Forward { len, .. } => {
                let expect = c.output.as_ref().expect("a forward case has an output");
                assert_eq!(&frame[..len], &expect[..], "{}", c.what);
            }
            _ => assert_eq!(frame, c.input, "{}: frame left alone", c.what),
        }
    }
}

#[test]
fn several_vips_each_with_its_ports() {
    let l = local();
    for (vip, port, forwarded) in [(VIP4, 80, true), (VIP4, 443, true), (VIP4, 8080, false)] {
        let mut frame = super::tests::tests_v4_syn(vip, port);
        let n = frame.len();
        let v = process(&mut frame, &Aux::host(n), &l, &mut Stub::default());
        assert_eq!(
            matches!(v, Verdict::Forward { .. }),
            forwarded,
            "{vip}:{port} {v:?}"
        );
        if !forwarded {
            assert_eq!(v, drop(R::WrongPort));
        }
    }
    let mut frame = super::tests::tests_v4_syn(Ipv4Addr::new(10, 99, 0, 101), 80);
    let n = frame.len();
    assert_eq!(
        process(&mut frame, &Aux::host(n), &l, &mut Stub::default()),
        drop(R::NotForVip)
    );
    // ARP is answered for the v4 VIP; the v6 VIP is answered by ND (table above).
    assert_eq!(l.vips.v4_addrs().collect::<Vec<_>>(), vec![VIP4]);
    assert_eq!(l.vips.v6_addrs().collect::<Vec<_>>(), vec![VIP6]);
}

#[test]
fn truncations_are_dropped() {
    let syn = f6().bytes();
    for n in [0, 13, 14, 14 + 39, 14 + 40, 14 + 59] {
        let mut frame = syn[..n].to_vec();
        let v = process(&mut frame, &Aux::host(n), &local(), &mut Stub::default());
        assert!(
            matches!(v, Verdict::Drop(R::Truncated) | Verdict::Drop(R::BadLength)),
            "{n}: {v:?}"
        );
    }
}

#[test]
fn decider_sees_the_v6_flow() {
    let mut d = Stub::default();
    let mut frame = F6 {
        tcp_flags: 0x11,
        sport: 1234,
        ..f6()
    }
    .bytes();
    process(&mut frame, &Aux::host(74), &local(), &mut d);
    assert_eq!(
        d.decided,
        vec![TcpMeta {
            tuple: FlowKey::V6(FiveTuple6 {
                src: CLIENT_IP6,
                dst: VIP6,
                sport: 1234,
                dport: 80,
                proto: 6
            }),
            flags: 0x11,
            ip_len: 60,
        }]
    );
}

#[test]
fn answered_na_bytes_are_a_valid_solicited_override_advert() {
    let mut frame = ns_for(VIP6);
    let v = process(
        &mut frame,
        &multicast(86).unwrap(),
        &local(),
        &mut Stub::default(),
    );
    let Verdict::NeighbourAdvert(a) = v else {
        panic!("{v:?}")
    };
    let mut out = [0u8; ndp::ND_FRAME_LEN];
    let n = ndp::emit_answer(&mut out, OUR, &a).unwrap();
    assert_eq!(&out[..6], &CLIENT.octets());
    assert_eq!(&out[6..12], &OUR.octets());
    let r = NdpRepr::parse(&out[14..n]).unwrap();
    assert_eq!((r.src, r.dst), (VIP6, CLIENT_IP6));
    assert_eq!(
        r.msg,
        NdpMessage::Advert {
            target: VIP6,
            target_mac: Some(OUR),
            router: false,
            solicited: true,
            override_: true
        }
    );
}

#[test]
fn completed_v6_checksum_verifies() {
    for payload in [&b""[..], b"x", &[0xa5; 999]] {
        let spec = F6 {
            partial_csum: true,
            payload: payload.to_vec(),
            tcp_flags: 0x18,
            ..f6()
        };
        let mut frame = spec.bytes();
        let aux = Aux {
            status: TP_STATUS_CSUMNOTREADY,
            ..Aux::host(frame.len())
        };
        let v = process(&mut frame, &aux, &local(), &mut Stub::default());
        let Verdict::Forward { len, .. } = v else {
            panic!("{v:?}")
        };
        let tcp = &frame[54..len];
        assert_eq!(
            ones_sum(tcp, pseudo6(CLIENT_IP6, VIP6, 6, tcp.len())),
            0xffff
        );
    }
}

#[test]
fn random_v6_frames_never_panic() {
    let mut x: u64 = 0x0123_4567_89ab_cdef;
    let valid = [f6().bytes(), ns_for(VIP6)];
    let mut buf = vec![0u8; 1600];
    for i in 0..50_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = &valid[(x % 2) as usize];
        buf[..v.len()].copy_from_slice(v);
        for k in 0..(1 + x % 3) {
            let p = ((x >> (8 + 8 * k)) as usize) % v.len();
            buf[p] = (x >> (3 * k)) as u8;
        }
        let len = if i % 3 == 0 {
            ((x >> 40) as usize) % (v.len() + 1)
        } else {
            v.len()
        };
        let aux = Aux {
            pkttype: ((x >> 20) % 4) as u8,
            status: (x as u32) & TP_STATUS_CSUMNOTREADY,
            wire_len: len,
        };
        if let Verdict::Forward { len: n, .. } =
            process(&mut buf[..len], &aux, &local(), &mut Stub::default())
        {
            assert!(n <= len);
        }
    }
}
