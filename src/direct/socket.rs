//! The AF_PACKET socket direct mode owns: raw Ethernet frames in and out of one interface.
//!
//! pnet's datalink channel cannot serve here (NOTES #11): it only blocks, drops the
//! `sockaddr_ll` (no packet type) and has no `PACKET_AUXDATA`. So this module opens the
//! socket itself with libc, non-blocking for mio:
//!
//! - `socket(AF_PACKET, SOCK_RAW, 0)`: protocol 0 receives nothing until `bind`, so the
//!   classic-BPF filter is attached before the first frame can queue. The filter keeps
//!   ARP and IPv4 to the VIP (everything else the host sees never wakes us); the parser
//!   checks everything again, the filter only saves work.
//! - `PACKET_AUXDATA`: each frame comes with `tpacket_auxdata`, whose `tp_status` says
//!   whether the TCP checksum is partial (`TP_STATUS_CSUMNOTREADY`, NOTES #2) and whose
//!   `tp_len` is the length on the wire (super-frames, NOTES #3).
//! - `PACKET_IGNORE_OUTGOING` (Linux ≥ 4.20): frames this host sends are not looped back
//!   to us (NOTES #7); on older kernels the parser drops `PACKET_OUTGOING` instead.
//! - a receive buffer sized for bursts (`SO_RCVBUFFORCE` when privileged).
//! - `bind` to the interface with `ETH_P_ALL`; `send` goes out of that interface.
//!
//! No allocation per frame: [`PacketSocket::recv`] fills the caller's buffer.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::frame::Aux;

/// `tpacket_auxdata` (linux/if_packet.h), as the kernel writes it in the control message.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

const SOL_PACKET: libc::c_int = 263;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const ETH_P_ALL: u16 = 0x0003;

/// Control-message buffer, aligned for `cmsghdr`, with room for one auxdata message.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// A non-blocking AF_PACKET socket bound to one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    /// Whether the kernel honoured `PACKET_IGNORE_OUTGOING`.
    pub ignores_outgoing: bool,
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// The classic-BPF program: accept ARP, and IPv4 whose destination is `vip`.
fn filter(vip: Ipv4Addr) -> [libc::sock_filter; 7] {
    const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        ins(LD_H_ABS, 0, 0, 12),          // A = ethertype
        ins(JEQ_K, 3, 0, 0x0806),         // ARP → accept
        ins(JEQ_K, 0, 3, 0x0800),         // not IPv4 → drop
        ins(LD_W_ABS, 0, 0, 30),          // A = IPv4 destination
        ins(JEQ_K, 0, 1, u32::from(vip)), // ≠ VIP → drop
        ins(RET_K, 0, 0, 0x0004_0000),    // accept (up to 256 KiB)
        ins(RET_K, 0, 0, 0),              // drop
    ]
}

impl PacketSocket {
    /// Opens the socket on interface `ifindex`, receiving ARP and IPv4 to `vip`.
    /// Fails with `PermissionDenied` without CAP_NET_RAW.
    pub fn open(ifindex: u32, vip: Ipv4Addr, rcvbuf: usize) -> io::Result<PacketSocket> {
        // SAFETY: plain socket(2) call; the descriptor is owned right after.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let prog = filter(vip);
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: the program outlives the call (the kernel copies it).
        check(unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&fprog as *const libc::sock_fprog).cast(),
                size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        })?;
        setsockopt_int(raw, SOL_PACKET, PACKET_AUXDATA, 1)?;
        let ignores_outgoing = setsockopt_int(raw, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1).is_ok();
        let size = rcvbuf.min(i32::MAX as usize) as libc::c_int;
        if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
            setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, size)?;
        }
        // SAFETY: zeroed sockaddr_ll is a valid value; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: passes a live sockaddr_ll and its size.
        check(unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(PacketSocket {
            fd,
            ignores_outgoing,
        })
    }

    /// Receives one frame into `buf`. Returns the bytes stored (at most `buf.len()`)
    /// and the frame's [`Aux`] (whose `wire_len` may be larger: a truncated frame).
    /// `WouldBlock` when nothing is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, Aux)> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: zeroed sockaddr_ll / msghdr are valid values.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        let mut cbuf = CmsgBuf([0; 64]);
        // SAFETY: zeroed msghdr is valid; pointers set below point to live locals.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.0.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.0.len() as _;
        // MSG_TRUNC: return the real length even when the buffer was too small.
        // SAFETY: msg points to valid buffers for the duration of the call.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        let mut aux = Aux {
            pkttype: sll.sll_pkttype,
            status: 0,
            wire_len: n,
        };
        // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, bounded
        // by msg_controllen; the payload is copied out unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == SOL_PACKET
                    && (*c).cmsg_type == PACKET_AUXDATA
                    && (*c).cmsg_len as usize
                        >= libc::CMSG_LEN(size_of::<TpacketAuxdata>() as u32) as usize
                {
                    let a: TpacketAuxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<TpacketAuxdata>());
                    aux.status = a.tp_status;
                    aux.wire_len = (a.tp_len as usize).max(n);
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok((n.min(buf.len()), aux))
    }

    /// Sends one frame out of the bound interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: passes a live slice and its length.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the filter program on a frame, as the kernel would (the five opcodes it uses).
    fn run(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let mut a: u32 = 0;
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                0x28 => match pkt.get(i.k as usize..i.k as usize + 2) {
                    Some(b) => a = u32::from(u16::from_be_bytes([b[0], b[1]])),
                    None => return 0,
                },
                0x20 => match pkt.get(i.k as usize..i.k as usize + 4) {
                    Some(b) => a = u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                    None => return 0,
                },
                0x15 => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                0x06 => return i.k,
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn filter_keeps_arp_and_ipv4_to_vip_only() {
        let vip = Ipv4Addr::new(10, 99, 0, 100);
        let prog = filter(vip);
        let mut ip = vec![0u8; 60];
        ip[12] = 0x08;
        ip[30..34].copy_from_slice(&vip.octets());
        assert!(run(&prog, &ip) > 0, "IPv4 to the VIP");
        ip[33] = 101;
        assert_eq!(run(&prog, &ip), 0, "IPv4 elsewhere");
        let mut arp = vec![0u8; 42];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(run(&prog, &arp) > 0, "ARP");
        let mut v6 = vec![0u8; 60];
        v6[12] = 0x86;
        v6[13] = 0xdd;
        assert_eq!(run(&prog, &v6), 0, "IPv6");
        assert_eq!(run(&prog, &[0u8; 10]), 0, "runt");
    }
}
