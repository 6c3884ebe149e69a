//! Network-device queries by ioctl on a throw-away socket of the current namespace:
//! the MTU (`SIOCGIFMTU`) and ethtool's simple get commands (`SIOCETHTOOL`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Reads the interface MTU.
pub fn mtu(name: &str) -> io::Result<usize> {
    let mut req = ifreq(name)?;
    let sock = inet_socket()?;
    // SAFETY: `req` is a valid ifreq with the name set; the kernel fills ifr_mtu.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFMTU wrote the mtu member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_mtu } as usize)
}

/// Runs an ethtool get command that answers with one `struct ethtool_value` (such as
/// `ETHTOOL_GGRO`, `ETHTOOL_GFLAGS`) and returns its data.
pub fn ethtool_get(name: &str, cmd: u32) -> io::Result<u32> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut v = EthtoolValue { cmd, data: 0 };
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_data = (&mut v as *mut EthtoolValue).cast();
    let sock = inet_socket()?;
    // SAFETY: ifr_data points to a live ethtool_value for the whole call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v.data)
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: an all-zero ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let b = name.as_bytes();
    if b.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_mtu_and_bad_names_are_errors() {
        assert!(mtu("lo").unwrap() >= 1280);
        assert!(mtu("no-such-if0").is_err());
        assert!(mtu(&"x".repeat(64)).is_err());
    }
}
