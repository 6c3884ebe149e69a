//! A `PACKET_MMAP` receive ring (TPACKET_V2 or V3) with batched transmission: direct
//! mode's data-plane socket.
//!
//! The kernel writes received frames into a ring shared with us by `mmap`;
//! [`PacketRing::next_batch`] walks the frames the kernel has handed over (one V3
//! block, or up to [`TX_BATCH`] consecutive V2 slots), lets the caller inspect and
//! rewrite each frame *in place*, sends every frame the caller asks for with one
//! `sendmmsg` per [`TX_BATCH`] frames straight out of the ring memory (no copy), and
//! hands the frames back. So a batch of frames costs two system calls instead of two
//! per frame. Which layout: see [`RingVersion`] (V2 wakes us per frame, V3 per block).
//!
//! Why `sendmmsg` and not a `PACKET_TX_RING`: the frames to send already sit in the RX
//! ring, rewritten; a TX ring would need one more copy of each into its slots, for the
//! same single system call per batch (the kernel builds one skb per frame either way).
//!
//! With `vnet_hdr` on (`PACKET_VNET_HDR`), each frame arrives with a `virtio_net_hdr`
//! right in front of its Ethernet header (GSO type and size, partial-checksum offsets),
//! and every send must start with one: the ring sends the header the kernel wrote,
//! followed by the rewritten frame, so a GRO/TSO super-frame leaves whole and the kernel
//! (or NIC) segments it and completes its checksum toward the node.
//!
//! Every offset read from the ring is checked against its block's or slot's bounds before
//! use; frames whose descriptors do not add up are handed back and reported, never
//! trusted. All `unsafe` of the ring is in this file.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::mmap::Mapping;
use super::packet::{bind_ll, check, filtered_socket, setsockopt, Aux};

const SOL_PACKET: libc::c_int = 263;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const TPACKET_V3: libc::c_int = 2;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
const ETH_P_ALL: u16 = 0x0003;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_KERNEL: u32 = 0;

/// `struct tpacket3_hdr` field offsets (linux/if_packet.h); the `sockaddr_ll` follows at
/// `TPACKET_ALIGN(sizeof(tpacket3_hdr))` = 48.
const H_NEXT: usize = 0;
const H_SNAPLEN: usize = 12;
const H_LEN: usize = 16;
const H_STATUS: usize = 20;
const H_MAC: usize = 24;
const H_SLL: usize = 48;
/// `sll_pkttype` inside `sockaddr_ll`.
const SLL_PKTTYPE: usize = 10;
/// `struct tpacket_block_desc` + `tpacket_hdr_v1` offsets.
const B_STATUS: usize = 8;
const B_NUM_PKTS: usize = 12;
const B_FIRST: usize = 16;

/// Size of `struct virtio_net_hdr` (without `num_buffers`), as `PACKET_VNET_HDR` uses.
pub const VNET_HDR_LEN: usize = 10;
/// Frames sent per `sendmmsg` call at most.
pub const TX_BATCH: usize = 64;

/// `struct tpacket_req3`.
#[repr(C)]
struct TpacketReq3 {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
    tp_retire_blk_tov: u32,
    tp_sizeof_priv: u32,
    tp_feature_req_word: u32,
}

/// `struct tpacket_stats_v3`.
#[repr(C)]
#[derive(Default)]
struct TpacketStatsV3 {
    tp_packets: u32,
    tp_drops: u32,
    tp_freeze_q_cnt: u32,
}

/// The `virtio_net_hdr` the kernel put in front of a frame (little-endian on the wire of
/// the ring, as packet sockets use the legacy virtio byte order of the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*` bits ([`VnetHdr::NEEDS_CSUM`], [`VnetHdr::DATA_VALID`]).
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*` ([`VnetHdr::GSO_NONE`], [`VnetHdr::GSO_TCPV4`], … | ECN).
    pub gso_type: u8,
    /// Length of the headers (a hint for the kernel's linear part).
    pub hdr_len: u16,
    /// Segment payload size when `gso_type` is not `GSO_NONE`.
    pub gso_size: u16,
    /// Where the checksummed region starts (from the Ethernet header), with NEEDS_CSUM.
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start`, with NEEDS_CSUM.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// The checksum is partial: `csum_start`/`csum_offset` say where to complete it.
    pub const NEEDS_CSUM: u8 = 1;
    /// The checksum was verified by the receiver.
    pub const DATA_VALID: u8 = 2;
    /// Not a super-frame.
    pub const GSO_NONE: u8 = 0;
    /// A TCP/IPv4 super-frame to be segmented in `gso_size` pieces.
    pub const GSO_TCPV4: u8 = 1;
    /// A TCP/IPv6 super-frame.
    pub const GSO_TCPV6: u8 = 4;
    /// ECN bit or'ed into `gso_type`.
    pub const GSO_ECN: u8 = 0x80;

    /// Parses the 10 header bytes.
    pub fn parse(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }
}

/// One received frame, lent to the caller of [`PacketRing::next_block`].
#[derive(Debug)]
pub struct RxFrame<'a> {
    /// The frame from its Ethernet header, as much as the ring holds (`tp_snaplen`).
    pub data: &'a mut [u8],
    /// Packet type, status bits and length on the wire.
    pub aux: Aux,
    /// The frame's virtio-net header, when the ring was opened with `vnet_hdr`.
    pub vnet: Option<VnetHdr>,
}

/// What one [`PacketRing::next_block`] call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockReport {
    /// Frames the kernel had put in the block.
    pub frames: u32,
    /// The block's descriptors did not add up: the walk stopped early.
    pub malformed: bool,
    /// Frames sent (accepted by the kernel).
    pub sent: u32,
    /// Their bytes, Ethernet header included, virtio header excluded.
    pub sent_bytes: u64,
    /// `sendmmsg` calls made.
    pub send_calls: u32,
    /// Frames refused with `EMSGSIZE` (too large and not a super-frame the kernel takes).
    pub too_big: u32,
    /// Frames refused for another reason (queue full, interface down).
    pub failed: u32,
    /// The `errno` of the last refusal.
    pub last_errno: i32,
}

/// How to open a [`PacketRing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// The ring's layout.
    pub version: RingVersion,
    /// Receive and send with a `virtio_net_hdr` (super-frames, partial checksums).
    pub vnet_hdr: bool,
    /// `PACKET_FANOUT_HASH` membership (one flow → one socket of the group).
    pub fanout: Option<Fanout>,
}

/// How a ring takes part in a fanout group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fanout {
    /// Start a new group with an id the kernel picks, unique in the network namespace
    /// (`PACKET_FANOUT_FLAG_UNIQUEID`); read it back with [`PacketRing::fanout_id`].
    New,
    /// Join the group with this id.
    Join(u16),
}

/// The two ring layouts the kernel offers for receiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingVersion {
    /// TPACKET_V2: one fixed slot per frame. The kernel wakes the reader per frame, so a
    /// lone SYN is handled at once; every slot must hold the largest frame (a 64 KiB
    /// super-frame), so the ring costs `frames` × about 66 KiB of memory.
    V2 {
        /// Slots in the ring.
        frames: u32,
    },
    /// TPACKET_V3: frames packed back to back in blocks. Dense and cheap per frame, but
    /// the kernel hands a block over only when it is full or after `block_timeout_ms`
    /// (at least one timer tick: 4 ms at HZ=250), which a lightly loaded distributor
    /// adds to every packet's latency.
    V3 {
        /// Bytes per block (page multiple, power of two); bounds the largest frame.
        block_size: u32,
        /// Blocks in the ring.
        blocks: u32,
        /// Hand a partly filled block over after this many milliseconds.
        block_timeout_ms: u32,
    },
}

/// V2 slot size: the largest IPv4 super-frame (14 + 65,535) behind the slot header,
/// `sockaddr_ll`, alignment and a virtio-net header (the kernel puts the frame at
/// offset 76 at most), rounded to the 16-byte `TPACKET_ALIGNMENT`.
const V2_FRAME_SIZE: u32 = 66_048;
/// V2 block size: seven slots per 512 KiB allocation.
const V2_BLOCK_SIZE: u32 = 512 << 10;
/// `struct tpacket2_hdr` offsets; its `sockaddr_ll` follows at 32.
const H2_STATUS: usize = 0;
const H2_LEN: usize = 4;
const H2_SNAPLEN: usize = 8;
const H2_MAC: usize = 12;
const H2_SLL: usize = 32;
const TPACKET_V2: libc::c_int = 1;

/// `struct tpacket_req` (V1/V2).
#[repr(C)]
struct TpacketReq {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
}

/// Where a frame to send sits in the current block.
#[derive(Clone, Copy, Default)]
struct Pending {
    off: usize,
    len: usize,
}

/// A non-blocking AF_PACKET socket bound to one interface, receiving through a
/// TPACKET_V2 or V3 ring (see the module documentation).
pub struct PacketRing {
    fd: OwnedFd,
    map: Mapping,
    block_size: usize,
    blocks: usize,
    /// V2 only: slot size and slots per block (0 for V3).
    frame_size: usize,
    per_block: usize,
    /// Next block (V3) or slot (V2) to look at.
    next: usize,
    /// Slots in the ring (V2), blocks (V3).
    slots: usize,
    vnet: bool,
    pending: Box<[Pending; TX_BATCH]>,
    /// V2: the slots lent out in the current batch, handed back after the send.
    taken: Box<[usize; TX_BATCH]>,
    /// Whether the kernel honoured `PACKET_IGNORE_OUTGOING`.
    pub ignores_outgoing: bool,
}

impl std::fmt::Debug for PacketRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketRing")
            .field("fd", &self.fd)
            .field("blocks", &self.blocks)
            .field("block_size", &self.block_size)
            .field("vnet", &self.vnet)
            .finish()
    }
}

// SAFETY: the mapping is owned by this value alone (no aliases are handed out beyond a
// `next_block` call), so moving it to another thread is sound.
unsafe impl Send for PacketRing {}

impl PacketRing {
    /// Opens the socket on interface `ifindex`, receiving what the classic-BPF program
    /// `filter` accepts into a ring shaped by `cfg`. Fails with `PermissionDenied`
    /// without CAP_NET_RAW, or with the kernel's error for an option it refuses.
    pub fn open(
        ifindex: u32,
        filter: &[libc::sock_filter],
        cfg: RingConfig,
    ) -> io::Result<PacketRing> {
        let fd = filtered_socket(filter)?;
        let raw = fd.as_raw_fd();
        let ignores_outgoing =
            setsockopt(raw, SOL_PACKET, PACKET_IGNORE_OUTGOING, &1 as &libc::c_int).is_ok();
        let version = match cfg.version {
            RingVersion::V2 { .. } => TPACKET_V2,
            RingVersion::V3 { .. } => TPACKET_V3,
        };
        setsockopt(raw, SOL_PACKET, PACKET_VERSION, &version)?;
        // Must precede the ring: the kernel refuses it once a ring exists.
        if cfg.vnet_hdr {
            setsockopt(raw, SOL_PACKET, PACKET_VNET_HDR, &1 as &libc::c_int)?;
        }
        let (block_size, blocks, frame_size, per_block, slots) = match cfg.version {
            RingVersion::V2 { frames } => {
                let per_block = V2_BLOCK_SIZE / V2_FRAME_SIZE;
                let blocks = frames.div_ceil(per_block).max(1);
                let req = TpacketReq {
                    tp_block_size: V2_BLOCK_SIZE,
                    tp_block_nr: blocks,
                    tp_frame_size: V2_FRAME_SIZE,
                    tp_frame_nr: blocks * per_block,
                };
                setsockopt(raw, SOL_PACKET, PACKET_RX_RING, &req)?;
                (
                    V2_BLOCK_SIZE as usize,
                    blocks as usize,
                    V2_FRAME_SIZE as usize,
                    per_block as usize,
                    (blocks * per_block) as usize,
                )
            }
            RingVersion::V3 {
                block_size,
                blocks,
                block_timeout_ms,
            } => {
                let frame_size = 2048u32;
                let req = TpacketReq3 {
                    tp_block_size: block_size,
                    tp_block_nr: blocks,
                    tp_frame_size: frame_size,
                    tp_frame_nr: block_size / frame_size * blocks,
                    tp_retire_blk_tov: block_timeout_ms,
                    tp_sizeof_priv: 0,
                    tp_feature_req_word: 0,
                };
                setsockopt(raw, SOL_PACKET, PACKET_RX_RING, &req)?;
                (block_size as usize, blocks as usize, 0, 0, blocks as usize)
            }
        };
        let map_len = block_size * blocks;
        // The ring the kernel just allocated for this descriptor. MAP_LOCKED can fail
        // under RLIMIT_MEMLOCK: the ring works unlocked too.
        let map = Mapping::new(map_len, libc::MAP_SHARED | libc::MAP_LOCKED, raw, 0)
            .or_else(|_| Mapping::new(map_len, libc::MAP_SHARED, raw, 0))?;
        let ring = PacketRing {
            fd,
            map,
            block_size,
            blocks,
            frame_size,
            per_block,
            next: 0,
            slots,
            vnet: cfg.vnet_hdr,
            pending: Box::new([Pending::default(); TX_BATCH]),
            taken: Box::new([0; TX_BATCH]),
            ignores_outgoing,
        };
        // SAFETY: zeroed sockaddr_ll is a valid value; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = i32::try_from(ifindex).unwrap_or(0);
        bind_ll(raw, &sll)?;
        let arg = match cfg.fanout {
            None => None,
            Some(Fanout::New) => Some((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16),
            Some(Fanout::Join(id)) => Some(u32::from(id) | (PACKET_FANOUT_HASH << 16)),
        };
        if let Some(arg) = arg {
            setsockopt(raw, SOL_PACKET, PACKET_FANOUT, &arg)?;
        }
        Ok(ring)
    }

    /// The id of the fanout group this ring belongs to (after [`Fanout::New`], the one
    /// the kernel picked), for the other rings to [`Fanout::Join`].
    pub fn fanout_id(&self) -> io::Result<u16> {
        let mut v: u32 = 0;
        let mut len = size_of::<u32>() as libc::socklen_t;
        // SAFETY: passes a live, writable u32 and its size.
        check(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_FANOUT,
                (&mut v as *mut u32).cast(),
                &mut len,
            )
        })?;
        // The low 16 bits are the id; the high ones the type and flags.
        Ok((v & 0xffff) as u16)
    }

    /// Frames the kernel dropped because the ring was full, since the last call
    /// (`PACKET_STATISTICS` resets on read). `None` if the kernel would not say.
    pub fn drops(&self) -> Option<u64> {
        let mut st = TpacketStatsV3::default();
        let mut len = size_of::<TpacketStatsV3>() as libc::socklen_t;
        // SAFETY: passes a live, writable struct and its size; the kernel writes at most
        // `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                (&mut st as *mut TpacketStatsV3).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(u64::from(st.tp_drops))
    }

    /// Blocks (V3) or slots (V2) the kernel has filled and we have not handed back yet:
    /// the ring's fill. Reads only status words.
    pub fn ready(&self) -> usize {
        (0..self.slots)
            .filter(|i| self.status_word(*i).load(Ordering::Acquire) & TP_STATUS_USER != 0)
            .count()
    }

    /// The status word of block (V3) or slot (V2) `i` < `slots`.
    fn status_word(&self, i: usize) -> &AtomicU32 {
        let off = if self.frame_size == 0 {
            i * self.block_size + B_STATUS
        } else {
            (i / self.per_block) * self.block_size
                + (i % self.per_block) * self.frame_size
                + H2_STATUS
        };
        // SAFETY: `i` < slots, so `off + 4` lies inside the mapping; the word is 4-byte
        // aligned (blocks are page-aligned, slots 16-byte aligned) and we only access it
        // atomically, while the kernel writes it with a barrier before setting
        // TP_STATUS_USER and reads it only after we store TP_STATUS_KERNEL.
        unsafe { &*(self.map.ptr().add(off) as *const AtomicU32) }
    }

    fn block_status(&self, i: usize) -> u32 {
        self.status_word(i).load(Ordering::Acquire)
    }

    /// Takes the next frames the kernel has filled, if any (a block for V3; up to
    /// [`TX_BATCH`] consecutive slots for V2): calls `f` on each (which may rewrite the
    /// frame in place and return `Some(len)` to send `data[..len]`), sends what was
    /// asked, and hands the frames back. `None` when the kernel has nothing for us
    /// (poll for readability, then call again).
    pub fn next_batch<F>(&mut self, f: F) -> Option<BlockReport>
    where
        F: FnMut(RxFrame<'_>) -> Option<usize>,
    {
        if self.frame_size == 0 {
            self.next_block(f)
        } else {
            self.next_slots(f)
        }
    }

    /// V2: up to [`TX_BATCH`] consecutive filled slots.
    fn next_slots<F>(&mut self, mut f: F) -> Option<BlockReport>
    where
        F: FnMut(RxFrame<'_>) -> Option<usize>,
    {
        let mut rep = BlockReport::default();
        let mut queued = 0usize;
        let mut taken = 0usize;
        let hdr_room = if self.vnet { VNET_HDR_LEN } else { 0 };
        while taken < TX_BATCH {
            let i = self.next;
            let status = self.block_status(i);
            if status & TP_STATUS_USER == 0 {
                break;
            }
            self.taken[taken] = i;
            taken += 1;
            self.next = (i + 1) % self.slots;
            rep.frames += 1;
            let base =
                (i / self.per_block) * self.block_size + (i % self.per_block) * self.frame_size;
            let fs = self.frame_size;
            // SAFETY: the slot `[base, base + fs)` lies inside the mapping and is ours
            // (TP_STATUS_USER, seen with acquire ordering) until handed back below; the
            // reads are within its first H2_SLL + 12 bytes.
            let (wire_len, snaplen, mac, pkttype) = unsafe {
                let p = self.map.ptr().add(base);
                (
                    std::ptr::read_unaligned(p.add(H2_LEN) as *const u32) as usize,
                    std::ptr::read_unaligned(p.add(H2_SNAPLEN) as *const u32) as usize,
                    std::ptr::read_unaligned(p.add(H2_MAC) as *const u16) as usize,
                    *p.add(H2_SLL + SLL_PKTTYPE),
                )
            };
            if mac < H2_SLL + 12 + hdr_room || mac.checked_add(snaplen).is_none_or(|e| e > fs) {
                rep.malformed = true;
                continue;
            }
            let aux = Aux {
                pkttype,
                status,
                wire_len: wire_len.max(snaplen),
            };
            self.lend(base + mac, snaplen, aux, &mut f, &mut queued, &mut rep);
        }
        if taken == 0 {
            return None;
        }
        if queued > 0 {
            self.flush(queued, &mut rep);
        }
        for k in 0..taken {
            let i = self.taken[k];
            self.status_word(i)
                .store(TP_STATUS_KERNEL, Ordering::Release);
        }
        Some(rep)
    }

    /// Lends the frame at `[start, start + snaplen)` of the mapping (with its virtio-net
    /// header in the `VNET_HDR_LEN` bytes before it, when on) to `f`, and queues what `f`
    /// asks to send; flushes a full queue. Out-of-mapping ranges are refused.
    fn lend<F>(
        &mut self,
        start: usize,
        snaplen: usize,
        aux: Aux,
        f: &mut F,
        queued: &mut usize,
        rep: &mut BlockReport,
    ) where
        F: FnMut(RxFrame<'_>) -> Option<usize>,
    {
        let hdr_room = if self.vnet { VNET_HDR_LEN } else { 0 };
        if start < hdr_room
            || start
                .checked_add(snaplen)
                .is_none_or(|e| e > self.map.len())
        {
            rep.malformed = true;
            return;
        }
        let mut vnet = None;
        if self.vnet {
            let mut h = [0u8; VNET_HDR_LEN];
            // SAFETY: `[start - VNET_HDR_LEN, start)` lies inside the mapping (checked
            // above), in a block or slot the caller owns.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.map.ptr().add(start - VNET_HDR_LEN),
                    h.as_mut_ptr(),
                    VNET_HDR_LEN,
                );
            }
            vnet = Some(VnetHdr::parse(&h));
        }
        // SAFETY: `[start, start + snaplen)` lies in the mapping (checked above), in a
        // block or slot that is ours until handed back; the slice lives only for this
        // call of `f`, and no other reference to these bytes exists meanwhile.
        let data = unsafe { std::slice::from_raw_parts_mut(self.map.ptr().add(start), snaplen) };
        if let Some(len) = f(RxFrame { data, aux, vnet }) {
            if len <= snaplen {
                self.pending[*queued] = Pending {
                    off: start - hdr_room,
                    len: len + hdr_room,
                };
                *queued += 1;
                if *queued == TX_BATCH {
                    self.flush(*queued, rep);
                    *queued = 0;
                }
            }
        }
    }

    /// Takes the next block the kernel has filled, if any: calls `f` on each of its
    /// frames (which may rewrite the frame in place and return `Some(len)` to send
    /// `data[..len]`), sends what was asked, and hands the block back. `None` when the
    /// kernel has no block for us (poll for readability, then call again).
    fn next_block<F>(&mut self, mut f: F) -> Option<BlockReport>
    where
        F: FnMut(RxFrame<'_>) -> Option<usize>,
    {
        let i = self.next;
        if self.block_status(i) & TP_STATUS_USER == 0 {
            return None;
        }
        let base = i * self.block_size;
        let bs = self.block_size;
        let map = self.map.ptr();
        let read_u32 = move |off: usize| -> u32 {
            // SAFETY: callers check `off + 4 <= bs`; the block is ours (TP_STATUS_USER,
            // seen with acquire ordering) until we store TP_STATUS_KERNEL below.
            unsafe { std::ptr::read_unaligned(map.add(base + off) as *const u32) }
        };
        let mut rep = BlockReport::default();
        let num = read_u32(B_NUM_PKTS);
        let mut off = read_u32(B_FIRST) as usize;
        let mut queued = 0usize;
        rep.frames = num;
        // The count comes from the kernel, but the loop is bounded by it and by the
        // block: every frame header takes at least H_SLL bytes.
        for _ in 0..num.min((bs / H_SLL) as u32) {
            if off < B_FIRST + 4 || off + H_SLL + 12 > bs {
                rep.malformed = true;
                break;
            }
            let next = read_u32(off + H_NEXT) as usize;
            let snaplen = read_u32(off + H_SNAPLEN) as usize;
            let wire_len = read_u32(off + H_LEN) as usize;
            let status = read_u32(off + H_STATUS);
            // SAFETY: `off + H_SLL + 12 <= bs` checked above.
            let (mac, pkttype) = unsafe {
                let p = self.map.ptr().add(base + off);
                (
                    std::ptr::read_unaligned(p.add(H_MAC) as *const u16) as usize,
                    *p.add(H_SLL + SLL_PKTTYPE),
                )
            };
            let hdr_room = if self.vnet { VNET_HDR_LEN } else { 0 };
            let start = off + mac;
            if mac < H_SLL + 12 + hdr_room || start.checked_add(snaplen).is_none_or(|e| e > bs) {
                rep.malformed = true;
                break;
            }
            let aux = Aux {
                pkttype,
                status,
                wire_len: wire_len.max(snaplen),
            };
            self.lend(base + start, snaplen, aux, &mut f, &mut queued, &mut rep);
            if next == 0 {
                break;
            }
            off = match off.checked_add(next) {
                Some(o) => o,
                None => {
                    rep.malformed = true;
                    break;
                }
            };
        }
        if queued > 0 {
            self.flush(queued, &mut rep);
        }
        // The release store hands the block (and every byte we read or wrote in it) back.
        self.status_word(i)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        self.next = (i + 1) % self.blocks;
        Some(rep)
    }

    /// Sends the first `n` pending frames with `sendmmsg`, skipping (and counting) a
    /// frame the kernel refuses so the rest still go. At most `n` + 1 calls.
    fn flush(&mut self, n: usize, rep: &mut BlockReport) {
        let hdr_room = if self.vnet { VNET_HDR_LEN } else { 0 };
        // SAFETY: zeroed iovec/mmsghdr arrays are valid values.
        let mut iov: [libc::iovec; TX_BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; TX_BATCH] = unsafe { zeroed() };
        for ((v, m), p) in iov.iter_mut().zip(msgs.iter_mut()).zip(&self.pending[..n]) {
            // SAFETY: `p.off + p.len` lies inside the mapping (from checked offsets).
            v.iov_base = unsafe { self.map.ptr().add(p.off) }.cast();
            v.iov_len = p.len;
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        let mut k = 0;
        let mut calls = 0;
        while k < n && calls <= n {
            calls += 1;
            rep.send_calls += 1;
            // SAFETY: `msgs[k..n]` are initialised and point to live iovecs, which point
            // into the block we still own; the socket is bound, so no address is needed.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr().add(k),
                    (n - k) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                for m in k..k + r as usize {
                    rep.sent += 1;
                    rep.sent_bytes += (self.pending[m].len - hdr_room) as u64;
                }
                k += r as usize;
            } else {
                let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                if e == libc::EINTR {
                    continue;
                }
                if e == libc::EMSGSIZE {
                    rep.too_big += 1;
                } else {
                    rep.failed += 1;
                }
                rep.last_errno = e;
                k += 1;
            }
        }
    }
}

impl AsRawFd for PacketRing {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring over anonymous memory (no kernel behind it) whose "socket" is an
    /// unconnected UDP socket: every send fails (no destination), which the report counts.
    /// `v2`: slots of `V2_FRAME_SIZE`, else V3 blocks of 64 KiB.
    fn fake(v2: bool, slots: usize, vnet: bool) -> PacketRing {
        let (block_size, blocks, frame_size, per_block) = if v2 {
            let per = (V2_BLOCK_SIZE / V2_FRAME_SIZE) as usize;
            let blocks = slots.div_ceil(per);
            (V2_BLOCK_SIZE as usize, blocks, V2_FRAME_SIZE as usize, per)
        } else {
            (64 << 10, slots, 0, 0)
        };
        let map = Mapping::new(
            block_size * blocks,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
        .expect("anonymous mapping");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
        PacketRing {
            fd: OwnedFd::from(udp),
            map,
            block_size,
            blocks,
            frame_size,
            per_block,
            next: 0,
            slots: if v2 { blocks * per_block } else { blocks },
            vnet,
            pending: Box::new([Pending::default(); TX_BATCH]),
            taken: Box::new([0; TX_BATCH]),
            ignores_outgoing: true,
        }
    }

    fn mem(r: &mut PacketRing) -> &mut [u8] {
        // SAFETY: the whole mapping, borrowed mutably through the ring.
        unsafe { std::slice::from_raw_parts_mut(r.map.ptr(), r.map.len()) }
    }

    fn put32(m: &mut [u8], at: usize, v: u32) {
        m[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }

    fn put16(m: &mut [u8], at: usize, v: u16) {
        m[at..at + 2].copy_from_slice(&v.to_ne_bytes());
    }

    #[test]
    fn v3_block_frames_are_lent_sent_and_the_block_handed_back() {
        let mut r = fake(false, 2, true);
        let m = mem(&mut r);
        // Block 0: two frames, the vnet header 10 bytes before each Ethernet header.
        put32(m, B_STATUS, TP_STATUS_USER);
        put32(m, B_NUM_PKTS, 2);
        put32(m, B_FIRST, 48);
        for (k, off) in [48usize, 48 + 256].into_iter().enumerate() {
            put32(m, off + H_NEXT, if k == 0 { 256 } else { 0 });
            put32(m, off + H_SNAPLEN, 60);
            put32(m, off + H_LEN, 60);
            put32(m, off + H_STATUS, TP_STATUS_USER | (1 << 3));
            put16(m, off + H_MAC, 96);
            m[off + H_SLL + SLL_PKTTYPE] = k as u8;
            m[off + 96 - VNET_HDR_LEN] = VnetHdr::NEEDS_CSUM;
            m[off + 96] = 0xa0 + k as u8;
        }
        let mut seen = Vec::new();
        let rep = r
            .next_batch(|f| {
                seen.push((
                    f.data[0],
                    f.aux.pkttype,
                    f.aux.status,
                    f.vnet.map(|h| h.flags),
                ));
                f.data[0] = 0xee;
                Some(f.data.len())
            })
            .expect("a block");
        assert_eq!(
            seen,
            vec![
                (0xa0, 0, TP_STATUS_USER | 8, Some(VnetHdr::NEEDS_CSUM)),
                (0xa1, 1, TP_STATUS_USER | 8, Some(VnetHdr::NEEDS_CSUM))
            ]
        );
        assert_eq!((rep.frames, rep.malformed), (2, false));
        // The UDP stand-in has no destination: both sends refused, counted, not lost.
        assert_eq!(rep.sent + rep.failed + rep.too_big, 2);
        assert_eq!(r.block_status(0), TP_STATUS_KERNEL, "handed back");
        assert_eq!(mem(&mut r)[48 + 96], 0xee, "rewritten in place");
        assert!(r.next_batch(|_| None).is_none(), "block 1 is the kernel's");
    }

    #[test]
    fn v2_slots_run_until_a_kernel_slot() {
        let mut r = fake(true, 14, false);
        let fs = r.frame_size;
        let bs = r.block_size;
        let per = r.per_block;
        let m = mem(&mut r);
        for i in 0..3 {
            let base = (i / per) * bs + (i % per) * fs;
            put32(m, base + H2_STATUS, TP_STATUS_USER);
            put32(m, base + H2_LEN, 100);
            put32(m, base + H2_SNAPLEN, 60);
            put16(m, base + H2_MAC, 80);
        }
        let mut n = 0;
        let rep = r
            .next_batch(|f| {
                n += 1;
                assert_eq!((f.data.len(), f.aux.wire_len, f.vnet), (60, 100, None));
                None
            })
            .expect("slots");
        assert_eq!((n, rep.frames, rep.send_calls), (3, 3, 0));
        assert!((0..3).all(|i| r.block_status(i) == TP_STATUS_KERNEL));
        assert!(r.next_batch(|_| None).is_none());
    }

    /// Whatever the ring holds — descriptors and offsets of any value — the walk stays
    /// in bounds, never panics, and hands everything back.
    #[test]
    fn garbage_descriptors_never_panic_and_are_handed_back() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for v2 in [false, true] {
            for vnet in [false, true] {
                for _ in 0..200 {
                    let mut r = fake(v2, 7, vnet);
                    // Sprinkle random words over the first 4 KiB of every block or slot,
                    // where the descriptors live, then mark everything ready.
                    let (step, n) = if v2 {
                        (r.frame_size, r.slots)
                    } else {
                        (r.block_size, r.blocks)
                    };
                    let bs = r.block_size;
                    let per = r.per_block.max(1);
                    let m = mem(&mut r);
                    for i in 0..n {
                        let base = if v2 {
                            (i / per) * bs + (i % per) * step
                        } else {
                            i * step
                        };
                        for w in 0..1024 {
                            let v = next() as u32;
                            // Small values are more interesting as offsets and counts.
                            let v = if v & 1 == 0 { v % 4096 } else { v };
                            put32(m, base + 4 * w, v);
                        }
                        let st = if v2 {
                            base + H2_STATUS
                        } else {
                            base + B_STATUS
                        };
                        put32(m, st, TP_STATUS_USER | (next() as u32 & !TP_STATUS_USER));
                    }
                    let mut guard = 0;
                    while r
                        .next_batch(|f| Some((next() as usize) % (f.data.len() + 2)))
                        .is_some()
                    {
                        guard += 1;
                        assert!(guard <= n, "every batch hands something back");
                    }
                    assert_eq!(r.ready(), 0, "all handed back");
                }
            }
        }
    }

    #[test]
    fn vnet_header_parses_little_endian() {
        let h = VnetHdr::parse(&[1, 1, 54, 0, 0xa8, 0x05, 34, 0, 16, 0]);
        assert_eq!(
            h,
            VnetHdr {
                flags: VnetHdr::NEEDS_CSUM,
                gso_type: VnetHdr::GSO_TCPV4,
                hdr_len: 54,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16,
            }
        );
    }
}
