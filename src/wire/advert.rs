//! The failover advert datagram (heartbeat) and its replay guard.
//!
//! What it is: a zero-copy [`Packet`] view over a byte buffer (checked once
//! with [`Packet::new_checked`]), a validated [`Advert`] repr, the
//! [`parse`]/[`emit`] pair that authenticates with HMAC-SHA256, and a sans-IO
//! [`ReplayGuard`] that drops replayed captures. Shaped after smoltcp's
//! `wire` module.
//!
//! What it owns: the byte layout and every validity rule about it (lengths,
//! magic, version, kind/priority consistency, MAC).
//!
//! What it does not do: sockets, key management, choosing sequence numbers
//! (the caller seeds them from wall-clock nanoseconds so they keep growing
//! across restarts), or acting on an advert (see [`crate::ha::machine`]).
//! The payload is opaque here.
//!
//! # Layout
//!
//! All integers are big-endian. The MAC covers every byte before it.
//!
//! | offset | size | field                | notes                                      |
//! |-------:|-----:|----------------------|--------------------------------------------|
//! | 0      | 4    | magic                | `b"FLCH"`                                  |
//! | 4      | 1    | version              | `1`                                        |
//! | 5      | 1    | kind                 | 0 advert, 1 state-sync, 2 resign           |
//! | 6      | 1    | priority             | 0 only (and always) with kind resign       |
//! | 7      | 1    | flags                | reserved, must be 0                        |
//! | 8      | 2    | group_id             | failover group (VRRP's VRID)               |
//! | 10     | 2    | advert_interval_cs   | centiseconds, ≥ 1 (as in VRRPv3)           |
//! | 12     | 4    | node_id              | sender, from its IPv4 address; breaks ties |
//! | 16     | 8    | epoch                | term, grows on every takeover              |
//! | 24     | 8    | sequence             | strictly increasing per sender             |
//! | 32     | 2    | payload_len          | ≤ 1024                                     |
//! | 34     | n    | payload              | opaque (state sync of admin changes)       |
//! | 34 + n | 32   | mac                  | HMAC-SHA256(key, bytes 0 .. 34 + n)        |
//!
//! A datagram is exactly `66 + payload_len` bytes: shorter is
//! [`WireError::Truncated`], longer is [`WireError::TrailingBytes`].
//! The resign kind is RFC 5798 §6.4.3's priority-0 advertisement: a master
//! that shuts down sends it so that backups take over after Skew_Time
//! instead of Master_Down_Interval.

use core::fmt;
use core::ops::Range;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The four bytes every datagram starts with.
pub const MAGIC: [u8; 4] = *b"FLCH";
/// The only version this module reads and writes.
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 34;
/// Bytes of the trailing HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;
/// Largest payload accepted or emitted.
pub const MAX_PAYLOAD_LEN: usize = 1024;
/// Smallest valid datagram (empty payload).
pub const MIN_LEN: usize = HEADER_LEN + MAC_LEN;
/// Largest valid datagram (full payload): size receive buffers with this.
pub const MAX_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN + MAC_LEN;

mod field {
    use core::ops::Range;

    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const KIND: usize = 5;
    pub const PRIORITY: usize = 6;
    pub const FLAGS: usize = 7;
    pub const GROUP_ID: Range<usize> = 8..10;
    pub const INTERVAL: Range<usize> = 10..12;
    pub const NODE_ID: Range<usize> = 12..16;
    pub const EPOCH: Range<usize> = 16..24;
    pub const SEQUENCE: Range<usize> = 24..32;
    pub const PAYLOAD_LEN: Range<usize> = 32..34;
}

/// Why a datagram (or an [`Advert`] to emit) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the header and MAC, or than `payload_len` requires.
    Truncated,
    /// Longer than `payload_len` says: bytes after the MAC.
    TrailingBytes,
    /// The first four bytes are not `b"FLCH"`.
    BadMagic,
    /// A version this build does not speak.
    BadVersion(u8),
    /// A kind byte outside 0..=2.
    BadKind(u8),
    /// Reserved flag bits set.
    BadFlags(u8),
    /// Priority 0 without kind resign, or kind resign with a priority.
    BadPriority(u8),
    /// An advert interval of zero centiseconds.
    BadInterval,
    /// A payload longer than [`MAX_PAYLOAD_LEN`].
    PayloadTooLong(usize),
    /// The HMAC does not match (wrong key, corruption or forgery).
    BadMac,
    /// An empty key: refused, it would authenticate nothing.
    EmptyKey,
    /// A sequence number not above the highest already accepted from that sender.
    Replayed {
        /// The sender.
        node_id: u32,
        /// The sequence number received.
        sequence: u64,
        /// The highest sequence number accepted from that sender so far.
        highest: u64,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => write!(f, "advert truncated"),
            WireError::TrailingBytes => write!(f, "advert has trailing bytes"),
            WireError::BadMagic => write!(f, "advert magic is not FLCH"),
            WireError::BadVersion(v) => write!(f, "advert version={v} unsupported"),
            WireError::BadKind(k) => write!(f, "advert kind={k} unknown"),
            WireError::BadFlags(x) => write!(f, "advert flags={x:#04x} reserved bits set"),
            WireError::BadPriority(p) => {
                write!(f, "advert priority={p} inconsistent with its kind")
            }
            WireError::BadInterval => write!(f, "advert interval=0 invalid"),
            WireError::PayloadTooLong(n) => {
                write!(f, "advert payload_len={n} exceeds {MAX_PAYLOAD_LEN}")
            }
            WireError::BadMac => write!(f, "advert MAC mismatch"),
            WireError::EmptyKey => write!(f, "advert key is empty"),
            WireError::Replayed {
                node_id,
                sequence,
                highest,
            } => write!(
                f,
                "advert replayed: node_id={node_id} sequence={sequence} highest={highest}"
            ),
        }
    }
}

impl std::error::Error for WireError {}

/// What a datagram is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Periodic master advertisement (RFC 5798 §6.4.3 "send an ADVERTISEMENT").
    Advert,
    /// Carries an admin-state change in the payload; not fed to the machine.
    StateSync,
    /// Priority-0 advert: the master is shutting down (RFC 5798 §6.4.3).
    Resign,
}

impl Kind {
    /// The byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            Kind::Advert => 0,
            Kind::StateSync => 1,
            Kind::Resign => 2,
        }
    }

    /// The kind for a wire byte, or [`WireError::BadKind`].
    pub fn from_byte(byte: u8) -> Result<Kind, WireError> {
        match byte {
            0 => Ok(Kind::Advert),
            1 => Ok(Kind::StateSync),
            2 => Ok(Kind::Resign),
            other => Err(WireError::BadKind(other)),
        }
    }
}

/// Converts an interval to whole centiseconds for the wire, rounding down
/// and saturating into `1..=u16::MAX`.
pub fn interval_to_cs(interval: Duration) -> u16 {
    let cs = interval.as_millis() / 10;
    u16::try_from(cs).unwrap_or(u16::MAX).max(1)
}

/// Converts a wire interval in centiseconds to a [`Duration`].
pub fn cs_to_interval(cs: u16) -> Duration {
    Duration::from_millis(u64::from(cs) * 10)
}

/// A read/write view over a datagram buffer.
///
/// Accessors never panic: on a buffer that has not passed
/// [`Packet::check_len`], bytes past its end read as zero and writes past its
/// end are dropped.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer is exactly as long as its `payload_len` says.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < MIN_LEN {
            return Err(WireError::Truncated);
        }
        let payload_len = usize::from(self.payload_len());
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(WireError::PayloadTooLong(payload_len));
        }
        let total = MIN_LEN + payload_len;
        if len < total {
            Err(WireError::Truncated)
        } else if len > total {
            Err(WireError::TrailingBytes)
        } else {
            Ok(())
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes<const N: usize>(&self, range: Range<usize>) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.buffer.as_ref().get(range) {
            if src.len() == N {
                out.copy_from_slice(src);
            }
        }
        out
    }

    fn byte(&self, at: usize) -> u8 {
        self.buffer.as_ref().get(at).copied().unwrap_or(0)
    }

    fn payload_range(&self) -> Range<usize> {
        HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())
    }

    fn mac_range(&self) -> Range<usize> {
        let end = self.payload_range().end;
        end..end + MAC_LEN
    }

    /// The magic bytes.
    pub fn magic(&self) -> [u8; 4] {
        self.bytes(field::MAGIC)
    }

    /// The version byte.
    pub fn version(&self) -> u8 {
        self.byte(field::VERSION)
    }

    /// The raw kind byte (see [`Kind::from_byte`]).
    pub fn kind(&self) -> u8 {
        self.byte(field::KIND)
    }

    /// The sender's priority (0 = resign).
    pub fn priority(&self) -> u8 {
        self.byte(field::PRIORITY)
    }

    /// The reserved flags byte.
    pub fn flags(&self) -> u8 {
        self.byte(field::FLAGS)
    }

    /// The failover group.
    pub fn group_id(&self) -> u16 {
        u16::from_be_bytes(self.bytes(field::GROUP_ID))
    }

    /// The sender's advert interval in centiseconds.
    pub fn advert_interval_cs(&self) -> u16 {
        u16::from_be_bytes(self.bytes(field::INTERVAL))
    }

    /// The sender's node id.
    pub fn node_id(&self) -> u32 {
        u32::from_be_bytes(self.bytes(field::NODE_ID))
    }

    /// The sender's epoch (term).
    pub fn epoch(&self) -> u64 {
        u64::from_be_bytes(self.bytes(field::EPOCH))
    }

    /// The sender's sequence number.
    pub fn sequence(&self) -> u64 {
        u64::from_be_bytes(self.bytes(field::SEQUENCE))
    }

    /// The declared payload length.
    pub fn payload_len(&self) -> u16 {
        u16::from_be_bytes(self.bytes(field::PAYLOAD_LEN))
    }

    /// The payload bytes (empty if the buffer is too short).
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(self.payload_range())
            .unwrap_or(&[])
    }

    /// The MAC bytes (empty if the buffer is too short).
    pub fn mac(&self) -> &[u8] {
        self.buffer.as_ref().get(self.mac_range()).unwrap_or(&[])
    }

    /// Checks the MAC in constant time over every byte before it.
    pub fn verify_mac(&self, key: &[u8]) -> Result<(), WireError> {
        let buf = self.buffer.as_ref();
        let signed = buf
            .get(..self.payload_range().end)
            .ok_or(WireError::Truncated)?;
        let mut mac = keyed(key)?;
        mac.update(signed);
        mac.verify_slice(self.mac()).map_err(|_| WireError::BadMac)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn put(&mut self, range: Range<usize>, bytes: &[u8]) {
        if let Some(dst) = self.buffer.as_mut().get_mut(range) {
            if dst.len() == bytes.len() {
                dst.copy_from_slice(bytes);
            }
        }
    }

    /// Sets the magic bytes.
    pub fn set_magic(&mut self, magic: [u8; 4]) {
        self.put(field::MAGIC, &magic);
    }

    /// Sets the version byte.
    pub fn set_version(&mut self, version: u8) {
        self.put(field::VERSION..field::VERSION + 1, &[version]);
    }

    /// Sets the raw kind byte.
    pub fn set_kind(&mut self, kind: u8) {
        self.put(field::KIND..field::KIND + 1, &[kind]);
    }

    /// Sets the priority.
    pub fn set_priority(&mut self, priority: u8) {
        self.put(field::PRIORITY..field::PRIORITY + 1, &[priority]);
    }

    /// Sets the flags byte.
    pub fn set_flags(&mut self, flags: u8) {
        self.put(field::FLAGS..field::FLAGS + 1, &[flags]);
    }

    /// Sets the group id.
    pub fn set_group_id(&mut self, group_id: u16) {
        self.put(field::GROUP_ID, &group_id.to_be_bytes());
    }

    /// Sets the advert interval in centiseconds.
    pub fn set_advert_interval_cs(&mut self, cs: u16) {
        self.put(field::INTERVAL, &cs.to_be_bytes());
    }

    /// Sets the node id.
    pub fn set_node_id(&mut self, node_id: u32) {
        self.put(field::NODE_ID, &node_id.to_be_bytes());
    }

    /// Sets the epoch.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.put(field::EPOCH, &epoch.to_be_bytes());
    }

    /// Sets the sequence number.
    pub fn set_sequence(&mut self, sequence: u64) {
        self.put(field::SEQUENCE, &sequence.to_be_bytes());
    }

    /// Sets the declared payload length (set it before the payload and MAC).
    pub fn set_payload_len(&mut self, len: u16) {
        self.put(field::PAYLOAD_LEN, &len.to_be_bytes());
    }

    /// The payload bytes, writable (empty if the buffer is too short).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        self.buffer.as_mut().get_mut(range).unwrap_or(&mut [])
    }

    /// Computes the MAC over every byte before it and writes it.
    pub fn fill_mac(&mut self, key: &[u8]) -> Result<(), WireError> {
        let end = self.payload_range().end;
        let mut mac = keyed(key)?;
        mac.update(
            self.buffer
                .as_ref()
                .get(..end)
                .ok_or(WireError::Truncated)?,
        );
        let tag = mac.finalize().into_bytes();
        let range = self.mac_range();
        let dst = self
            .buffer
            .as_mut()
            .get_mut(range)
            .ok_or(WireError::Truncated)?;
        if dst.len() != tag.len() {
            return Err(WireError::Truncated);
        }
        dst.copy_from_slice(&tag);
        Ok(())
    }
}

fn keyed(key: &[u8]) -> Result<HmacSha256, WireError> {
    if key.is_empty() {
        return Err(WireError::EmptyKey);
    }
    // HMAC accepts keys of any length; the error arm is unreachable in
    // practice and mapped rather than unwrapped.
    <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| WireError::EmptyKey)
}

/// A validated, authenticated datagram; the payload borrows the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert<'a> {
    /// What the datagram is for.
    pub kind: Kind,
    /// Sender priority, 1..=255 except for [`Kind::Resign`] where it is 0.
    pub priority: u8,
    /// Failover group; receivers drop other groups.
    pub group_id: u16,
    /// The sender's advert interval in centiseconds (≥ 1).
    pub advert_interval_cs: u16,
    /// The sender (unique in the group; higher wins ties).
    pub node_id: u32,
    /// The sender's term.
    pub epoch: u64,
    /// Strictly increasing per sender; see [`ReplayGuard`].
    pub sequence: u64,
    /// Opaque bytes, at most [`MAX_PAYLOAD_LEN`].
    pub payload: &'a [u8],
}

impl<'a> Advert<'a> {
    /// Checks the rules shared by parse and emit (kind/priority, interval, payload length).
    pub fn validate(&self) -> Result<(), WireError> {
        let resign = self.kind == Kind::Resign;
        if resign != (self.priority == 0) {
            return Err(WireError::BadPriority(self.priority));
        }
        if self.advert_interval_cs == 0 {
            return Err(WireError::BadInterval);
        }
        if self.payload.len() > MAX_PAYLOAD_LEN {
            return Err(WireError::PayloadTooLong(self.payload.len()));
        }
        Ok(())
    }

    /// Parses a checked packet: magic, version, MAC, then the field rules.
    ///
    /// The MAC is verified before any field but the framing is interpreted.
    pub fn parse(packet: &Packet<&'a [u8]>, key: &[u8]) -> Result<Advert<'a>, WireError> {
        packet.check_len()?;
        if packet.magic() != MAGIC {
            return Err(WireError::BadMagic);
        }
        if packet.version() != VERSION {
            return Err(WireError::BadVersion(packet.version()));
        }
        packet.verify_mac(key)?;
        if packet.flags() != 0 {
            return Err(WireError::BadFlags(packet.flags()));
        }
        let buffer: &'a [u8] = packet.buffer;
        let advert = Advert {
            kind: Kind::from_byte(packet.kind())?,
            priority: packet.priority(),
            group_id: packet.group_id(),
            advert_interval_cs: packet.advert_interval_cs(),
            node_id: packet.node_id(),
            epoch: packet.epoch(),
            sequence: packet.sequence(),
            payload: buffer.get(packet.payload_range()).unwrap_or(&[]),
        };
        advert.validate()?;
        Ok(advert)
    }

    /// Bytes [`Advert::emit`] needs.
    pub fn buffer_len(&self) -> usize {
        MIN_LEN + self.payload.len()
    }

    /// The sender's advert interval.
    pub fn advert_interval(&self) -> Duration {
        cs_to_interval(self.advert_interval_cs)
    }

    /// Writes this advert and its MAC into a packet of exactly
    /// [`Advert::buffer_len`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        key: &[u8],
    ) -> Result<(), WireError> {
        self.validate()?;
        let payload_len =
            u16::try_from(self.payload.len()).map_err(|_| WireError::PayloadTooLong(usize::MAX))?;
        let len = packet.buffer.as_ref().len();
        if len < self.buffer_len() {
            return Err(WireError::Truncated);
        }
        if len > self.buffer_len() {
            return Err(WireError::TrailingBytes);
        }
        packet.set_magic(MAGIC);
        packet.set_version(VERSION);
        packet.set_kind(self.kind.to_byte());
        packet.set_priority(self.priority);
        packet.set_flags(0);
        packet.set_group_id(self.group_id);
        packet.set_advert_interval_cs(self.advert_interval_cs);
        packet.set_node_id(self.node_id);
        packet.set_epoch(self.epoch);
        packet.set_sequence(self.sequence);
        packet.set_payload_len(payload_len);
        let dst = packet.payload_mut();
        if dst.len() != self.payload.len() {
            return Err(WireError::Truncated);
        }
        dst.copy_from_slice(self.payload);
        packet.fill_mac(key)
    }
}

/// Parses and authenticates one datagram.
pub fn parse<'a>(buf: &'a [u8], key: &[u8]) -> Result<Advert<'a>, WireError> {
    Advert::parse(&Packet::new_checked(buf)?, key)
}

/// Replaces the contents of `out` with the datagram for `advert`, reusing its
/// allocation. On error `out` is left unchanged.
pub fn emit(advert: &Advert<'_>, key: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    advert.validate()?;
    if key.is_empty() {
        return Err(WireError::EmptyKey);
    }
    out.clear();
    out.resize(advert.buffer_len(), 0);
    advert.emit(&mut Packet::new_unchecked(out.as_mut_slice()), key)
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    node_id: u32,
    epoch: u64,
    sequence: u64,
    touched: u64,
}

/// Rejects replayed datagrams: per sender, only a sequence number strictly
/// above the highest accepted one passes.
///
/// Feed it only adverts that [`parse`] accepted (the MAC makes the table
/// unforgeable). The table is bounded: when full, the sender heard from least
/// recently is forgotten, and an old capture of *that* sender would pass once;
/// keep the capacity above the number of nodes in the group.
/// A sender whose wall clock stepped back before it restarted is refused
/// until its sequence passes the old high-water mark.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    seen: Vec<Seen>,
    capacity: usize,
    tick: u64,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new()
    }
}

impl ReplayGuard {
    /// Senders remembered by [`ReplayGuard::new`].
    pub const DEFAULT_CAPACITY: usize = 16;

    /// A guard remembering up to [`ReplayGuard::DEFAULT_CAPACITY`] senders.
    pub fn new() -> ReplayGuard {
        ReplayGuard::with_capacity(ReplayGuard::DEFAULT_CAPACITY)
    }

    /// A guard remembering up to `capacity` senders (at least 1).
    pub fn with_capacity(capacity: usize) -> ReplayGuard {
        let capacity = capacity.max(1);
        ReplayGuard {
            seen: Vec::with_capacity(capacity.min(1024)),
            capacity,
            tick: 0,
        }
    }

    /// Accepts the advert and records it, or returns [`WireError::Replayed`].
    pub fn accept(&mut self, advert: &Advert<'_>) -> Result<(), WireError> {
        self.tick = self.tick.wrapping_add(1);
        let tick = self.tick;
        if let Some(seen) = self.seen.iter_mut().find(|s| s.node_id == advert.node_id) {
            if advert.sequence <= seen.sequence {
                return Err(WireError::Replayed {
                    node_id: advert.node_id,
                    sequence: advert.sequence,
                    highest: seen.sequence,
                });
            }
            seen.sequence = advert.sequence;
            seen.epoch = seen.epoch.max(advert.epoch);
            seen.touched = tick;
            return Ok(());
        }
        let entry = Seen {
            node_id: advert.node_id,
            epoch: advert.epoch,
            sequence: advert.sequence,
            touched: tick,
        };
        if self.seen.len() < self.capacity {
            self.seen.push(entry);
        } else if let Some(oldest) = self.seen.iter_mut().min_by_key(|s| s.touched) {
            *oldest = entry;
        }
        Ok(())
    }

    /// The highest (epoch, sequence) accepted from `node_id`, if remembered.
    pub fn highest(&self, node_id: u32) -> Option<(u64, u64)> {
        self.seen
            .iter()
            .find(|s| s.node_id == node_id)
            .map(|s| (s.epoch, s.sequence))
    }

    /// Forgets a sender (e.g. removed from the group).
    pub fn forget(&mut self, node_id: u32) {
        self.seen.retain(|s| s.node_id != node_id);
    }

    /// Senders remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no sender is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The most senders remembered at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test-key";

    // kind advert, priority 200, group 7, 10 cs, node 10.99.0.11, epoch 3,
    // sequence 0x0102030405060708, payload b"sync", HMAC-SHA256(b"test-key").
    static FIXTURE: [u8; 70] = [
        0x46, 0x4c, 0x43, 0x48, // magic
        0x01, 0x00, 0xc8, 0x00, // version, kind, priority, flags
        0x00, 0x07, 0x00, 0x0a, // group_id, advert_interval_cs
        0x0a, 0x63, 0x00, 0x0b, // node_id
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, // epoch
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // sequence
        0x00, 0x04, 0x73, 0x79, 0x6e, 0x63, // payload_len, payload
        0xf3, 0xc0, 0xec, 0x51, 0x74, 0x23, 0xeb, 0x23, // mac
        0x6a, 0xdb, 0x1e, 0x89, 0x99, 0x89, 0xf1, 0x61, //
        0x50, 0x72, 0x76, 0xa5, 0x6b, 0xc1, 0x15, 0x8e, //
        0xc3, 0x23, 0x8a, 0xde, 0x17, 0xae, 0x4d, 0x6f, //
    ];

    fn repr() -> Advert<'static> {
        Advert {
            kind: Kind::Advert,
            priority: 200,
            group_id: 7,
            advert_interval_cs: 10,
            node_id: 0x0a63_000b,
            epoch: 3,
            sequence: 0x0102_0304_0506_0708,
            payload: b"sync",
        }
    }

    #[test]
    fn deconstruct() {
        let packet = Packet::new_checked(&FIXTURE[..]).unwrap();
        assert_eq!(packet.magic(), MAGIC);
        assert_eq!(packet.version(), 1);
        assert_eq!(packet.kind(), 0);
        assert_eq!(packet.priority(), 200);
        assert_eq!(packet.flags(), 0);
        assert_eq!(packet.group_id(), 7);
        assert_eq!(packet.advert_interval_cs(), 10);
        assert_eq!(packet.node_id(), 0x0a63_000b);
        assert_eq!(packet.epoch(), 3);
        assert_eq!(packet.sequence(), 0x0102_0304_0506_0708);
        assert_eq!(packet.payload_len(), 4);
        assert_eq!(packet.payload(), b"sync");
        assert_eq!(packet.mac(), &FIXTURE[38..]);
        assert_eq!(packet.verify_mac(KEY), Ok(()));
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0xa5u8; FIXTURE.len()];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_magic(MAGIC);
        packet.set_version(1);
        packet.set_kind(0);
        packet.set_priority(200);
        packet.set_flags(0);
        packet.set_group_id(7);
        packet.set_advert_interval_cs(10);
        packet.set_node_id(0x0a63_000b);
        packet.set_epoch(3);
        packet.set_sequence(0x0102_0304_0506_0708);
        packet.set_payload_len(4);
        packet.payload_mut().copy_from_slice(b"sync");
        packet.fill_mac(KEY).unwrap();
        assert_eq!(&bytes[..], &FIXTURE[..]);
    }

    #[test]
    fn parse_fixture() {
        assert_eq!(parse(&FIXTURE, KEY), Ok(repr()));
        assert_eq!(repr().advert_interval(), Duration::from_millis(100));
    }

    #[test]
    fn emit_fixture() {
        let mut out = vec![1, 2, 3];
        emit(&repr(), KEY, &mut out).unwrap();
        assert_eq!(&out[..], &FIXTURE[..]);
        assert_eq!(repr().buffer_len(), FIXTURE.len());
    }

    #[test]
    fn round_trip_every_kind_and_payload_sizes() {
        let mut out = Vec::new();
        let payload = [0x5au8; MAX_PAYLOAD_LEN];
        for (kind, priority) in [(Kind::Advert, 1), (Kind::StateSync, 255), (Kind::Resign, 0)] {
            for len in [0, 1, 511, MAX_PAYLOAD_LEN] {
                let advert = Advert {
                    kind,
                    priority,
                    payload: &payload[..len],
                    ..repr()
                };
                emit(&advert, KEY, &mut out).unwrap();
                assert_eq!(out.len(), MIN_LEN + len);
                assert_eq!(parse(&out, KEY), Ok(advert));
            }
        }
    }

    #[test]
    fn every_truncation_is_err() {
        for n in 0..FIXTURE.len() {
            assert!(parse(&FIXTURE[..n], KEY).is_err(), "len {n}");
        }
        assert_eq!(parse(&FIXTURE[..10], KEY), Err(WireError::Truncated));
        assert_eq!(parse(&FIXTURE[..69], KEY), Err(WireError::Truncated));
    }

    #[test]
    fn trailing_bytes_is_err() {
        let mut long = FIXTURE.to_vec();
        long.push(0);
        assert_eq!(parse(&long, KEY), Err(WireError::TrailingBytes));
    }

    #[test]
    fn every_bit_flip_is_err() {
        let mut bytes = FIXTURE;
        for i in 0..bytes.len() {
            for bit in 0..8 {
                bytes[i] ^= 1 << bit;
                assert!(parse(&bytes, KEY).is_err(), "byte {i} bit {bit}");
                bytes[i] ^= 1 << bit;
            }
        }
        assert_eq!(parse(&bytes, KEY), Ok(repr()));
    }

    #[test]
    fn wrong_key_is_bad_mac() {
        assert_eq!(parse(&FIXTURE, b"other-key"), Err(WireError::BadMac));
        assert_eq!(parse(&FIXTURE, b""), Err(WireError::EmptyKey));
    }

    #[test]
    fn garbage_is_err() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut buf = [0u8; MAX_LEN + 8];
        for round in 0..2000usize {
            for b in buf.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            let len = round % buf.len();
            assert!(parse(&buf[..len], KEY).is_err());
            // Right framing, random body: only the MAC can catch it.
            let payload_len = round % (MAX_PAYLOAD_LEN + 1);
            buf[..4].copy_from_slice(&MAGIC);
            buf[4] = VERSION;
            buf[32..34].copy_from_slice(&(payload_len as u16).to_be_bytes());
            assert_eq!(
                parse(&buf[..MIN_LEN + payload_len], KEY),
                Err(WireError::BadMac)
            );
        }
        assert_eq!(parse(&[0u8; MIN_LEN], KEY), Err(WireError::BadMagic));
        assert_eq!(parse(&[0u8; MAX_LEN], KEY), Err(WireError::TrailingBytes));
        let mut oversized = [0u8; MIN_LEN];
        oversized[32..34].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            parse(&oversized, KEY),
            Err(WireError::PayloadTooLong(65535))
        );
    }

    #[test]
    fn field_rules_checked_after_mac() {
        let mut out = Vec::new();
        let mut signed = |f: &dyn Fn(&mut Packet<&mut [u8]>)| {
            emit(&repr(), KEY, &mut out).unwrap();
            let mut packet = Packet::new_unchecked(&mut out[..]);
            f(&mut packet);
            packet.fill_mac(KEY).unwrap();
            parse(&out, KEY).map(|_| ())
        };
        assert_eq!(signed(&|p| p.set_version(2)), Err(WireError::BadVersion(2)));
        assert_eq!(signed(&|p| p.set_kind(3)), Err(WireError::BadKind(3)));
        assert_eq!(signed(&|p| p.set_flags(1)), Err(WireError::BadFlags(1)));
        assert_eq!(
            signed(&|p| p.set_priority(0)),
            Err(WireError::BadPriority(0))
        );
        assert_eq!(signed(&|p| p.set_kind(2)), Err(WireError::BadPriority(200)));
        assert_eq!(
            signed(&|p| p.set_advert_interval_cs(0)),
            Err(WireError::BadInterval)
        );
    }

    #[test]
    fn emit_refuses_invalid_reprs() {
        let mut out = vec![9];
        let resign_with_priority = Advert {
            kind: Kind::Resign,
            ..repr()
        };
        assert_eq!(
            emit(&resign_with_priority, KEY, &mut out),
            Err(WireError::BadPriority(200))
        );
        let long = [0u8; MAX_PAYLOAD_LEN + 1];
        let too_long = Advert {
            payload: &long,
            ..repr()
        };
        assert_eq!(
            emit(&too_long, KEY, &mut out),
            Err(WireError::PayloadTooLong(MAX_PAYLOAD_LEN + 1))
        );
        assert_eq!(emit(&repr(), b"", &mut out), Err(WireError::EmptyKey));
        assert_eq!(out, vec![9]);
        let mut small = [0u8; 10];
        assert_eq!(
            repr().emit(&mut Packet::new_unchecked(&mut small[..]), KEY),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn unchecked_accessors_do_not_panic() {
        let packet = Packet::new_unchecked(&FIXTURE[..3]);
        assert_eq!(packet.node_id(), 0);
        assert_eq!(packet.payload(), b"");
        assert_eq!(packet.verify_mac(KEY), Err(WireError::Truncated));
        let mut tiny = [0u8; 3];
        let mut packet = Packet::new_unchecked(&mut tiny[..]);
        packet.set_sequence(7);
        packet.set_payload_len(4);
        assert!(packet.payload_mut().is_empty());
        assert_eq!(packet.fill_mac(KEY), Err(WireError::Truncated));
    }

    #[test]
    fn interval_conversions_saturate() {
        assert_eq!(interval_to_cs(Duration::ZERO), 1);
        assert_eq!(interval_to_cs(Duration::from_millis(105)), 10);
        assert_eq!(interval_to_cs(Duration::MAX), u16::MAX);
        assert_eq!(cs_to_interval(u16::MAX), Duration::from_millis(655_350));
    }

    #[test]
    fn replay_rejected() {
        let mut guard = ReplayGuard::new();
        let advert = parse(&FIXTURE, KEY).unwrap();
        assert_eq!(guard.accept(&advert), Ok(()));
        assert_eq!(
            guard.accept(&advert),
            Err(WireError::Replayed {
                node_id: advert.node_id,
                sequence: advert.sequence,
                highest: advert.sequence,
            })
        );
        let older = Advert {
            sequence: advert.sequence - 1,
            epoch: 9,
            ..advert
        };
        assert!(guard.accept(&older).is_err());
        let newer = Advert {
            sequence: advert.sequence + 1,
            ..advert
        };
        assert_eq!(guard.accept(&newer), Ok(()));
        assert_eq!(
            guard.highest(advert.node_id),
            Some((3, advert.sequence + 1))
        );
        let other = Advert {
            node_id: 1,
            sequence: 1,
            ..advert
        };
        assert_eq!(guard.accept(&other), Ok(()));
        guard.forget(1);
        assert_eq!(guard.highest(1), None);
    }

    #[test]
    fn replay_guard_is_bounded_and_evicts_oldest() {
        let mut guard = ReplayGuard::with_capacity(4);
        let at = |node_id, sequence| Advert {
            node_id,
            sequence,
            ..repr()
        };
        for node in 0..4 {
            guard.accept(&at(node, 10)).unwrap();
        }
        // Node 0 is refreshed, so node 1 is now the least recently heard.
        guard.accept(&at(0, 11)).unwrap();
        for node in 100..200 {
            guard.accept(&at(node, 1)).unwrap();
            assert!(guard.len() <= 4);
        }
        assert_eq!(guard.len(), 4);
        assert_eq!(guard.capacity(), 4);
        assert_eq!(guard.highest(1), None);
        let mut small = ReplayGuard::with_capacity(2);
        small.accept(&at(0, 5)).unwrap();
        small.accept(&at(1, 5)).unwrap();
        small.accept(&at(0, 6)).unwrap();
        small.accept(&at(2, 5)).unwrap();
        assert_eq!(small.highest(1), None);
        assert_eq!(small.highest(0).map(|h| h.1), Some(6));
        assert_eq!(ReplayGuard::with_capacity(0).capacity(), 1);
        assert!(ReplayGuard::default().is_empty());
    }
}
