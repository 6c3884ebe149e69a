//! Neighbour Discovery for direct mode's IPv6 VIPs (RFC 4861): the responder that
//! answers neighbour solicitations for a VIP, the solicitations that learn the nodes'
//! MAC addresses, and the unsolicited advertisements that announce a VIP.
//!
//! The IPv6 counterpart of [`super::arp`], in the same wire style: [`NdpRepr::parse`]
//! validates an IPv6 packet carrying a neighbour solicitation (NS, type 135) or
//! advertisement (NA, type 136) and [`emit_ns`] / [`emit_na`] write a complete frame
//! into a caller's buffer. No allocation; every malformed input is an `Err`, never a
//! panic (fuzzed by `fuzz/fuzz_targets/direct_ndp.rs`).
//!
//! What is checked on receive (RFC 4861 §7.1.1 for NS, §7.1.2 for NA): IPv6 version,
//! next header ICMPv6 directly (an extension header before ND is refused: ND never
//! needs one, and skipping them is a classic evasion vector), payload length within the
//! frame, hop limit 255 (the message was not forwarded by a router: only an on-link
//! host can have sent it), the ICMPv6 checksum, code 0, ICMPv6 length ≥ 24, the target
//! not multicast, every option with a non-zero length that fits; an NS from the
//! unspecified address (DAD, RFC 4862) carries no source link-layer option; an NA to a
//! multicast address has the Solicited flag clear.
//!
//! What it does not do: router discovery, redirects, or any neighbour-cache state
//! machine beyond what [`super::arp::Neighbours`] keeps (learned MAC, refresh, forget).

use std::net::Ipv6Addr;

use pnet::util::MacAddr;

use super::stats::DropReason;

/// ICMPv6 next-header value (RFC 8200 §4 / IANA).
pub const NEXT_ICMPV6: u8 = 58;
/// ICMPv6 type: neighbour solicitation (RFC 4861 §4.3).
pub const NS: u8 = 135;
/// ICMPv6 type: neighbour advertisement (RFC 4861 §4.4).
pub const NA: u8 = 136;
/// Option type: source link-layer address (RFC 4861 §4.6.1).
const OPT_SLLA: u8 = 1;
/// Option type: target link-layer address (RFC 4861 §4.6.1).
const OPT_TLLA: u8 = 2;
/// Hop limit of every ND message sent, and required on receive (RFC 4861 §7.1).
pub const HOP_LIMIT: u8 = 255;
/// NA flags (RFC 4861 §4.4): Router, Solicited, Override, in the first reserved byte.
const FLAG_R: u8 = 0x80;
const FLAG_S: u8 = 0x40;
const FLAG_O: u8 = 0x20;

const ETH: usize = 14;
const IP6: usize = 40;
/// An NS or NA with one link-layer address option: 14 + 40 + 24 + 8 bytes.
pub const ND_FRAME_LEN: usize = ETH + IP6 + 24 + 8;

/// The all-nodes multicast address ff02::1 (RFC 4291 §2.7.1).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A neighbour-discovery message we understand, as parsed from an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdpRepr {
    /// IPv6 source address.
    pub src: Ipv6Addr,
    /// IPv6 destination address.
    pub dst: Ipv6Addr,
    /// The message.
    pub msg: NdpMessage,
}

/// The two ND messages direct mode handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpMessage {
    /// Who has `target`? (RFC 4861 §4.3)
    Solicit {
        /// The address asked for.
        target: Ipv6Addr,
        /// The source link-layer address option, if present.
        source_mac: Option<MacAddr>,
    },
    /// `target` is at `target_mac` (RFC 4861 §4.4).
    Advert {
        /// The address advertised.
        target: Ipv6Addr,
        /// The target link-layer address option, if present.
        target_mac: Option<MacAddr>,
        /// Router flag.
        router: bool,
        /// Solicited flag (an answer to an NS).
        solicited: bool,
        /// Override flag (replace a cached link-layer address).
        override_: bool,
    },
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

fn mac(b: &[u8]) -> MacAddr {
    MacAddr(b[0], b[1], b[2], b[3], b[4], b[5])
}

/// Ones'-complement sum of `data` as big-endian 16-bit words, added to `acc`.
fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The ICMPv6 checksum of `msg` between `src` and `dst` (RFC 8200 §8.1 pseudo-header),
/// as it must be stored (the checksum field of `msg` counts: zero it first to compute,
/// leave it to verify — a valid message then sums to 0).
pub fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
    let mut acc = sum(&src.octets(), 0);
    acc = sum(&dst.octets(), acc);
    // Upper-layer length (32 bits) and next header; ND messages are far below 2^16.
    acc += (msg.len() as u32 >> 16) + (msg.len() as u32 & 0xffff);
    acc += u32::from(NEXT_ICMPV6);
    acc = sum(msg, acc);
    !fold(acc)
}

impl NdpRepr {
    /// Parses the IPv6 packet in `ip` (the frame after its Ethernet header, padding
    /// allowed) as an NS or NA (see the module documentation for the checks).
    /// `Err(NdpIgnored)` for other well-formed ICMPv6 or non-ICMPv6 packets.
    pub fn parse(ip: &[u8]) -> Result<NdpRepr, DropReason> {
        let h = ip.get(..IP6).ok_or(DropReason::Truncated)?;
        if h[0] >> 4 != 6 {
            return Err(DropReason::BadHeader);
        }
        if h[6] != NEXT_ICMPV6 {
            return Err(DropReason::NdpIgnored);
        }
        let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
        let icmp = ip.get(IP6..IP6 + plen).ok_or(DropReason::BadLength)?;
        let src = addr(&h[8..24]);
        let dst = addr(&h[24..40]);
        let ty = *icmp.first().ok_or(DropReason::Truncated)?;
        if ty != NS && ty != NA {
            return Err(DropReason::NdpIgnored);
        }
        // RFC 4861 §7.1.1/§7.1.2: hop limit 255, checksum, code 0, length ≥ 24.
        if h[7] != HOP_LIMIT {
            return Err(DropReason::NdpMalformed);
        }
        if icmp.len() < 24 {
            return Err(DropReason::Truncated);
        }
        if icmpv6_checksum(&src, &dst, icmp) != 0 || icmp[1] != 0 {
            return Err(DropReason::NdpMalformed);
        }
        let target = addr(&icmp[8..24]);
        if target.is_multicast() {
            return Err(DropReason::NdpMalformed);
        }
        let want = if ty == NS { OPT_SLLA } else { OPT_TLLA };
        let lladdr = options(&icmp[24..], want)?;
        let msg = if ty == NS {
            // §7.1.1: from the unspecified address (DAD), no source link-layer option.
            if src.is_unspecified() && lladdr.is_some() {
                return Err(DropReason::NdpMalformed);
            }
            NdpMessage::Solicit {
                target,
                source_mac: lladdr,
            }
        } else {
            let flags = icmp[4];
            // §7.1.2: a multicast destination with the Solicited flag is invalid.
            if dst.is_multicast() && flags & FLAG_S != 0 {
                return Err(DropReason::NdpMalformed);
            }
            NdpMessage::Advert {
                target,
                target_mac: lladdr,
                router: flags & FLAG_R != 0,
                solicited: flags & FLAG_S != 0,
                override_: flags & FLAG_O != 0,
            }
        };
        Ok(NdpRepr { src, dst, msg })
    }
}

/// Walks ND options (RFC 4861 §4.6: type, length in units of 8 bytes, never 0), and
/// returns the link-layer address of the first option of type `want`. Options of
/// other types are skipped, as §4.6 requires.
fn options(mut opts: &[u8], want: u8) -> Result<Option<MacAddr>, DropReason> {
    let mut found = None;
    while !opts.is_empty() {
        let (ty, len) = match opts {
            [t, l, ..] => (*t, usize::from(*l) * 8),
            _ => return Err(DropReason::NdpMalformed),
        };
        if len == 0 || len > opts.len() {
            return Err(DropReason::NdpMalformed);
        }
        if ty == want && found.is_none() {
            // An Ethernet link-layer address option is exactly 8 bytes (RFC 2464 §6).
            if len != 8 {
                return Err(DropReason::NdpMalformed);
            }
            found = Some(mac(&opts[2..8]));
        }
        opts = &opts[len..];
    }
    Ok(found)
}

/// The solicited-node multicast address of `ip` (RFC 4291 §2.7.1): ff02::1:ffXX:XXXX.
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet multicast address of an IPv6 multicast address (RFC 2464 §7):
/// 33:33 followed by its last four bytes.
pub fn multicast_mac(ip: Ipv6Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr(0x33, 0x33, o[12], o[13], o[14], o[15])
}

/// Writes Ethernet + IPv6 + an ICMPv6 ND message of type `ty` with one link-layer
/// address option (`opt`, `our_mac`) and the 4 flag/reserved bytes `flags`.
#[allow(clippy::too_many_arguments)]
fn emit(
    buf: &mut [u8],
    eth_dst: MacAddr,
    our_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ty: u8,
    flags: u8,
    target: Ipv6Addr,
    opt: u8,
) -> Option<usize> {
    let f = buf.get_mut(..ND_FRAME_LEN)?;
    f.fill(0);
    let m = |x: MacAddr| [x.0, x.1, x.2, x.3, x.4, x.5];
    f[0..6].copy_from_slice(&m(eth_dst));
    f[6..12].copy_from_slice(&m(our_mac));
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    let ip = &mut f[ETH..];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = NEXT_ICMPV6;
    ip[7] = HOP_LIMIT;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let icmp = &mut ip[IP6..];
    icmp[0] = ty;
    icmp[4] = flags;
    icmp[8..24].copy_from_slice(&target.octets());
    icmp[24] = opt;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&m(our_mac));
    let c = icmpv6_checksum(&src, &dst, icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(ND_FRAME_LEN)
}

/// Writes a neighbour solicitation for `target` from (`our_mac`, `our_ip`) to the
/// target's solicited-node multicast address (RFC 4861 §7.2.2), with our source
/// link-layer address option so the node can answer without resolving us first.
/// Returns the length, or `None` if `buf` is shorter than [`ND_FRAME_LEN`].
pub fn emit_ns(
    buf: &mut [u8],
    our_mac: MacAddr,
    our_ip: Ipv6Addr,
    target: Ipv6Addr,
) -> Option<usize> {
    let dst = solicited_node(target);
    emit(
        buf,
        multicast_mac(dst),
        our_mac,
        our_ip,
        dst,
        NS,
        0,
        target,
        OPT_SLLA,
    )
}

/// Writes a neighbour advertisement for `target` (one of our VIPs) from `our_mac`, to
/// (`eth_dst`, `dst`), with the Override flag and the target link-layer address option
/// (RFC 4861 §7.2.4), Solicited when it answers a unicast-sourced NS.
pub fn emit_na(
    buf: &mut [u8],
    our_mac: MacAddr,
    target: Ipv6Addr,
    eth_dst: MacAddr,
    dst: Ipv6Addr,
    solicited: bool,
) -> Option<usize> {
    let flags = FLAG_O | if solicited { FLAG_S } else { 0 };
    emit(
        buf, eth_dst, our_mac, target, dst, NA, flags, target, OPT_TLLA,
    )
}

/// The unsolicited NA that announces `vip` at `our_mac` (RFC 4861 §7.2.6): to all-nodes,
/// Override set, Solicited clear — what keepalived sends on takeover.
pub fn emit_unsolicited_na(buf: &mut [u8], our_mac: MacAddr, vip: Ipv6Addr) -> Option<usize> {
    emit_na(
        buf,
        our_mac,
        vip,
        multicast_mac(ALL_NODES),
        ALL_NODES,
        false,
    )
}

/// The advertisement that answers a solicitation for a VIP: who to send it to. Built by
/// [`answer_for`] (pure, from the received frame), written by [`emit_answer`] into a
/// buffer of the sender's (the NA may be longer than the NS it answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The VIP advertised.
    pub target: Ipv6Addr,
    /// Ethernet destination.
    pub eth_dst: MacAddr,
    /// IPv6 destination.
    pub dst: Ipv6Addr,
    /// Solicited flag.
    pub solicited: bool,
}

/// If `ns` (received with Ethernet source `eth_src`) solicits `vip`, the answer (RFC
/// 4861 §7.2.4): to the soliciting host, Solicited + Override, or, for a DAD probe from
/// the unspecified address, to all-nodes without Solicited.
pub fn answer_for(ns: &NdpRepr, eth_src: MacAddr, vip: Ipv6Addr) -> Option<Answer> {
    let NdpMessage::Solicit { target, source_mac } = ns.msg else {
        return None;
    };
    if target != vip {
        return None;
    }
    if ns.src.is_unspecified() {
        return Some(Answer {
            target: vip,
            eth_dst: multicast_mac(ALL_NODES),
            dst: ALL_NODES,
            solicited: false,
        });
    }
    // The reply goes to the link-layer address the NS carried, else to its sender.
    let to = source_mac.unwrap_or(eth_src);
    super::arp::is_unicast(to).then_some(Answer {
        target: vip,
        eth_dst: to,
        dst: ns.src,
        solicited: true,
    })
}

/// Writes the advertisement `a` from `our_mac` into `buf`; `None` if `buf` is shorter
/// than [`ND_FRAME_LEN`].
pub fn emit_answer(buf: &mut [u8], our_mac: MacAddr, a: &Answer) -> Option<usize> {
    emit_na(buf, our_mac, a.target, a.eth_dst, a.dst, a.solicited)
}

/// [`answer_for`] then [`emit_answer`], for tests.
#[cfg(test)]
fn answer(
    buf: &mut [u8],
    ns: &NdpRepr,
    eth_src: MacAddr,
    vip: Ipv6Addr,
    our_mac: MacAddr,
) -> Option<usize> {
    emit_answer(buf, our_mac, &answer_for(ns, eth_src, vip)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR: MacAddr = MacAddr(0x02, 0x99, 0, 0, 0, 0x11);
    const CLIENT: MacAddr = MacAddr(0x02, 0x99, 0, 0, 0, 0x10);

    fn vip() -> Ipv6Addr {
        "fd99::100".parse().unwrap()
    }
    fn client() -> Ipv6Addr {
        "fd99::10".parse().unwrap()
    }

    /// The static fixture: the client (fd99::10, 02:99:00:00:00:10) solicits fd99::100,
    /// as Linux sends it (checksum computed by hand below and cross-checked).
    fn ns_fixture() -> Vec<u8> {
        let mut f = vec![
            0x33, 0x33, 0xff, 0x00, 0x01, 0x00, // dst: solicited-node MAC of ::100
            0x02, 0x99, 0, 0, 0, 0x10, // src
            0x86, 0xdd, // IPv6
            0x60, 0, 0, 0, 0x00, 0x20, 58, 255, // v6, plen 32, ICMPv6, hop limit 255
            0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x10, // src fd99::10
            0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0x00, 0x01, 0x00, // dst
            135, 0, 0, 0, // NS, code 0, checksum (filled below)
            0, 0, 0, 0, // reserved
            0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, // target
            1, 1, 0x02, 0x99, 0, 0, 0, 0x10, // SLLA
        ];
        let c = icmpv6_checksum(&client(), &solicited_node(vip()), &f[54..]);
        f[56..58].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn fixture_checksum_is_the_independently_computed_one() {
        // Sum by hand of the pseudo-header and message (RFC 8200 §8.1), cross-checked
        // with pnet's implementation.
        let f = ns_fixture();
        let pnet_sum = pnet::util::ipv6_checksum(
            &f[54..],
            1,
            &[],
            &client(),
            &solicited_node(vip()),
            pnet::packet::ip::IpNextHeaderProtocols::Icmpv6,
        );
        assert_eq!(u16::from_be_bytes([f[56], f[57]]), pnet_sum);
    }

    #[test]
    fn parse_fixture() {
        let f = ns_fixture();
        let r = NdpRepr::parse(&f[14..]).unwrap();
        assert_eq!(
            r,
            NdpRepr {
                src: client(),
                dst: solicited_node(vip()),
                msg: NdpMessage::Solicit {
                    target: vip(),
                    source_mac: Some(CLIENT),
                },
            }
        );
    }

    #[test]
    fn emit_ns_reproduces_fixture() {
        let mut out = [0u8; 100];
        assert_eq!(
            emit_ns(&mut out, CLIENT, client(), vip()),
            Some(ND_FRAME_LEN)
        );
        assert_eq!(&out[..ND_FRAME_LEN], &ns_fixture()[..]);
        assert_eq!(emit_ns(&mut out[..85], CLIENT, client(), vip()), None);
    }

    #[test]
    fn answer_is_solicited_override_na_with_tlla() {
        let f = ns_fixture();
        let ns = NdpRepr::parse(&f[14..]).unwrap();
        let mut out = [0u8; 128];
        let n = answer(&mut out, &ns, CLIENT, vip(), OUR).unwrap();
        let na = &out[..n];
        // Ethernet: to the client, from us, IPv6.
        assert_eq!(&na[..12], &[2, 0x99, 0, 0, 0, 0x10, 2, 0x99, 0, 0, 0, 0x11]);
        assert_eq!(&na[12..14], &[0x86, 0xdd]);
        assert_eq!(na[14 + 7], 255, "hop limit");
        assert_eq!(na[54], 136);
        assert_eq!(na[58], 0x60, "Solicited + Override, not Router");
        assert_eq!(&na[78..86], &[2, 1, 0x02, 0x99, 0, 0, 0, 0x11], "TLLA = us");
        let r = NdpRepr::parse(&na[14..]).unwrap();
        assert_eq!((r.src, r.dst), (vip(), client()));
        assert_eq!(
            r.msg,
            NdpMessage::Advert {
                target: vip(),
                target_mac: Some(OUR),
                router: false,
                solicited: true,
                override_: true,
            }
        );
        // Not our VIP: no answer.
        assert_eq!(answer(&mut out, &ns, CLIENT, client(), OUR), None);
    }

    #[test]
    fn dad_probe_is_answered_to_all_nodes_without_solicited() {
        let mut f = ns_fixture();
        f[22..38].fill(0);
        f.truncate(78); // no SLLA from the unspecified address
        f[18..20].copy_from_slice(&24u16.to_be_bytes());
        f[56..58].fill(0);
        let c = icmpv6_checksum(&Ipv6Addr::UNSPECIFIED, &solicited_node(vip()), &f[54..]);
        f[56..58].copy_from_slice(&c.to_be_bytes());
        let ns = NdpRepr::parse(&f[14..]).unwrap();
        let mut out = [0u8; 128];
        let n = answer(&mut out, &ns, CLIENT, vip(), OUR).unwrap();
        assert_eq!(&out[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        let r = NdpRepr::parse(&out[14..n]).unwrap();
        assert_eq!(r.dst, ALL_NODES);
        assert!(matches!(
            r.msg,
            NdpMessage::Advert {
                solicited: false,
                override_: true,
                ..
            }
        ));
    }

    #[test]
    fn unsolicited_na_bytes() {
        let mut out = [0u8; ND_FRAME_LEN];
        emit_unsolicited_na(&mut out, OUR, vip()).unwrap();
        let expect_head = [
            0x33, 0x33, 0, 0, 0, 1, 2, 0x99, 0, 0, 0, 0x11, 0x86, 0xdd, // Ethernet
            0x60, 0, 0, 0, 0, 32, 58, 255, // IPv6, plen 32, ICMPv6, 255
        ];
        assert_eq!(&out[..22], &expect_head);
        assert_eq!(&out[22..38], &vip().octets(), "source = the VIP");
        assert_eq!(&out[38..54], &ALL_NODES.octets());
        assert_eq!(&out[54..55], &[136]);
        assert_eq!(out[58], 0x20, "Override only");
        assert_eq!(&out[62..78], &vip().octets(), "target = the VIP");
        assert_eq!(&out[78..86], &[2, 1, 2, 0x99, 0, 0, 0, 0x11]);
        assert_eq!(icmpv6_checksum(&vip(), &ALL_NODES, &out[54..]), 0);
    }

    #[test]
    fn truncated_and_garbage_are_errors() {
        let f = ns_fixture();
        for n in 0..f.len() - 14 {
            assert!(NdpRepr::parse(&f[14..14 + n]).is_err(), "truncated to {n}");
        }
        // {description, byte, value, fix the checksum so only that check fails, error}
        type Case = (&'static str, usize, u8, bool, DropReason);
        let cases: [Case; 9] = [
            ("version 4", 14, 0x40, false, DropReason::BadHeader),
            (
                "hop limit 254 (forwarded)",
                21,
                254,
                false,
                DropReason::NdpMalformed,
            ),
            (
                "bad checksum",
                57,
                f[57] ^ 1,
                false,
                DropReason::NdpMalformed,
            ),
            ("code 1", 55, 1, true, DropReason::NdpMalformed),
            ("zero option length", 79, 0, true, DropReason::NdpMalformed),
            (
                "option longer than packet",
                79,
                2,
                true,
                DropReason::NdpMalformed,
            ),
            ("an echo request", 54, 128, false, DropReason::NdpIgnored),
            ("next header TCP", 20, 6, false, DropReason::NdpIgnored),
            (
                "payload length past the frame",
                19,
                33,
                false,
                DropReason::BadLength,
            ),
        ];
        for (what, i, v, fix, want) in cases {
            let mut g = f.clone();
            g[i] = v;
            if fix {
                g[56..58].fill(0);
                let c = icmpv6_checksum(&client(), &solicited_node(vip()), &g[54..]);
                g[56..58].copy_from_slice(&c.to_be_bytes());
            }
            assert_eq!(NdpRepr::parse(&g[14..]), Err(want), "{what}");
        }
        // Multicast target.
        let mut g = f.clone();
        g[62] = 0xff;
        g[56..58].fill(0);
        let c = icmpv6_checksum(&client(), &solicited_node(vip()), &g[54..]);
        g[56..58].copy_from_slice(&c.to_be_bytes());
        assert_eq!(NdpRepr::parse(&g[14..]), Err(DropReason::NdpMalformed));
    }

    #[test]
    fn multicast_na_with_solicited_flag_is_refused() {
        let mut out = [0u8; ND_FRAME_LEN];
        emit_unsolicited_na(&mut out, OUR, vip()).unwrap();
        out[58] |= FLAG_S;
        out[56..58].fill(0);
        let c = icmpv6_checksum(&vip(), &ALL_NODES, &out[54..]);
        out[56..58].copy_from_slice(&c.to_be_bytes());
        assert_eq!(NdpRepr::parse(&out[14..]), Err(DropReason::NdpMalformed));
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift, seeded: reproducible.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = [0u8; 120];
        let base = ns_fixture();
        for round in 0..20_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if round % 2 == 0 {
                // Mostly-valid packets: flip a few bytes of the fixture.
                buf[..base.len() - 14].copy_from_slice(&base[14..]);
                let i = (x as usize >> 8) % (base.len() - 14);
                buf[i] ^= (x >> 32) as u8;
            }
            let n = (x as usize >> 16) % buf.len();
            let _ = NdpRepr::parse(&buf[..n]);
        }
    }

    #[test]
    fn solicited_node_and_multicast_mac() {
        let ip: Ipv6Addr = "fd99::21:4321:8765".parse().unwrap();
        assert_eq!(
            solicited_node(ip),
            "ff02::1:ff21:8765".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            multicast_mac(solicited_node(ip)),
            MacAddr(0x33, 0x33, 0xff, 0x21, 0x87, 0x65)
        );
    }
}
