//! A kernel pipe used to splice(2) bulk data from one socket to another without copying
//! it through userspace.
//!
//! Created lazily, only for a direction whose reads fill the userspace buffer (a bulk
//! transfer): splicing small keep-alive requests would double their syscalls. If the
//! pipe cannot be created (descriptor exhaustion) the relay keeps copying.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::unistd::pipe2;

/// Pipe capacity asked for with `F_SETPIPE_SZ` (the default `pipe-max-size` allows 1 MiB).
pub const PIPE_SIZE: usize = 1 << 20;

/// A non-blocking pipe and how many bytes sit in it.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet spliced out.
    pub queued: usize,
}

impl Pipe {
    /// A new pipe, enlarged to [`PIPE_SIZE`] when the system allows it.
    pub fn new() -> io::Result<Pipe> {
        let (read, write) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // A smaller pipe still works (64 KiB default); ignore failure.
        let _ = fcntl(
            write.as_raw_fd(),
            FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as libc::c_int),
        );
        Ok(Pipe {
            read,
            write,
            queued: 0,
        })
    }

    /// Moves up to [`PIPE_SIZE`] bytes from socket `src` into the pipe. `Ok(0)` is EOF.
    pub fn fill_from(&mut self, src: impl AsFd) -> io::Result<usize> {
        let n = splice_nb(src, &self.write, PIPE_SIZE)?;
        self.queued += n;
        Ok(n)
    }

    /// Moves queued bytes from the pipe into socket `dst`.
    pub fn drain_to(&mut self, dst: impl AsFd) -> io::Result<usize> {
        let n = splice_nb(&self.read, dst, self.queued)?;
        self.queued -= n.min(self.queued);
        Ok(n)
    }
}

/// One non-blocking splice(2); null offsets, as sockets and pipes require.
fn splice_nb(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    Ok(splice(
        from,
        None,
        to,
        None,
        len,
        SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn splices_between_sockets() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l2.local_addr().unwrap()).unwrap();
        let (mut d, _) = l2.accept().unwrap();
        a.write_all(b"hello splice").unwrap();
        let mut p = Pipe::new().unwrap();
        let mut got = 0;
        for _ in 0..100 {
            match p.fill_from(&b) {
                Ok(n) => {
                    got += n;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, 12);
        assert_eq!(p.drain_to(&c).unwrap(), 12);
        assert_eq!(p.queued, 0);
        let mut buf = [0u8; 12];
        d.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello splice");
    }
}
