//! `IP_MINTTL`: the kernel drops IPv4 packets that arrive on a socket with a TTL below
//! the minimum (RFC 5082, the Generalized TTL Security Mechanism). BFD single hop
//! (RFC 5881 §5) uses it to accept only packets sent with TTL 255 by a neighbour one
//! hop away. Neither socket2 nor nix 0.29 wraps this option.

use std::io;
use std::os::fd::AsRawFd;

/// Sets `IP_MINTTL` on an IPv4 socket.
pub fn set_min_ttl(sock: &impl AsRawFd, ttl: u8) -> io::Result<()> {
    let v: libc::c_int = libc::c_int::from(ttl);
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MINTTL,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
