//! The received TTL of UDP datagrams (`IP_RECVTTL` and `recvmsg` with its control
//! message). BFD single hop (RFC 5881 §5) accepts only packets sent with TTL 255, which
//! proves the sender is one hop away. `IP_MINTTL` (RFC 5082) would let the kernel drop
//! the others, but Linux applies it to TCP only: a UDP datagram with TTL 254 still
//! arrives (measured in `integration/scaleout.rs`). Neither socket2 nor nix 0.29
//! wraps `IP_RECVTTL`.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;

/// Asks the kernel to attach each datagram's TTL (`IP_RECVTTL`) to an IPv4 UDP socket.
pub fn set_recv_ttl(sock: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_RECVTTL,
            (&on as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One datagram from an IPv4 socket with [`set_recv_ttl`]: its length, its source and
/// its TTL (`None` if the kernel attached none). Errors as `recvfrom` (`WouldBlock` on a
/// non-blocking socket with nothing queued).
pub fn recv_from_ttl(
    sock: &impl AsRawFd,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<u8>)> {
    // SAFETY: an all-zero sockaddr_in and msghdr are valid values.
    let mut addr: libc::sockaddr_in = unsafe { mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one cmsghdr with an int, 8-byte aligned (u64 elements).
    let mut control = [0u64; 8];
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` refers to a live buffer of the stated length for
    // the duration of the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ttl = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, bounded by
    // msg_controllen; CMSG_DATA of an IP_TTL message holds one int (read unaligned).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_TTL {
                let v: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                ttl = u8::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
    let src = SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(addr.sin_port)));
    Ok((n as usize, src, ttl))
}
