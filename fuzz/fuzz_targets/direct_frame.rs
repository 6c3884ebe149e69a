//! Fuzz target for direct mode's frame parser (`fulcrum::direct::frame::process`).
//!
//! Owns nothing: the first two bytes choose the packet type and the auxdata status bits,
//! the rest is the received frame. With the first byte's high bit set, the auxdata is
//! what `--ring xdp` derives from the frame itself (`fulcrum::direct::xsk_aux`: packet
//! type from the destination MAC, a partial checksum recognised by its value), as the
//! AF_XDP path hands frames to `process`. `process` must return a verdict and never panic, and
//! what it sends must lie within the frame. The decider sends every TCP flow to one node
//! and knows one neighbour, so the rewrite and checksum paths are reached too. One IPv4
//! and one IPv6 VIP, so the IPv6 and neighbour-discovery paths are reached as well.
//! Run with `cargo +nightly fuzz run direct_frame`.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use fulcrum::direct::frame::{self, Aux, Decide, Local, Target, TcpMeta, Verdict, Vips};
use fulcrum::direct::DropReason;
use libfuzzer_sys::fuzz_target;
use pnet::util::MacAddr;

struct OneNode;

impl Decide for OneNode {
    fn decide(&mut self, _: &TcpMeta) -> Result<Target, DropReason> {
        Ok(Target {
            node: 0,
            mac: MacAddr(2, 0, 0, 0, 0, 0x21),
        })
    }
    fn learn(&mut self, ip: IpAddr, _: MacAddr) -> bool {
        ip == IpAddr::V4(Ipv4Addr::new(10, 99, 0, 21))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&[pkttype, status], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let mut frame = rest.to_vec();
    let local = Local {
        mac: MacAddr(2, 0x99, 0, 0, 0, 0x11),
        vips: Vips::new(&[
            SocketAddr::from(([10, 99, 0, 100], 80)),
            "[fd99::100]:80".parse::<SocketAddr>().unwrap_or(SocketAddr::from(([0; 4], 0))),
        ]),
        max_frame: 1514,
        answer_arp: status & 0x80 == 0,
    };
    let aux = if pkttype & 0x80 != 0 {
        fulcrum::direct::xsk_aux(&frame, local.mac)
    } else {
        Aux {
            pkttype: pkttype % 8,
            status: u32::from(status & 0x18),
            wire_len: frame.len(),
        }
    };
    let n = frame.len();
    match frame::process(&mut frame, &aux, &local, &mut OneNode) {
        Verdict::Forward { len, .. } | Verdict::ArpReply { len } => assert!(len <= n),
        Verdict::Learned | Verdict::Drop(_) | Verdict::NeighbourAdvert(_) => {}
    }
});
