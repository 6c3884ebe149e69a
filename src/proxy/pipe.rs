//! A kernel pipe used to splice(2) bulk data from one socket to another without copying
//! it through userspace.
//!
//! Created lazily, only for a direction whose reads fill the userspace buffer (a bulk
//! transfer): splicing small keep-alive requests would double their syscalls. If the
//! pipe cannot be created (descriptor exhaustion) the relay keeps copying.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A smaller pipe still works (64 KiB default); ignore failure.
        // SAFETY: plain fcntl on a descriptor we own.
        unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_SIZE as libc::c_int,
            )
        };
        Ok(Pipe {
            read,
            write,
            queued: 0,
        })
    }

    /// Moves up to [`PIPE_SIZE`] bytes from socket `src` into the pipe. `Ok(0)` is EOF.
    pub fn fill_from(&mut self, src: RawFd) -> io::Result<usize> {
        let n = splice(src, self.write.as_raw_fd(), PIPE_SIZE)?;
        self.queued += n;
        Ok(n)
    }

    /// Moves queued bytes from the pipe into socket `dst`.
    pub fn drain_to(&mut self, dst: RawFd) -> io::Result<usize> {
        let n = splice(self.read.as_raw_fd(), dst, self.queued)?;
        self.queued -= n.min(self.queued);
        Ok(n)
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call; null offsets mean
    // "use and advance the file position", which is what sockets and pipes require.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
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
            match p.fill_from(b.as_raw_fd()) {
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
        assert_eq!(p.drain_to(c.as_raw_fd()).unwrap(), 12);
        assert_eq!(p.queued, 0);
        let mut buf = [0u8; 12];
        d.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello splice");
    }
}
