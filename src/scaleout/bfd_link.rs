//! The BFD shell: the UDP sockets of RFC 5881 single-hop BFD and the sessions they
//! carry, one per BGP peer that asked for `bfd`.
//!
//! What it owns: the receive socket on UDP 3784 (with `IP_RECVTTL`: a packet whose TTL
//! is not 255 did not come from a neighbour one hop away and is dropped, RFC 5881 §5),
//! the send socket (TTL 255, one source port in 49152–65535 for every session, §4),
//! demultiplexing a datagram to its session ([`demux`]: by your-discriminator, or by
//! the source address while that is zero, RFC 5880 §6.8.6), and the counters of
//! datagrams no session takes.
//!
//! What it does not do: decide anything about BGP. The driver reads the sessions'
//! events and tears the BGP session down on Down.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use log::{debug, warn};
use mio::net::UdpSocket as MioUdp;

use crate::bfd::wire::{self, ControlPacket, WireError, PACKET_LEN};
use crate::bfd::{Config, Session};

/// UDP port of single-hop BFD control packets (RFC 5881 §4).
pub const BFD_PORT: u16 = 3784;
/// Datagrams read per readiness event (bounded, as every per-event loop).
const MAX_READS: usize = 256;

/// One session and the peer it runs with.
#[derive(Debug)]
pub struct BfdPeer {
    /// The peer's address (the BGP peer's).
    pub addr: Ipv4Addr,
    /// The state machine.
    pub session: Session,
}

/// Datagrams that no session took, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Not a valid BFD control packet (wire checks), or authenticated.
    pub malformed: u64,
    /// Valid, but no session matches the discriminator or the source.
    pub unknown: u64,
    /// Received with a TTL other than 255 (RFC 5881 §5), or without a TTL.
    pub ttl: u64,
}

/// The sockets and sessions.
pub struct BfdLink {
    rx: MioUdp,
    tx: UdpSocket,
    /// Sessions, in peer order.
    pub peers: Vec<BfdPeer>,
    /// Datagrams dropped before reaching a session.
    pub counters: LinkCounters,
}

/// Which session a packet from `src` belongs to (RFC 5880 §6.8.6): the one whose
/// local discriminator is the packet's your-discriminator, or, while that is zero,
/// the one with the peer at `src`. `None`: no session; drop it.
pub fn demux(peers: &[(Ipv4Addr, u32)], src: IpAddr, p: &ControlPacket) -> Option<usize> {
    let IpAddr::V4(src) = src else { return None };
    if p.your_discriminator != 0 {
        // The source must still be the peer: a discriminator is no secret.
        return peers
            .iter()
            .position(|(a, d)| *d == p.your_discriminator && *a == src);
    }
    peers.iter().position(|(a, _)| *a == src)
}

impl BfdLink {
    /// Opens the sockets and one session per peer. `seed` spreads the local
    /// discriminators and the jitter between processes.
    pub fn open(
        peers: &[Ipv4Addr],
        interval: Duration,
        multiplier: u8,
        seed: u64,
    ) -> io::Result<BfdLink> {
        let rx = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, BFD_PORT))
            .map_err(|e| io::Error::new(e.kind(), format!("BFD: bind UDP {BFD_PORT}: {e}")))?;
        crate::sys::ttl::set_recv_ttl(&rx)
            .map_err(|e| io::Error::new(e.kind(), format!("BFD: IP_RECVTTL: {e}")))?;
        rx.set_nonblocking(true)?;
        let tx = bind_source_port(seed)?;
        tx.set_ttl(255)?;
        tx.set_nonblocking(true)?;
        let base = (seed as u32 & 0x00ff_ffff).max(1) << 4;
        let mut sessions = Vec::new();
        for (i, addr) in peers.iter().enumerate() {
            let config = Config {
                local_discriminator: base.wrapping_add(i as u32 + 1).max(1),
                desired_min_tx: interval,
                required_min_rx: interval,
                detect_mult: multiplier,
                seed: seed ^ (i as u64 + 1),
            };
            let session = Session::new(config)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            sessions.push(BfdPeer {
                addr: *addr,
                session,
            });
        }
        Ok(BfdLink {
            rx: MioUdp::from_std(rx),
            tx,
            peers: sessions,
            counters: LinkCounters::default(),
        })
    }

    /// The receive socket, for registration.
    pub fn rx(&mut self) -> &mut MioUdp {
        &mut self.rx
    }

    /// Reads every waiting datagram and hands each to its session.
    pub fn on_readable(&mut self, now: Duration) {
        let mut buf = [0u8; 512];
        for _ in 0..MAX_READS {
            let (n, src, ttl) = match crate::sys::ttl::recv_from_ttl(&self.rx, &mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!(target: "fulcrum::bfd", "recv: {e}");
                    return;
                }
            };
            if ttl != Some(255) {
                // RFC 5881 §5: MUST be discarded.
                self.counters.ttl += 1;
                debug!(target: "fulcrum::bfd", "dropped a datagram from {src} with TTL {ttl:?} (not 255)");
                continue;
            }
            self.on_datagram(buf.get(..n).unwrap_or_default(), src, now);
        }
    }

    /// One datagram from `src` (RFC 5880 §6.8.6): parsed, demultiplexed, handed over.
    pub fn on_datagram(&mut self, bytes: &[u8], src: SocketAddr, now: Duration) {
        let packet = match wire::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.counters.malformed += 1;
                if e != WireError::AuthenticationUnsupported {
                    debug!(target: "fulcrum::bfd", "dropped a malformed datagram from {src}: {e}");
                }
                return;
            }
        };
        let keys: Vec<(Ipv4Addr, u32)> = self
            .peers
            .iter()
            .map(|p| (p.addr, p.session_discriminator()))
            .collect();
        match demux(&keys, src.ip(), &packet).and_then(|i| self.peers.get_mut(i)) {
            Some(p) => p.session.on_packet(&packet, now),
            None => {
                self.counters.unknown += 1;
                debug!(target: "fulcrum::bfd", "dropped a packet from {src}: no session (your_discriminator={})", packet.your_discriminator);
            }
        }
    }

    /// Sends whatever each session has due.
    pub fn transmit(&mut self, now: Duration) {
        let mut out = [0u8; PACKET_LEN];
        for p in &mut self.peers {
            // Bounded: a Final and one periodic packet at most.
            for _ in 0..2 {
                let Some(packet) = p.session.poll_transmit(now) else {
                    break;
                };
                wire::emit(&packet, &mut out);
                let to = SocketAddrV4::new(p.addr, BFD_PORT);
                if let Err(e) = self.tx.send_to(&out, to) {
                    // A full buffer or an unreachable peer: the detection timers decide.
                    debug!(target: "fulcrum::bfd", "send to {to}: {e}");
                }
            }
        }
    }

    /// Fires the sessions' timers.
    pub fn on_timeout(&mut self, now: Duration) {
        for p in &mut self.peers {
            if p.session.poll_timeout().is_some_and(|t| t <= now) {
                p.session.on_timeout(now);
            }
        }
    }

    /// The earliest session deadline.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.peers
            .iter()
            .filter_map(|p| p.session.poll_timeout())
            .min()
    }
}

impl BfdPeer {
    fn session_discriminator(&self) -> u32 {
        self.session.local_discriminator()
    }
}

/// A send socket on a source port in 49152–65535 (RFC 5881 §4), starting from a
/// seeded port and trying the next ones.
fn bind_source_port(seed: u64) -> io::Result<UdpSocket> {
    const FIRST: u16 = 49152;
    const SPAN: u16 = 16384;
    let start = (seed % u64::from(SPAN)) as u16;
    let mut last = None;
    for i in 0..256u16 {
        let port = FIRST + (start.wrapping_add(i) % SPAN);
        match UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::other("no port"));
    warn!(target: "fulcrum::bfd", "no free source port in 49152-65535: {e}");
    Err(io::Error::new(
        e.kind(),
        format!("BFD: no free UDP source port in 49152-65535: {e}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bfd::{Diag, State};

    fn packet(your: u32) -> ControlPacket {
        ControlPacket {
            diag: Diag::None,
            state: State::Down,
            poll: false,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 77,
            your_discriminator: your,
            desired_min_tx_us: 1_000_000,
            required_min_rx_us: 1_000_000,
            required_min_echo_rx_us: 0,
        }
    }

    #[test]
    fn bfd_demux_by_discriminator_then_source() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        let peers = [(a, 16), (b, 17)];
        assert_eq!(demux(&peers, IpAddr::V4(b), &packet(0)), Some(1));
        assert_eq!(demux(&peers, IpAddr::V4(b), &packet(17)), Some(1));
        // Right discriminator, wrong source: not that session.
        assert_eq!(demux(&peers, IpAddr::V4(a), &packet(17)), None);
        assert_eq!(demux(&peers, IpAddr::V4(a), &packet(99)), None);
        let stranger = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(demux(&peers, stranger, &packet(0)), None);
        assert_eq!(demux(&peers, "::1".parse().unwrap(), &packet(0)), None);
    }
}
