//! AF_PACKET sockets: raw Ethernet frames in and out of one interface (direct mode's
//! data plane, and the gratuitous ARPs of failover).
//!
//! pnet's datalink channel cannot serve here (pitfall #11): it only blocks, drops the
//! `sockaddr_ll` (no packet type) and has no `PACKET_AUXDATA`. So this module opens the
//! socket itself with libc, non-blocking for mio:
//!
//! - `socket(AF_PACKET, SOCK_RAW, 0)`: protocol 0 receives nothing until `bind`, so the
//!   caller's classic-BPF filter is attached before the first frame can queue.
//! - `PACKET_AUXDATA`: each frame comes with `tpacket_auxdata`, whose `tp_status` says
//!   whether the TCP checksum is partial (`TP_STATUS_CSUMNOTREADY`, pitfall #2) and whose
//!   `tp_len` is the length on the wire (super-frames, pitfall #3).
//! - `PACKET_IGNORE_OUTGOING` (Linux ≥ 4.20): frames this host sends are not looped back
//!   to us (pitfall #7); on older kernels the parser drops `PACKET_OUTGOING` instead.
//! - a receive buffer sized for bursts (`SO_RCVBUFFORCE` when privileged).
//! - `bind` to the interface with `ETH_P_ALL`; `send` goes out of that interface.
//!
//! No allocation per frame: [`PacketSocket::recv`] fills the caller's buffer.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What the kernel says about a received frame besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aux {
    /// `sll_pkttype` (`PACKET_HOST`, `PACKET_OUTGOING`, …).
    pub pkttype: u8,
    /// `tpacket_auxdata.tp_status` (0 when the kernel sent no auxdata).
    pub status: u32,
    /// The frame's length on the wire (`tp_len`), which may exceed the bytes we got.
    pub wire_len: usize,
}

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

pub(super) fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A non-blocking `AF_PACKET` raw socket with the classic-BPF program `filter`
/// attached (the socket of [`PacketSocket`] and of [`super::ring::PacketRing`]).
pub(super) fn filtered_socket(filter: &[libc::sock_filter]) -> io::Result<OwnedFd> {
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
    let fprog = libc::sock_fprog {
        len: u16::try_from(filter.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "filter too long"))?,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // The kernel copies the program.
    setsockopt(raw, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)?;

    Ok(fd)
}

/// Binds a packet socket to the interface and protocol of `sll`.
pub(super) fn bind_ll(fd: RawFd, sll: &libc::sockaddr_ll) -> io::Result<()> {
    // SAFETY: passes a live sockaddr_ll and its size.
    check(unsafe {
        libc::bind(
            fd,
            (sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// `setsockopt(fd, level, name, v, sizeof v)`.
pub(super) fn setsockopt<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: &T,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live `T` and its size; the kernel copies it.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

impl PacketSocket {
    /// Opens the socket on interface `ifindex`, receiving what the classic-BPF program
    /// `filter` accepts. Fails with `PermissionDenied` without CAP_NET_RAW.
    pub fn open(
        ifindex: u32,
        filter: &[libc::sock_filter],
        rcvbuf: usize,
    ) -> io::Result<PacketSocket> {
        let fd = filtered_socket(filter)?;
        let raw = fd.as_raw_fd();
        setsockopt(raw, SOL_PACKET, PACKET_AUXDATA, &1 as &libc::c_int)?;
        let ignores_outgoing =
            setsockopt(raw, SOL_PACKET, PACKET_IGNORE_OUTGOING, &1 as &libc::c_int).is_ok();
        let size = rcvbuf.min(i32::MAX as usize) as libc::c_int;
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &size)?;
        }
        // SAFETY: zeroed sockaddr_ll is a valid value; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        bind_ll(raw, &sll)?;

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

/// A send-only AF_PACKET socket (protocol 0: it receives nothing), for frames addressed
/// by the caller, such as gratuitous ARPs.
#[derive(Debug)]
pub struct SendSocket {
    fd: OwnedFd,
}

impl SendSocket {
    /// Opens the socket, non-blocking. Fails with `PermissionDenied` without CAP_NET_RAW.
    pub fn open() -> io::Result<SendSocket> {
        // SAFETY: plain socket(2) call; the descriptor is owned right after.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        Ok(SendSocket {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    /// Sends `frame` out of interface `ifindex` to `dst` (link-layer address) with
    /// EtherType `proto`. A full send queue is `WouldBlock`.
    pub fn send_to(&self, ifindex: u32, proto: u16, dst: [u8; 6], frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto.to_be();
        sll.sll_ifindex = i32::try_from(ifindex).unwrap_or(0);
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&dst);
        // SAFETY: the buffer pointer and length describe `frame`, which lives across the
        // call; the address pointer and length describe `sll`, fully initialised.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// `struct packet_mreq` (linux/if_packet.h).
#[repr(C)]
struct PacketMreq {
    mr_ifindex: libc::c_int,
    mr_type: libc::c_ushort,
    mr_alen: libc::c_ushort,
    mr_address: [u8; 8],
}

const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_MULTICAST: libc::c_ushort = 0;

/// Adds the Ethernet multicast address `mac` to interface `ifindex`'s receive filter for
/// as long as `sock` is open (`PACKET_ADD_MEMBERSHIP`, `PACKET_MR_MULTICAST`): direct
/// mode's IPv6 VIPs are solicited at their solicited-node group, which no local address
/// joins.
pub fn add_multicast(sock: &impl AsRawFd, ifindex: u32, mac: [u8; 6]) -> io::Result<()> {
    let mut mr = PacketMreq {
        mr_ifindex: i32::try_from(ifindex).unwrap_or(0),
        mr_type: PACKET_MR_MULTICAST,
        mr_alen: 6,
        mr_address: [0; 8],
    };
    mr.mr_address[..6].copy_from_slice(&mac);
    setsockopt(sock.as_raw_fd(), SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr)
}
