//! One direction of a proxied connection: read from one socket, write to the other.
//!
//! The relay owns no buffer while idle. Data is read into the worker's scratch buffer and
//! written straight on; only the part the destination cannot take right now is copied
//! into a per-direction pending buffer, and the source is not read again until that is
//! flushed (back-pressure: the kernel's receive window then pushes back on the sender).
//! Once a read fills the scratch buffer (a bulk transfer), the direction switches to
//! splice(2) through a pipe, if enabled.
//!
//! Readiness is edge-triggered (mio): `src_ready` / `dst_ready` remember the last edge
//! and are cleared on `WouldBlock`, or on a short read (the socket was drained at that
//! moment, so new data will raise a new edge — this saves the read that would fail),
//! unless the peer's FIN was already reported: that edge will not come again.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

use super::pipe::Pipe;

/// Per-event cap on read/write rounds for one direction, so one busy connection cannot
/// starve the others; the worker re-drives a capped connection on its next turn.
pub const MAX_ROUNDS: usize = 16;

/// What [`Half::pump`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// Blocked on readiness; nothing more to do until the next event.
    Idle,
    /// Stopped at [`MAX_ROUNDS`] with work left: drive again soon.
    Capped,
}

/// Bytes waiting for the destination to become writable.
#[derive(Debug)]
struct Pending {
    buf: Vec<u8>,
    pos: usize,
}

/// One relay direction.
#[derive(Debug, Default)]
pub struct Half {
    /// The source may have data (last readable edge not yet consumed).
    pub src_ready: bool,
    /// The destination may accept data.
    pub dst_ready: bool,
    /// The source reported its peer's FIN (EPOLLRDHUP): read until EOF, even after a
    /// short read, because no further edge will come.
    pub src_hup: bool,
    /// EOF read from the source.
    pub read_eof: bool,
    /// `shutdown(Write)` sent to the destination.
    pub write_shut: bool,
    /// Bytes relayed in this direction.
    pub bytes: u64,
    /// Part of `bytes` already added to the shared counters.
    pub flushed: u64,
    /// A read once filled the scratch buffer: use splice from now on.
    bulk: bool,
    pending: Option<Pending>,
    pipe: Option<Pipe>,
}

impl Half {
    /// Nothing left to move in this direction: EOF seen and everything written.
    pub fn done(&self) -> bool {
        self.read_eof && self.write_shut
    }

    /// Queues bytes of our own (a PROXY protocol header) to go to the destination before
    /// anything read from the source. Only before the first read: nothing may be pending.
    /// `write` appends them to a (recycled) buffer.
    pub fn queue_first(&mut self, write: impl FnOnce(&mut Vec<u8>), spare: &mut Vec<Vec<u8>>) {
        debug_assert!(self.pending.is_none() && self.bytes == 0);
        let mut buf = spare.pop().unwrap_or_default();
        buf.clear();
        write(&mut buf);
        self.pending = Some(Pending { buf, pos: 0 });
    }

    /// Gives back the pending buffer's allocation (for reuse), if any.
    pub fn take_buffer(&mut self) -> Option<Vec<u8>> {
        self.pending.take().map(|p| p.buf)
    }

    /// Moves data from `src` to `dst` until blocked, capped, or done.
    /// `spare` hands out a recycled allocation for a pending buffer. `dst_eof`: the
    /// destination already sent its FIN, so once this direction ends too the connection
    /// closes, and close(2) sends our FIN: the `shutdown(Write)` would be a wasted syscall.
    pub fn pump(
        &mut self,
        src: &mut TcpStream,
        dst: &mut TcpStream,
        scratch: &mut [u8],
        splice: bool,
        spare: &mut Vec<Vec<u8>>,
        dst_eof: bool,
    ) -> io::Result<Pumped> {
        for _ in 0..MAX_ROUNDS {
            // 1. Flush what is queued for the destination.
            if let Some(p) = self.pending.as_mut() {
                if !self.dst_ready {
                    return Ok(Pumped::Idle);
                }
                match write_some(dst, &p.buf[p.pos..])? {
                    n if p.pos + n < p.buf.len() => {
                        p.pos += n;
                        self.dst_ready = false;
                        return Ok(Pumped::Idle);
                    }
                    _ => {
                        if let Some(p) = self.pending.take() {
                            recycle(spare, p.buf);
                        }
                    }
                }
            }
            if let Some(pipe) = self.pipe.as_mut() {
                if pipe.queued > 0 {
                    if !self.dst_ready {
                        return Ok(Pumped::Idle);
                    }
                    match pipe.drain_to(&*dst) {
                        Ok(_) if pipe.queued > 0 => continue,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.dst_ready = false;
                            return Ok(Pumped::Idle);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            // 2. Everything written: propagate EOF, or read more.
            if self.read_eof {
                if !self.write_shut {
                    self.write_shut = true;
                    if !dst_eof {
                        // The peer may be gone already; the other direction reports that.
                        let _ = dst.shutdown(Shutdown::Write);
                    }
                }
                return Ok(Pumped::Idle);
            }
            if !self.src_ready {
                return Ok(Pumped::Idle);
            }
            if self.bulk && splice && self.pipe.is_none() {
                // Descriptor exhaustion: keep copying instead.
                self.pipe = Pipe::new().ok();
            }
            if let Some(pipe) = self.pipe.as_mut() {
                match pipe.fill_from(&*src) {
                    Ok(0) => self.read_eof = true,
                    Ok(n) => self.bytes += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.src_ready = false;
                        return Ok(Pumped::Idle);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            let n = match src.read(scratch) {
                Ok(0) => {
                    self.read_eof = true;
                    continue;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.src_ready = false;
                    return Ok(Pumped::Idle);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.bytes += n as u64;
            if n < scratch.len() {
                // Drained the receive queue at this instant: the next data raises an edge.
                // Not so once FIN is in: then read on to the EOF now.
                self.src_ready = self.src_hup;
            } else {
                self.bulk = true;
            }
            let w = if self.dst_ready {
                write_some(dst, &scratch[..n])?
            } else {
                0
            };
            if w < n {
                self.dst_ready = false;
                let mut buf = spare.pop().unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(&scratch[w..n]);
                self.pending = Some(Pending { buf, pos: 0 });
                return Ok(Pumped::Idle);
            }
            if !self.src_ready {
                return Ok(Pumped::Idle);
            }
        }
        Ok(Pumped::Capped)
    }
}

/// Writes what the socket takes now; `WouldBlock` is 0 bytes, other errors are errors.
fn write_some(dst: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut off = 0;
    while off < data.len() {
        match dst.write(&data[off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(off)
}

/// Keeps a few released pending buffers per worker, so a connection under back-pressure
/// does not cost a malloc/free pair each time it blocks.
fn recycle(spare: &mut Vec<Vec<u8>>, buf: Vec<u8>) {
    const KEEP: usize = 64;
    if spare.len() < KEEP && buf.capacity() <= 256 * 1024 {
        spare.push(buf);
    }
}
