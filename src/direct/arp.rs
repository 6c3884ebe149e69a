//! ARP for direct mode (RFC 826): the responder for the VIP, the neighbour table that
//! learns the nodes' MAC addresses, and the frames we send (requests, gratuitous ARP).
//!
//! - **Responder**: the distributor does not hold the VIP as a local address (pitfall #5),
//!   so the kernel never answers ARP for it; [`answer`] turns a request for the VIP into
//!   the reply in place (same buffer, no allocation). Probes (sender IP 0.0.0.0,
//!   RFC 5227 §2.1.1) are answered too, as a host owning the address must.
//! - **Neighbour table**: node MACs are learned, never configured. [`Neighbours`] holds
//!   one entry per node IP, merges the sender of every ARP frame whose IP it tracks
//!   (RFC 826 "merge" step: replies to our requests, but also the nodes' own requests),
//!   and says when to send requests: at once for an unknown node, every `retry` while it
//!   stays unknown, every `refresh` once known. An entry not confirmed for
//!   `forget_after` is forgotten (the node is gone or has another MAC), so packets stop
//!   going to a MAC nobody answers for.
//! - **Announcements**: [`build_garp`] builds the request-form gratuitous ARP (sender IP =
//!   target IP = VIP; the reply form falls under Linux's `locktime`).
//!
//! Pure logic and byte layout: time comes in as `now`; sending is the worker's job.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use pnet::packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket};
use pnet::packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet::util::MacAddr;

use super::stats::DropReason;

/// Length of an ARP frame for IPv4 over Ethernet: 14 + 28 bytes (no padding).
pub const ARP_FRAME_LEN: usize = 42;

/// The fields of a valid IPv4-over-Ethernet ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request or reply.
    pub op: ArpOp,
    /// Sender hardware address.
    pub sender_mac: MacAddr,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: MacAddr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

/// The two ARP operations we understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    /// Who has `target_ip`?
    Request,
    /// `sender_ip` is at `sender_mac`.
    Reply,
}

impl ArpRepr {
    /// Parses the ARP payload of an Ethernet frame (`payload` = frame after 14 bytes).
    pub fn parse(payload: &[u8]) -> Result<ArpRepr, DropReason> {
        let p = ArpPacket::new(payload).ok_or(DropReason::Truncated)?;
        if p.get_hardware_type() != ArpHardwareTypes::Ethernet
            || p.get_protocol_type() != EtherTypes::Ipv4
            || p.get_hw_addr_len() != 6
            || p.get_proto_addr_len() != 4
        {
            return Err(DropReason::ArpMalformed);
        }
        let op = match p.get_operation() {
            ArpOperations::Request => ArpOp::Request,
            ArpOperations::Reply => ArpOp::Reply,
            _ => return Err(DropReason::ArpMalformed),
        };
        Ok(ArpRepr {
            op,
            sender_mac: p.get_sender_hw_addr(),
            sender_ip: p.get_sender_proto_addr(),
            target_mac: p.get_target_hw_addr(),
            target_ip: p.get_target_proto_addr(),
        })
    }

    /// Writes a complete Ethernet + ARP frame (42 bytes) into `buf`, from `src` to `dst`.
    /// Returns the length written, or `None` if `buf` is shorter than 42 bytes.
    pub fn emit(&self, src: MacAddr, dst: MacAddr, buf: &mut [u8]) -> Option<usize> {
        let buf = buf.get_mut(..ARP_FRAME_LEN)?;
        {
            let mut eth = MutableEthernetPacket::new(buf)?;
            eth.set_destination(dst);
            eth.set_source(src);
            eth.set_ethertype(EtherTypes::Arp);
        }
        let mut arp = MutableArpPacket::new(&mut buf[14..])?;
        arp.set_hardware_type(ArpHardwareTypes::Ethernet);
        arp.set_protocol_type(EtherTypes::Ipv4);
        arp.set_hw_addr_len(6);
        arp.set_proto_addr_len(4);
        arp.set_operation(match self.op {
            ArpOp::Request => ArpOperations::Request,
            ArpOp::Reply => ArpOperations::Reply,
        });
        arp.set_sender_hw_addr(self.sender_mac);
        arp.set_sender_proto_addr(self.sender_ip);
        arp.set_target_hw_addr(self.target_mac);
        arp.set_target_proto_addr(self.target_ip);
        Some(ARP_FRAME_LEN)
    }
}

/// Is `mac` usable as a neighbour's address (unicast, not zero)?
pub fn is_unicast(mac: MacAddr) -> bool {
    mac.0 & 1 == 0 && mac != MacAddr::zero()
}

/// If `req` asks for `vip`, the reply: from us (`our_mac`, `vip`) to the requester.
pub fn reply_for(req: &ArpRepr, vip: Ipv4Addr, our_mac: MacAddr) -> Option<ArpRepr> {
    (req.op == ArpOp::Request && req.target_ip == vip && is_unicast(req.sender_mac)).then_some(
        ArpRepr {
            op: ArpOp::Reply,
            sender_mac: our_mac,
            sender_ip: vip,
            target_mac: req.sender_mac,
            target_ip: req.sender_ip,
        },
    )
}

/// Answers `req` (parsed from `frame`) in place if it asks for `vip`: `frame[..42]`
/// becomes the reply. Returns the reply's length.
pub fn answer(frame: &mut [u8], req: &ArpRepr, vip: Ipv4Addr, our_mac: MacAddr) -> Option<usize> {
    let rep = reply_for(req, vip, our_mac)?;
    rep.emit(our_mac, req.sender_mac, frame)
}

/// Builds an ARP request for `target` from (`our_mac`, `our_ip`), broadcast.
/// `our_ip` may be 0.0.0.0 (an ARP probe) when the interface has no address.
pub fn build_request(
    buf: &mut [u8; ARP_FRAME_LEN],
    our_mac: MacAddr,
    our_ip: Ipv4Addr,
    target: Ipv4Addr,
) -> usize {
    let r = ArpRepr {
        op: ArpOp::Request,
        sender_mac: our_mac,
        sender_ip: our_ip,
        target_mac: MacAddr::zero(),
        target_ip: target,
    };
    // The buffer is exactly ARP_FRAME_LEN bytes, which emit needs: cannot fail.
    r.emit(our_mac, MacAddr::broadcast(), buf)
        .unwrap_or(ARP_FRAME_LEN)
}

/// Builds a request-form gratuitous ARP for `vip` (sender IP = target IP = VIP).
pub fn build_garp(buf: &mut [u8; ARP_FRAME_LEN], our_mac: MacAddr, vip: Ipv4Addr) -> usize {
    build_request(buf, our_mac, vip, vip)
}

/// Timing of neighbour resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourTiming {
    /// Re-request a known neighbour this often (confirms it is still there).
    pub refresh: Duration,
    /// Re-request an unknown neighbour this often.
    pub retry: Duration,
    /// Forget a MAC not confirmed for this long.
    pub forget_after: Duration,
}

impl Default for NeighbourTiming {
    fn default() -> Self {
        NeighbourTiming {
            refresh: Duration::from_secs(20),
            retry: Duration::from_secs(1),
            forget_after: Duration::from_secs(75),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Neighbour {
    mac: Option<MacAddr>,
    confirmed: Option<Instant>,
    next_request: Instant,
}

/// Node IP → MAC, learned from ARP (see the module documentation). Generic over the
/// address so IPv6 nodes, learned by neighbour discovery ([`super::ndp`]), get the same
/// resolve / refresh / forget schedule in a table of their own (`Neighbours<Ipv6Addr>`):
/// the IPv4 table's lookups hash exactly what they did before.
#[derive(Debug)]
pub struct Neighbours<A = Ipv4Addr> {
    entries: HashMap<A, Neighbour>,
    timing: NeighbourTiming,
}

impl<A: Copy + Eq + std::hash::Hash + Ord> Neighbours<A> {
    /// An empty table.
    pub fn new(timing: NeighbourTiming) -> Self {
        Neighbours {
            entries: HashMap::new(),
            timing,
        }
    }

    /// Tracks exactly these IPs: keeps what is known about the ones already tracked,
    /// schedules an immediate request for new ones, forgets the rest.
    pub fn set_targets(&mut self, ips: impl IntoIterator<Item = A>, now: Instant) {
        let mut next: HashMap<A, Neighbour> = HashMap::new();
        for ip in ips {
            let e = self.entries.get(&ip).copied().unwrap_or(Neighbour {
                mac: None,
                confirmed: None,
                next_request: now,
            });
            next.insert(ip, e);
        }
        self.entries = next;
    }

    /// The MAC of a tracked node, if known.
    #[inline]
    pub fn lookup(&self, ip: A) -> Option<MacAddr> {
        self.entries.get(&ip).and_then(|e| e.mac)
    }

    /// Merges an ARP sender. Returns whether `ip` is tracked (the information was used).
    pub fn learn(&mut self, ip: A, mac: MacAddr, now: Instant) -> bool {
        if !is_unicast(mac) {
            return false;
        }
        match self.entries.get_mut(&ip) {
            Some(e) => {
                e.mac = Some(mac);
                e.confirmed = Some(now);
                e.next_request = now + self.timing.refresh;
                true
            }
            None => false,
        }
    }

    /// A packet needed `ip`'s MAC and it is unknown: request it now unless a request
    /// went out less than `retry` ago.
    pub fn want(&mut self, ip: A, now: Instant) {
        if let Some(e) = self.entries.get_mut(&ip) {
            if e.mac.is_none() {
                e.next_request = e.next_request.min(now);
            }
        }
    }

    /// Appends the IPs to send a request for at `now` to `out`, reschedules them, and
    /// forgets MACs not confirmed for `forget_after`.
    pub fn due(&mut self, now: Instant, out: &mut Vec<A>) {
        for (ip, e) in self.entries.iter_mut() {
            if e.confirmed
                .is_some_and(|c| now.saturating_duration_since(c) >= self.timing.forget_after)
            {
                e.mac = None;
                e.confirmed = None;
            }
            if now >= e.next_request {
                out.push(*ip);
                // Known: confirm every `refresh` with up to a few retries before the
                // forget deadline; unknown: every `retry`.
                e.next_request = now + self.timing.retry;
                if e.mac.is_some() {
                    let since = e.confirmed.map_or(Duration::ZERO, |c| now - c);
                    if since < self.timing.refresh {
                        e.next_request = now + (self.timing.refresh - since);
                    }
                }
            }
        }
        out.sort_unstable();
    }
    /// When [`Neighbours::due`] next has something to do.
    #[cfg(test)]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.next_request).min()
    }
    /// How many tracked nodes have a known MAC.
    #[cfg(test)]
    pub fn known(&self) -> usize {
        self.entries.values().filter(|e| e.mac.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR: MacAddr = MacAddr(0x02, 0x99, 0, 0, 0, 0x11);
    const CLIENT: MacAddr = MacAddr(0x02, 0x99, 0, 0, 0, 0x10);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 100);
    const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);

    /// A request from the client for `target`, as bytes (the static fixture).
    fn request_bytes(target: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
            0x02, 0x99, 0, 0, 0, 0x10, // src
            0x08, 0x06, // ARP
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // eth/ipv4, request
            0x02, 0x99, 0, 0, 0, 0x10, 10, 99, 0, 10, // sender
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // target
        ];
        f[38..42].copy_from_slice(&target.octets());
        f
    }

    #[test]
    fn parse_fixture() {
        let f = request_bytes(VIP);
        let r = ArpRepr::parse(&f[14..]).unwrap();
        assert_eq!(
            r,
            ArpRepr {
                op: ArpOp::Request,
                sender_mac: CLIENT,
                sender_ip: CLIENT_IP,
                target_mac: MacAddr::zero(),
                target_ip: VIP,
            }
        );
    }

    #[test]
    fn emit_fixture_round_trip() {
        let f = request_bytes(VIP);
        let r = ArpRepr::parse(&f[14..]).unwrap();
        let mut out = [0u8; 60];
        assert_eq!(r.emit(CLIENT, MacAddr::broadcast(), &mut out), Some(42));
        assert_eq!(&out[..42], &f[..]);
        assert_eq!(r.emit(CLIENT, MacAddr::broadcast(), &mut out[..41]), None);
    }

    #[test]
    fn garbage_and_truncated_are_errors() {
        let f = request_bytes(VIP);
        for n in 0..28 {
            assert_eq!(
                ArpRepr::parse(&f[14..14 + n]),
                Err(DropReason::Truncated),
                "{n}"
            );
        }
        for (i, v) in [(15usize, 6u8), (17, 0xdd), (18, 8), (19, 16), (21, 9)] {
            let mut g = f.clone();
            g[i] = v;
            assert_eq!(
                ArpRepr::parse(&g[14..]),
                Err(DropReason::ArpMalformed),
                "byte {i}"
            );
        }
    }

    /// Table-driven: {description, input frame, expected reply frame}.
    #[test]
    fn responder_table() {
        let reply = vec![
            0x02, 0x99, 0, 0, 0, 0x10, // to the client
            0x02, 0x99, 0, 0, 0, 0x11, // from us
            0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02, // reply
            0x02, 0x99, 0, 0, 0, 0x11, 10, 99, 0, 100, // we have the VIP
            0x02, 0x99, 0, 0, 0, 0x10, 10, 99, 0, 10, // to the requester
        ];
        let mut probe = request_bytes(VIP);
        probe[28..32].copy_from_slice(&[0, 0, 0, 0]);
        let mut probe_reply = reply.clone();
        probe_reply[38..42].copy_from_slice(&[0, 0, 0, 0]);
        let mut bcast_sender = request_bytes(VIP);
        bcast_sender[22] = 0xff;
        let mut a_reply = request_bytes(VIP);
        a_reply[21] = 2;
        type Case = (&'static str, Vec<u8>, Option<Vec<u8>>);
        let cases: Vec<Case> = vec![
            (
                "request for the VIP",
                request_bytes(VIP),
                Some(reply.clone()),
            ),
            ("probe for the VIP (RFC 5227)", probe, Some(probe_reply)),
            (
                "request for another address",
                request_bytes(CLIENT_IP),
                None,
            ),
            ("multicast sender MAC", bcast_sender, None),
            ("a reply, not a request", a_reply, None),
        ];
        for (what, mut frame, expect) in cases {
            let req = ArpRepr::parse(&frame[14..]).unwrap();
            let got = answer(&mut frame, &req, VIP, OUR);
            match expect {
                Some(e) => {
                    assert_eq!(got, Some(42), "{what}");
                    assert_eq!(&frame[..42], &e[..], "{what}");
                }
                None => assert_eq!(got, None, "{what}"),
            }
        }
    }

    #[test]
    fn request_and_garp_frames() {
        let mut b = [0u8; ARP_FRAME_LEN];
        build_garp(&mut b, OUR, VIP);
        let g = ArpRepr::parse(&b[14..]).unwrap();
        assert_eq!(&b[..6], &[0xff; 6]);
        assert_eq!((g.op, g.sender_ip, g.target_ip), (ArpOp::Request, VIP, VIP));
        assert_eq!(g.sender_mac, OUR);
        build_request(&mut b, OUR, Ipv4Addr::new(10, 99, 0, 11), CLIENT_IP);
        let r = ArpRepr::parse(&b[14..]).unwrap();
        assert_eq!(
            (r.sender_ip, r.target_ip),
            (Ipv4Addr::new(10, 99, 0, 11), CLIENT_IP)
        );
    }

    #[test]
    fn neighbour_resolution_refresh_and_forget() {
        let t = NeighbourTiming::default();
        let mut n: Neighbours = Neighbours::new(t);
        let a = Ipv4Addr::new(10, 99, 0, 21);
        let b = Ipv4Addr::new(10, 99, 0, 22);
        let t0 = Instant::now();
        n.set_targets([a, b], t0);
        let mut out = Vec::new();
        n.due(t0, &mut out);
        assert_eq!(out, vec![a, b], "unknown: ask at once");
        out.clear();
        n.due(t0 + t.retry / 2, &mut out);
        assert!(out.is_empty());
        let mac = MacAddr(2, 0x99, 0, 0, 0, 0x21);
        assert!(n.learn(a, mac, t0 + Duration::from_millis(3)));
        assert!(!n.learn(Ipv4Addr::new(1, 2, 3, 4), mac, t0), "untracked");
        assert!(!n.learn(b, MacAddr::broadcast(), t0), "not unicast");
        assert_eq!(n.lookup(a), Some(mac));
        n.due(t0 + t.retry, &mut out);
        assert_eq!(out, vec![b], "b retried, a known");
        out.clear();
        // a is refreshed after `refresh`, then retried every `retry`, then forgotten.
        let t1 = t0 + Duration::from_millis(3) + t.refresh;
        n.due(t1, &mut out);
        assert!(out.contains(&a));
        out.clear();
        n.due(t1 + t.retry, &mut out);
        assert!(out.contains(&a), "unanswered refresh is retried");
        assert_eq!(n.lookup(a), Some(mac), "still usable");
        n.due(t0 + Duration::from_millis(3) + t.forget_after, &mut out);
        assert_eq!(n.lookup(a), None, "forgotten");
        // Removing a target forgets it; keeping one keeps what is known.
        n.learn(b, mac, t1);
        n.set_targets([b], t1);
        assert_eq!(n.lookup(b), Some(mac));
        assert_eq!(n.known(), 1);
    }

    #[test]
    fn want_advances_request_of_unknown_only() {
        let t = NeighbourTiming::default();
        let mut n: Neighbours = Neighbours::new(t);
        let a = Ipv4Addr::new(10, 99, 0, 21);
        let t0 = Instant::now();
        n.set_targets([a], t0);
        let mut out = Vec::new();
        n.due(t0, &mut out);
        n.want(a, t0 + Duration::from_millis(10));
        assert_eq!(n.next_deadline(), Some(t0 + Duration::from_millis(10)));
        n.learn(a, MacAddr(2, 0, 0, 0, 0, 1), t0);
        n.want(a, t0 + Duration::from_millis(20));
        assert_eq!(n.next_deadline(), Some(t0 + t.refresh));
    }
}
