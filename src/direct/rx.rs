//! A worker's receive path behind one interface: a packet ring (`--ring slots|blocks`)
//! or an AF_XDP socket (`--ring xdp`), both lending frames in place through
//! `next_batch` and sending what the caller asks for.
//!
//! AF_XDP tells less than a packet ring about a frame: no packet type and no
//! "checksum not ready" status. [`xsk_aux`] rebuilds both from the frame itself — the
//! packet type from the destination MAC, and a partial TCP checksum (what a veth or
//! virtio peer with checksum offload sends: the field holds only the pseudo-header sum)
//! by comparing the field with that sum — so [`super::frame::process`] sees what it
//! would have seen from the ring and completes such a checksum as before.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use pnet::util::MacAddr;

use super::frame::{pkttype, TP_STATUS_CSUMNOTREADY};
use crate::sys::bpf::{Link, Program, XskMap};
use crate::sys::packet::Aux;
use crate::sys::ring::{BlockReport, PacketRing, RxFrame};
use crate::sys::xsk::{XdpStatistics, XskSocket};

/// The XDP program attached to the interface, its `XSKMAP`, shared by the workers'
/// sockets: detached when the last worker drops it (the link's descriptor closes first).
#[derive(Debug)]
pub struct XdpAttach {
    /// Field order is drop order: detach, then unload, then free the map.
    pub _link: Link,
    /// The program.
    pub _prog: Program,
    /// Queue → socket.
    pub _map: XskMap,
}

/// Kernel counters of a receive path since the last look.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KernelDrops {
    /// Frames dropped for want of room (ring full, or no free UMEM chunk).
    pub dropped: u64,
    /// Descriptors the kernel found invalid.
    pub invalid: u64,
}

/// One worker's receive path.
// One per worker, made once and never moved on the packet path: no box needed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Rx {
    /// `--ring slots|blocks`.
    Ring(PacketRing),
    /// `--ring xdp`.
    Xsk {
        /// The socket.
        sock: XskSocket,
        /// Our MAC (the packet type of a frame is read from its destination).
        mac: MacAddr,
        /// Keeps the program attached while the socket lives.
        _attach: Arc<XdpAttach>,
        /// The kernel's counters at the last look.
        last: XdpStatistics,
    },
}

impl Rx {
    /// Takes the next batch of frames, lends each to `f`, sends what it asks for (see
    /// [`PacketRing::next_batch`] and [`XskSocket::next_batch`]).
    pub fn next_batch<F>(&mut self, mut f: F) -> Option<BlockReport>
    where
        F: FnMut(RxFrame<'_>) -> Option<usize>,
    {
        match self {
            Rx::Ring(r) => r.next_batch(f),
            Rx::Xsk { sock, mac, .. } => {
                let mac = *mac;
                sock.next_batch(|mut fr| {
                    fr.aux = xsk_aux(fr.data, mac);
                    f(fr)
                })
            }
        }
    }

    /// Frames waiting.
    pub fn ready(&self) -> usize {
        match self {
            Rx::Ring(r) => r.ready(),
            Rx::Xsk { sock, .. } => sock.ready(),
        }
    }

    /// What the kernel dropped or refused since the last call; `None` if it would not say.
    pub fn kernel_drops(&mut self) -> Option<KernelDrops> {
        match self {
            Rx::Ring(r) => r.drops().map(|dropped| KernelDrops {
                dropped,
                invalid: 0,
            }),
            Rx::Xsk { sock, last, .. } => {
                let now = sock.statistics().ok()?;
                let d = |a: u64, b: u64| a.saturating_sub(b);
                let out = KernelDrops {
                    // Fill-ring shortages are also counted in rx_dropped.
                    dropped: d(now.rx_dropped, last.rx_dropped)
                        + d(now.rx_ring_full, last.rx_ring_full),
                    invalid: d(now.rx_invalid_descs, last.rx_invalid_descs)
                        + d(now.tx_invalid_descs, last.tx_invalid_descs),
                };
                *last = now;
                Some(out)
            }
        }
    }
}

impl AsRawFd for Rx {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Rx::Ring(r) => r.as_raw_fd(),
            Rx::Xsk { sock, .. } => sock.as_raw_fd(),
        }
    }
}

/// The packet type and checksum status of a frame received by AF_XDP (see the module
/// documentation).
pub fn xsk_aux(frame: &[u8], mac: MacAddr) -> Aux {
    let dst = frame.get(..6);
    let pkttype = match dst {
        Some(d) if d == mac.octets() => pkttype::HOST,
        Some(d) if d == [0xff; 6] => pkttype::BROADCAST,
        Some(d) if d[0] & 1 == 1 => pkttype::MULTICAST,
        _ => pkttype::OTHERHOST,
    };
    let status = if partial_tcp_checksum(frame) {
        TP_STATUS_CSUMNOTREADY
    } else {
        0
    };
    Aux {
        pkttype,
        status,
        wire_len: frame.len(),
    }
}

fn sum16(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Does the frame's TCP checksum field hold only the pseudo-header sum (what the
/// kernel leaves for checksum offload to complete)? A full checksum equals it by chance
/// once in 65,536 frames; completing it then recomputes the same value.
pub fn partial_tcp_checksum(f: &[u8]) -> bool {
    let Some(et) = f.get(12..14) else {
        return false;
    };
    match (et[0], et[1]) {
        (0x08, 0x00) => {
            let Some(ip) = f.get(14..34) else {
                return false;
            };
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if ip[9] != 6 || ihl < 20 || total < ihl + 20 {
                return false;
            }
            let Some(field) = f.get(14 + ihl + 16..14 + ihl + 18) else {
                return false;
            };
            let s = sum16(&ip[12..20]) + 6 + (total - ihl) as u32;
            u16::from_be_bytes([field[0], field[1]]) == fold(s)
        }
        (0x86, 0xdd) => {
            let Some(ip) = f.get(14..54) else {
                return false;
            };
            let plen = u16::from_be_bytes([ip[4], ip[5]]);
            if ip[6] != 6 || plen < 20 {
                return false;
            }
            let Some(field) = f.get(54 + 16..54 + 18) else {
                return false;
            };
            let s = sum16(&ip[8..40]) + 6 + u32::from(plen);
            u16::from_be_bytes([field[0], field[1]]) == fold(s)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const OUR: MacAddr = MacAddr(0x02, 0, 0, 0, 0, 0x11);

    fn v4(payload: usize) -> Vec<u8> {
        let total = 40 + payload;
        let mut f = vec![0u8; 14 + total];
        f[..6].copy_from_slice(&OUR.octets());
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&(total as u16).to_be_bytes());
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 99, 0, 10]);
        f[30..34].copy_from_slice(&[10, 99, 0, 100]);
        f[34 + 12] = 5 << 4;
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = i as u8;
        }
        f
    }

    fn v6(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 20 + payload];
        f[..6].copy_from_slice(&OUR.octets());
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
        f[20] = 6;
        let s: Ipv6Addr = "fd99::10".parse().unwrap();
        let d: Ipv6Addr = "fd99::100".parse().unwrap();
        f[22..38].copy_from_slice(&s.octets());
        f[38..54].copy_from_slice(&d.octets());
        f[54 + 12] = 5 << 4;
        f
    }

    #[test]
    fn partial_checksums_are_told_from_full_ones() {
        let mut f = v4(100);
        // What the kernel leaves with CHECKSUM_PARTIAL: the folded pseudo-header sum.
        let s = sum16(&f[26..34]) + 6 + 120;
        f[50..52].copy_from_slice(&fold(s).to_be_bytes());
        assert!(partial_tcp_checksum(&f));
        assert_eq!(xsk_aux(&f, OUR).status, TP_STATUS_CSUMNOTREADY);
        // The full checksum, as pnet computes it, is not taken for a partial one.
        let src = Ipv4Addr::new(10, 99, 0, 10);
        let dst = Ipv4Addr::new(10, 99, 0, 100);
        crate::direct::frame::complete_tcp_checksum(&mut f[14..], src, dst);
        assert!(!partial_tcp_checksum(&f));
        assert_eq!(xsk_aux(&f, OUR).status, 0);

        let mut g = v6(33);
        let s = sum16(&g[22..54]) + 6 + 53;
        g[70..72].copy_from_slice(&fold(s).to_be_bytes());
        assert!(partial_tcp_checksum(&g));
        let (a, b) = (
            Ipv6Addr::from(<[u8; 16]>::try_from(&g[22..38]).unwrap()),
            Ipv6Addr::from(<[u8; 16]>::try_from(&g[38..54]).unwrap()),
        );
        crate::direct::frame::complete_tcp_checksum6(&mut g[14..], a, b);
        assert!(!partial_tcp_checksum(&g));
    }

    #[test]
    fn packet_type_comes_from_the_destination_mac() {
        let mut f = v4(0);
        assert_eq!(xsk_aux(&f, OUR).pkttype, pkttype::HOST);
        f[..6].copy_from_slice(&[0xff; 6]);
        assert_eq!(xsk_aux(&f, OUR).pkttype, pkttype::BROADCAST);
        f[..6].copy_from_slice(&[0x33, 0x33, 0xff, 0, 1, 0]);
        assert_eq!(xsk_aux(&f, OUR).pkttype, pkttype::MULTICAST);
        f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x21]);
        assert_eq!(xsk_aux(&f, OUR).pkttype, pkttype::OTHERHOST);
    }

    #[test]
    fn any_bytes_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..200 {
            let mut f = vec![0u8; len];
            for b in f.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            if len > 14 {
                f[12..14].copy_from_slice(if len % 2 == 0 {
                    &[0x08, 0x00]
                } else {
                    &[0x86, 0xdd]
                });
            }
            let _ = xsk_aux(&f, OUR);
        }
    }
}
