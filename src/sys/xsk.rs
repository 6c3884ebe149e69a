//! An AF_XDP socket (XSK) that forwards in place: direct mode's `--ring xdp`.
//!
//! The socket owns a UMEM (one anonymous mapping cut into [`FRAME_SIZE`] chunks,
//! registered with `XDP_UMEM_REG`) and four single-producer/single-consumer rings shared
//! with the kernel by `mmap` (offsets from `XDP_MMAP_OFFSETS`):
//!
//! - fill (we produce): free chunks the kernel may receive into;
//! - RX (kernel produces): descriptors (address in the UMEM, length) of received frames;
//! - TX (we produce): descriptors of frames to send;
//! - completion (kernel produces): addresses of sent frames, free again.
//!
//! [`XskSocket::next_batch`] takes up to [`TX_BATCH`] RX descriptors, lends each frame to
//! the caller (who rewrites it in place), puts the frames to send on the TX ring *as
//! they are* (same chunk, no copy) and the others straight back on the fill ring, kicks
//! the kernel with `sendto(MSG_DONTWAIT)` (copy mode sends from the system call) and
//! recycles completed chunks into the fill ring. Every chunk is always in exactly one of
//! fill, RX, TX/completion, or the current batch; the fill ring holds all of them, so
//! recycling never finds it full.
//!
//! Bound with `XDP_COPY` (veth and virtio have no zero-copy; the kernel copies each frame
//! into the UMEM and builds an skb per frame sent). Every descriptor the kernel hands us
//! is checked against the UMEM before use; bad ones are counted, never trusted. All
//! `unsafe` of AF_XDP is in this file.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::mmap::Mapping;
use super::packet::{check, setsockopt, Aux};
use super::ring::{BlockReport, RxFrame, TX_BATCH};

const AF_XDP: libc::c_int = 44;
const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_TX_RING: libc::c_int = 3;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_COPY: u16 = 1 << 1;
const PGOFF_RX: libc::off_t = 0;
const PGOFF_TX: libc::off_t = 0x8000_0000;
const PGOFF_FILL: libc::off_t = 0x1_0000_0000;
const PGOFF_COMPLETION: libc::off_t = 0x1_8000_0000;

/// UMEM chunk size: a page, so a frame up to MTU 3,500 or so fits behind the kernel's
/// 256-byte XDP headroom.
pub const FRAME_SIZE: u32 = 4096;
/// Chunks in the UMEM (16 MiB), all of which fit the fill ring at once.
const FRAMES: u32 = 4096;
/// RX, TX and completion ring entries.
const RING: u32 = 2048;
/// `sendto` kicks per batch at most (copy mode sends up to 32 frames per call).
const MAX_KICKS: usize = TX_BATCH / 32 + 4;

/// `struct xdp_umem_reg` (with the `flags` and `tx_metadata_len` of newer kernels: 32
/// bytes either way).
#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

/// `struct xdp_ring_offset`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

/// `struct sockaddr_xdp`.
#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

/// `struct xdp_statistics`: what the kernel dropped or refused, since the socket opened.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpStatistics {
    /// Dropped for another reason (no free chunk on the fill ring, among others).
    pub rx_dropped: u64,
    /// Fill-ring addresses the kernel found invalid.
    pub rx_invalid_descs: u64,
    /// TX descriptors the kernel found invalid.
    pub tx_invalid_descs: u64,
    /// Dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was empty when the kernel looked.
    pub tx_ring_empty_descs: u64,
}

/// One of the four rings, mapped. Entries are `u64` addresses (fill, completion) or
/// 16-byte `struct xdp_desc` (RX, TX).
struct Ring {
    /// Owns the memory the pointers below point into.
    _map: Mapping,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    desc: *mut u8,
    size: u32,
    entry: usize,
    /// Our copy of the index we advance (producer for fill/TX, consumer for RX/completion).
    local: u32,
}

impl Ring {
    fn map(
        fd: RawFd,
        off: &RingOffset,
        size: u32,
        entry: usize,
        pgoff: libc::off_t,
    ) -> io::Result<Ring> {
        let len = usize::try_from(off.desc)
            .ok()
            .and_then(|d| d.checked_add(size as usize * entry))
            .ok_or_else(|| io::Error::other("XDP ring offsets out of range"))?;
        for o in [off.producer, off.consumer, off.desc] {
            if usize::try_from(o)
                .ok()
                .and_then(|o| o.checked_add(4))
                .is_none_or(|e| e > len)
            {
                return Err(io::Error::other("XDP ring offsets out of range"));
            }
        }
        // The ring the kernel allocated for this socket (the page offset names which).
        let mapping = Mapping::new(len, libc::MAP_SHARED | libc::MAP_POPULATE, fd, pgoff)?;
        let map = mapping.ptr();
        // SAFETY: the offsets were checked to lie inside the mapping; the kernel aligns
        // the producer and consumer words to 4 bytes (in fact to cache lines).
        let (producer, consumer, desc) = unsafe {
            (
                map.add(off.producer as usize) as *const AtomicU32,
                map.add(off.consumer as usize) as *const AtomicU32,
                map.add(off.desc as usize),
            )
        };
        Ok(Ring {
            _map: mapping,
            producer,
            consumer,
            desc,
            size,
            entry,
            local: 0,
        })
    }

    fn prod(&self) -> &AtomicU32 {
        // SAFETY: points into our live mapping (see `map`); accessed only atomically.
        unsafe { &*self.producer }
    }

    fn cons(&self) -> &AtomicU32 {
        // SAFETY: as for `prod`.
        unsafe { &*self.consumer }
    }

    /// Consumer side: entries the kernel has produced and we have not taken.
    fn available(&self) -> u32 {
        self.prod()
            .load(Ordering::Acquire)
            .wrapping_sub(self.local)
            .min(self.size)
    }

    /// Producer side: free entries.
    fn free(&self) -> u32 {
        self.size
            .saturating_sub(self.local.wrapping_sub(self.cons().load(Ordering::Acquire)))
    }

    /// Pointer to entry `idx` (any index; masked).
    fn slot(&self, idx: u32) -> *mut u8 {
        let i = (idx & (self.size - 1)) as usize;
        // SAFETY: `i < size`, so the entry lies in the mapped descriptor array.
        unsafe { self.desc.add(i * self.entry) }
    }

    fn read_addr(&self, idx: u32) -> u64 {
        // SAFETY: an 8-byte entry inside the mapping (`slot`), owned by the consumer.
        unsafe { std::ptr::read_volatile(self.slot(idx) as *const u64) }
    }

    fn write_addr(&self, idx: u32, addr: u64) {
        // SAFETY: an 8-byte entry inside the mapping, ours until published.
        unsafe { std::ptr::write_volatile(self.slot(idx) as *mut u64, addr) }
    }

    fn read_desc(&self, idx: u32) -> (u64, u32) {
        let p = self.slot(idx);
        // SAFETY: a 16-byte `xdp_desc` inside the mapping, owned by the consumer.
        unsafe {
            (
                std::ptr::read_volatile(p as *const u64),
                std::ptr::read_volatile(p.add(8) as *const u32),
            )
        }
    }

    fn write_desc(&self, idx: u32, addr: u64, len: u32) {
        let p = self.slot(idx);
        // SAFETY: a 16-byte `xdp_desc` inside the mapping, ours until published.
        unsafe {
            std::ptr::write_volatile(p as *mut u64, addr);
            std::ptr::write_volatile(p.add(8) as *mut u32, len);
            std::ptr::write_volatile(p.add(12) as *mut u32, 0);
        }
    }

    /// Consumer: hands the taken entries back. Producer: publishes the written ones.
    fn publish_consumed(&self) {
        self.cons().store(self.local, Ordering::Release);
    }

    fn publish_produced(&self) {
        self.prod().store(self.local, Ordering::Release);
    }
}

/// An AF_XDP socket bound to one queue of one interface (see the module documentation).
pub struct XskSocket {
    fd: OwnedFd,
    umem: Mapping,
    rx: Ring,
    tx: Ring,
    fill: Ring,
    comp: Ring,
    /// Chunks on the TX ring or waiting for completion.
    in_flight: u32,
}

impl std::fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSocket")
            .field("fd", &self.fd)
            .field("umem_len", &self.umem.len())
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

// SAFETY: the mappings are owned by this value alone (no slice into them outlives a
// `next_batch` call), so moving it to another thread is sound.
unsafe impl Send for XskSocket {}

fn getsockopt<T: Default>(fd: RawFd, name: libc::c_int) -> io::Result<T> {
    let mut v = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: passes a live, writable `T` and its size; the kernel writes at most `len`.
    check(unsafe { libc::getsockopt(fd, SOL_XDP, name, (&mut v as *mut T).cast(), &mut len) })?;
    Ok(v)
}

impl XskSocket {
    /// Opens an AF_XDP socket on queue `queue` of interface `ifindex` in copy mode, with
    /// its UMEM and rings, the fill ring full. Frames arrive only once an XDP program
    /// redirects them to this socket (through an `XSKMAP`).
    pub fn open(ifindex: u32, queue: u32) -> io::Result<XskSocket> {
        // SAFETY: plain socket(2); the descriptor is owned right after.
        let raw = check(unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Mapping::new(
            (FRAMES * FRAME_SIZE) as usize,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )?;
        let reg = UmemReg {
            addr: umem.ptr() as u64,
            len: umem.len() as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, SOL_XDP, XDP_UMEM_REG, &reg)?;
        setsockopt(raw, SOL_XDP, XDP_UMEM_FILL_RING, &FRAMES)?;
        setsockopt(raw, SOL_XDP, XDP_UMEM_COMPLETION_RING, &RING)?;
        setsockopt(raw, SOL_XDP, XDP_RX_RING, &RING)?;
        setsockopt(raw, SOL_XDP, XDP_TX_RING, &RING)?;
        let off: MmapOffsets = getsockopt(raw, XDP_MMAP_OFFSETS)?;
        let rx = Ring::map(raw, &off.rx, RING, 16, PGOFF_RX)?;
        let tx = Ring::map(raw, &off.tx, RING, 16, PGOFF_TX)?;
        let fill = Ring::map(raw, &off.fr, FRAMES, 8, PGOFF_FILL)?;
        let comp = Ring::map(raw, &off.cr, RING, 8, PGOFF_COMPLETION)?;
        let mut s = XskSocket {
            fd,
            umem,
            rx,
            tx,
            fill,
            comp,
            in_flight: 0,
        };
        // The rings start where the kernel left them (0), read back to be sure.
        s.rx.local = s.rx.cons().load(Ordering::Acquire);
        s.comp.local = s.comp.cons().load(Ordering::Acquire);
        s.tx.local = s.tx.prod().load(Ordering::Acquire);
        s.fill.local = s.fill.prod().load(Ordering::Acquire);
        for i in 0..FRAMES {
            s.fill.write_addr(s.fill.local, u64::from(i * FRAME_SIZE));
            s.fill.local = s.fill.local.wrapping_add(1);
        }
        s.fill.publish_produced();
        let sa = SockaddrXdp {
            family: AF_XDP as u16,
            flags: XDP_COPY,
            ifindex,
            queue_id: queue,
            shared_umem_fd: 0,
        };
        // SAFETY: passes a live sockaddr_xdp and its size.
        check(unsafe {
            libc::bind(
                raw,
                (&sa as *const SockaddrXdp).cast(),
                size_of::<SockaddrXdp>() as libc::socklen_t,
            )
        })?;
        Ok(s)
    }

    /// The kernel's drop and error counters since the socket opened.
    pub fn statistics(&self) -> io::Result<XdpStatistics> {
        getsockopt(self.fd.as_raw_fd(), XDP_STATISTICS)
    }

    /// Received frames waiting on the RX ring.
    pub fn ready(&self) -> usize {
        self.rx.available() as usize
    }

    /// Moves completed chunks back to the fill ring.
    fn recycle(&mut self) {
        let n = self.comp.available();
        if n == 0 {
            return;
        }
        for _ in 0..n {
            let addr = self.comp.read_addr(self.comp.local);
            self.comp.local = self.comp.local.wrapping_add(1);
            self.in_flight = self.in_flight.saturating_sub(1);
            self.refill(addr);
        }
        self.comp.publish_consumed();
        self.fill.publish_produced();
    }

    /// Puts the chunk holding `addr` on the fill ring (not yet published); a chunk that is
    /// not ours, or no room (cannot happen: the ring holds every chunk), drops it.
    fn refill(&mut self, addr: u64) {
        let base = addr - addr % u64::from(FRAME_SIZE);
        if base as usize >= self.umem.len() || self.fill.free() == 0 {
            return;
        }
        self.fill.write_addr(self.fill.local, base);
        self.fill.local = self.fill.local.wrapping_add(1);
    }

    /// Takes up to [`TX_BATCH`] received frames, if any: calls `f` on each (which may
    /// rewrite the frame in place and return `Some(len)` to send `data[..len]`), puts
    /// those on the TX ring, kicks the kernel, and recycles the rest and the completed
    /// chunks into the fill ring. `None` when the RX ring is empty (poll, then call
    /// again). `aux.pkttype` is `PACKET_HOST` and `aux.status` 0: AF_XDP says neither;
    /// the caller knows its MAC and what the checksum field holds.
    pub fn next_batch<F>(&mut self, mut f: F) -> Option<BlockReport>
    where
        F: FnMut(RxFrame<'_>) -> Option<usize>,
    {
        self.recycle();
        let n = self.rx.available().min(TX_BATCH as u32);
        if n == 0 {
            return None;
        }
        let mut rep = BlockReport {
            frames: n,
            ..BlockReport::default()
        };
        let mut queued = 0u32;
        for _ in 0..n {
            let (addr, len) = self.rx.read_desc(self.rx.local);
            self.rx.local = self.rx.local.wrapping_add(1);
            let fs = u64::from(FRAME_SIZE);
            let ok = (addr % fs) + u64::from(len) <= fs
                && addr
                    .checked_add(u64::from(len))
                    .is_some_and(|e| e <= self.umem.len() as u64);
            if !ok {
                rep.malformed = true;
                self.refill(addr);
                continue;
            }
            // SAFETY: `[addr, addr + len)` lies inside the UMEM and inside one chunk
            // (checked above); the chunk is ours from the RX ring until we put it on the
            // TX or fill ring, and the slice lives only for this call of `f`.
            let data = unsafe {
                std::slice::from_raw_parts_mut(self.umem.ptr().add(addr as usize), len as usize)
            };
            let aux = Aux {
                pkttype: 0,
                status: 0,
                wire_len: len as usize,
            };
            match f(RxFrame {
                data,
                aux,
                vnet: None,
            }) {
                Some(l) if l <= len as usize && l > 0 => {
                    if self.tx.free() == 0 {
                        rep.failed += 1;
                        rep.last_errno = libc::ENOBUFS;
                        self.refill(addr);
                    } else {
                        self.tx.write_desc(self.tx.local, addr, l as u32);
                        self.tx.local = self.tx.local.wrapping_add(1);
                        self.in_flight += 1;
                        queued += 1;
                        rep.sent_bytes += l as u64;
                    }
                }
                _ => self.refill(addr),
            }
        }
        self.rx.publish_consumed();
        self.fill.publish_produced();
        if queued > 0 {
            self.tx.publish_produced();
            rep.sent = queued;
            self.kick(&mut rep);
        }
        self.recycle();
        Some(rep)
    }

    /// Has the kernel send what is on the TX ring (copy mode transmits from `sendto`,
    /// at most 32 frames per call).
    fn kick(&mut self, rep: &mut BlockReport) {
        for _ in 0..MAX_KICKS {
            if self.tx.cons().load(Ordering::Acquire) == self.tx.local {
                return;
            }
            rep.send_calls += 1;
            // SAFETY: sendto with no buffer and no address: the kernel reads the TX ring.
            let r = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                match e {
                    libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR => {
                        self.recycle();
                    }
                    _ => {
                        rep.last_errno = e;
                        rep.failed += 1;
                        return;
                    }
                }
            }
        }
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_sizes() {
        assert_eq!(size_of::<UmemReg>(), 32);
        assert_eq!(size_of::<SockaddrXdp>(), 16);
        assert_eq!(size_of::<MmapOffsets>(), 128);
        assert_eq!(size_of::<XdpStatistics>(), 48);
    }
}
