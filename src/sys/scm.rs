//! Passing descriptors over a Unix stream socket (SCM_RIGHTS): the listening sockets a
//! reload hands from the old process to the new one.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// The most descriptors [`recv_with_fds`] takes in one message.
const MAX_FDS: usize = 64;

/// Receives one message into `buf` with up to `max_fds` (at most 64) descriptors
/// attached. Returns the bytes read and the descriptors, each owned (close-on-exec).
/// More descriptors than fit are an error: the kernel drops the extra ones.
pub fn recv_with_fds(
    stream: &UnixStream,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: SCM_RIGHTS installed `fd` in this process just now; nothing
                // else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) || fds.len() > max_fds.min(MAX_FDS) {
        return Err(io::Error::other(
            "too many descriptors offered; some were lost",
        ));
    }
    Ok((msg.bytes, fds))
}

/// Sends `data` with `fds` attached to its first byte; returns the bytes sent.
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let iov = [io::IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    loop {
        match sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn descriptors_cross_a_socket_pair() {
        let (a, b) = UnixStream::pair().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = l.local_addr().unwrap();
        assert_eq!(
            send_with_fds(a.as_raw_fd(), b"x\n", &[l.as_raw_fd()]).unwrap(),
            2
        );
        let mut buf = [0u8; 8];
        let (n, fds) = recv_with_fds(&b, &mut buf, 4).unwrap();
        assert_eq!((n, fds.len()), (2, 1));
        let got = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        assert_eq!(got.local_addr().unwrap(), at);
        // A plain message carries none.
        std::io::Write::write_all(&mut &a, b"y").unwrap();
        let (n, fds) = recv_with_fds(&b, &mut buf, 4).unwrap();
        assert_eq!((n, fds.len()), (1, 0));
        drop(a);
        assert_eq!((&b).read(&mut buf).unwrap(), 0);
    }
}
