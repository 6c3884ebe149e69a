//! Gratuitous ARP for a VIP that this node has just taken (RFC 826 frame, RFC 5227
//! §3 "ARP Announcement" form).
//!
//! What it owns: the frame layout — built with pnet's packet types — and one
//! non-blocking send-only AF_PACKET socket ([`crate::sys::packet::SendSocket`]: the
//! kernel delivers it no frames, so nothing queues up unread).
//!
//! Request form on purpose: opcode request, sender IP = target IP = VIP, sender MAC =
//! ours, Ethernet destination broadcast. Linux neighbours update an existing entry from
//! it in any state; the reply form with a broadcast target MAC falls under
//! `neigh locktime` and can be ignored (measured in the lab, see `docs/failover.md`).
//!
//! An IPv6 VIP is announced the IPv6 way instead: an unsolicited neighbour
//! advertisement (RFC 4861 §7.2.6) to all-nodes ff02::1 with the Override flag and our
//! target link-layer address, Solicited clear, hop limit 255 — what keepalived sends on
//! takeover. Neighbours that have an entry for the VIP replace its MAC (Override); the
//! frame layout is direct mode's ([`crate::direct::ndp::emit_unsolicited_na`]), one
//! wire format for both users.
//!
//! What it does not do: decide how many to send or when — the election machine
//! spaces them ([`crate::ha::machine::Action::SendGarp`]; each action announces every
//! VIP once, so an IPv6 VIP gets as many advertisements as an IPv4 one gets ARPs).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pnet::packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet::packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet::util::MacAddr;

use crate::direct::ndp;
use crate::sys::packet::SendSocket;

/// Ethernet header + ARP payload for IPv4 over Ethernet.
const FRAME_LEN: usize = 14 + 28;
/// Frames are padded to the Ethernet minimum (without FCS).
pub const MIN_FRAME_LEN: usize = 60;

/// Builds the request-form gratuitous ARP frame for `vip` from `mac`.
pub fn frame(mac: MacAddr, vip: Ipv4Addr) -> [u8; MIN_FRAME_LEN] {
    let mut buf = [0u8; MIN_FRAME_LEN];
    {
        // The buffer is MIN_FRAME_LEN ≥ 14 bytes, so the view always fits.
        let Some(mut eth) = MutableEthernetPacket::new(&mut buf[..FRAME_LEN]) else {
            return buf;
        };
        eth.set_destination(MacAddr::broadcast());
        eth.set_source(mac);
        eth.set_ethertype(EtherTypes::Arp);
    }
    // 28 bytes after the Ethernet header: exactly an IPv4 ARP packet.
    if let Some(mut arp) = MutableArpPacket::new(&mut buf[14..FRAME_LEN]) {
        arp.set_hardware_type(ArpHardwareTypes::Ethernet);
        arp.set_protocol_type(EtherTypes::Ipv4);
        arp.set_hw_addr_len(6);
        arp.set_proto_addr_len(4);
        arp.set_operation(ArpOperations::Request);
        arp.set_sender_hw_addr(mac);
        arp.set_sender_proto_addr(vip);
        // RFC 5227 §2.1.1: the target hardware address is ignored; zero it.
        arp.set_target_hw_addr(MacAddr::zero());
        arp.set_target_proto_addr(vip);
    }
    buf
}

/// Builds the unsolicited neighbour advertisement for the IPv6 `vip` from `mac` (see
/// the module documentation): 86 bytes, Ethernet to 33:33:00:00:00:01.
pub fn na_frame(mac: MacAddr, vip: Ipv6Addr) -> [u8; ndp::ND_FRAME_LEN] {
    let mut buf = [0u8; ndp::ND_FRAME_LEN];
    // The buffer is exactly ND_FRAME_LEN bytes, which emit needs: cannot fail.
    let _ = ndp::emit_unsolicited_na(&mut buf, mac, vip);
    buf
}

/// Sends gratuitous ARPs (IPv4 VIPs) and unsolicited neighbour advertisements (IPv6
/// VIPs) on one interface.
pub struct GarpSender {
    socket: SendSocket,
    index: u32,
    mac: MacAddr,
}

impl GarpSender {
    /// Opens a send-only AF_PACKET socket for the interface `index` with address `mac`.
    pub fn open(index: u32, mac: MacAddr) -> io::Result<GarpSender> {
        Ok(GarpSender {
            socket: SendSocket::open()?,
            index,
            mac,
        })
    }

    /// Announces `vip`: one gratuitous ARP (IPv4) or unsolicited neighbour advertisement
    /// (IPv6). A full send queue is an error (`WouldBlock`): the machine sends several,
    /// so one lost frame is tolerated.
    pub fn send(&self, vip: IpAddr) -> io::Result<()> {
        match vip {
            IpAddr::V4(v4) => {
                let frame = frame(self.mac, v4);
                self.socket
                    .send_to(self.index, EtherTypes::Arp.0, [0xff; 6], &frame)
            }
            IpAddr::V6(v6) => {
                let frame = na_frame(self.mac, v6);
                let m = ndp::multicast_mac(ndp::ALL_NODES);
                let dst = [m.0, m.1, m.2, m.3, m.4, m.5];
                self.socket
                    .send_to(self.index, EtherTypes::Ipv6.0, dst, &frame)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet::packet::arp::ArpPacket;
    use pnet::packet::ethernet::EthernetPacket;
    use pnet::packet::Packet;

    /// 02:99:00:00:00:11 announcing 10.99.0.100.
    static FIXTURE: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination: broadcast
        0x02, 0x99, 0x00, 0x00, 0x00, 0x11, // source
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, // Ethernet, IPv4, 6, 4
        0x00, 0x01, // request
        0x02, 0x99, 0x00, 0x00, 0x00, 0x11, // sender MAC
        0x0a, 0x63, 0x00, 0x64, // sender IP = VIP
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC (ignored)
        0x0a, 0x63, 0x00, 0x64, // target IP = VIP
    ];

    fn mac() -> MacAddr {
        MacAddr::new(0x02, 0x99, 0, 0, 0, 0x11)
    }

    #[test]
    fn frame_matches_fixture_and_is_padded() {
        let f = frame(mac(), Ipv4Addr::new(10, 99, 0, 100));
        assert_eq!(&f[..42], &FIXTURE[..]);
        assert!(f[42..].iter().all(|b| *b == 0));
        assert_eq!(f.len(), MIN_FRAME_LEN);
    }

    /// 02:99:00:00:00:11 announcing fd99::100: the unsolicited NA, byte by byte.
    #[test]
    fn na_frame_matches_fixture() {
        let vip: Ipv6Addr = "fd99::100".parse().unwrap();
        let f = na_frame(mac(), vip);
        let mut want: Vec<u8> = vec![
            0x33, 0x33, 0x00, 0x00, 0x00, 0x01, // destination: all-nodes multicast MAC
            0x02, 0x99, 0x00, 0x00, 0x00, 0x11, // source
            0x86, 0xdd, // IPv6
            0x60, 0x00, 0x00, 0x00, // version 6, class 0, flow 0
            0x00, 0x20, 0x3a, 0xff, // payload 32, ICMPv6, hop limit 255 (RFC 4861 §7.1.2)
        ];
        want.extend_from_slice(&vip.octets()); // source = the VIP
        want.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0x88, 0x00]); // type 136 NA, code 0
        let csum = [f[56], f[57]];
        want.extend_from_slice(&csum);
        want.extend_from_slice(&[0x20, 0, 0, 0]); // Override only: not Router, not Solicited
        want.extend_from_slice(&vip.octets()); // target = the VIP
        want.extend_from_slice(&[0x02, 0x01, 0x02, 0x99, 0x00, 0x00, 0x00, 0x11]); // TLLA
        assert_eq!(&f[..], &want[..]);
        // The checksum is the RFC 8200 §8.1 one (pnet computes it independently).
        let icmp_sum = pnet::util::ipv6_checksum(
            &f[54..],
            1,
            &[],
            &vip,
            &ndp::ALL_NODES,
            pnet::packet::ip::IpNextHeaderProtocols::Icmpv6,
        );
        assert_eq!(u16::from_be_bytes(csum), icmp_sum);
        let back = ndp::NdpRepr::parse(&f[14..]).unwrap();
        assert_eq!(
            back.msg,
            ndp::NdpMessage::Advert {
                target: vip,
                target_mac: Some(mac()),
                router: false,
                solicited: false,
                override_: true
            }
        );
    }

    #[test]
    fn frame_parses_back_as_request_form_garp() {
        let f = frame(mac(), Ipv4Addr::new(192, 0, 2, 7));
        let eth = EthernetPacket::new(&f).unwrap();
        assert_eq!(eth.get_destination(), MacAddr::broadcast());
        assert_eq!(eth.get_ethertype(), EtherTypes::Arp);
        let arp = ArpPacket::new(eth.payload()).unwrap();
        assert_eq!(arp.get_operation(), ArpOperations::Request);
        assert_eq!(arp.get_sender_hw_addr(), mac());
        assert_eq!(arp.get_sender_proto_addr(), Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(arp.get_target_proto_addr(), Ipv4Addr::new(192, 0, 2, 7));
    }
}
