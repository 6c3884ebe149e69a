//! The node agent's heartbeat datagram: wire format, replay and liveness.
//!
//! `fulcrum agent` (the LISA '98 *broker*) sends one UDP datagram per
//! heartbeat to the distributor, reporting its admin state, load and the RTT
//! of its own probe of the local service. This module owns:
//! - the byte layout, read through a zero-copy [`Packet`] view checked once
//!   with [`Packet::new_checked`] (smoltcp style);
//! - the validated [`Heartbeat`] repr with [`parse`]/[`emit`], authenticated
//!   by an HMAC-SHA256 trailer (verified in constant time);
//! - [`Receiver`], which rejects replayed and stale heartbeats;
//! - [`Liveness`], which says when a node's heartbeats have stopped.
//!
//! It deliberately does not open sockets, read clocks, log, or decide what a
//! reported state does to the node's health: the driver passes wall-clock and
//! monotonic times in and maps states to `crate::health::state` events.
//!
//! # Format (version 1, all integers big-endian)
//!
//! | offset   | size | field                | meaning                                              |
//! |----------|------|----------------------|------------------------------------------------------|
//! | 0        | 4    | magic                | `b"FLCA"`                                            |
//! | 4        | 1    | version              | `1`                                                  |
//! | 5        | 1    | state                | 0 ready, 1 drain, 2 overloaded, 3 down               |
//! | 6        | 1    | flags                | bit 0: a task report follows the node id; others 0   |
//! | 7        | 1    | node_id_len (`n`)    | 1..=64                                               |
//! | 8        | 8    | sequence             | strictly increasing per node id                      |
//! | 16       | 8    | sent_at_ms           | sender's wall clock, ms since the UNIX epoch         |
//! | 24       | 4    | load_per_cpu_milli   | load average / CPU count × 1000                      |
//! | 28       | 4    | probe_rtt_us         | local probe RTT in µs; `u32::MAX` = no probe         |
//! | 32       | 1    | weight_pct           | 0..=100; 255 = not set (cf. HAProxy `agent-check`)   |
//! | 33       | 3    | reserved             | must be 0                                            |
//! | 36       | n    | node_id              | UTF-8                                                |
//! | 36 + n   | r    | task report          | only with flag bit 0: [`super::task::Report`]        |
//! | 36+n+r   | 32   | mac                  | HMAC-SHA256(key, bytes 0 .. 36 + n + r)              |
//!
//! A datagram is exactly `68 + n + r` bytes; anything else is rejected. A
//! heartbeat without a report (`r = 0`, flags 0) is what agents before task
//! reports sent, so those still read as before. Magic and version are checked before the MAC (cheap rejection of
//! foreign traffic), every other field only after it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::task::{Report, TaskWireError};

type HmacSha256 = Hmac<Sha256>;

/// `b"FLCA"`: fulcrum agent.
pub const MAGIC: [u8; 4] = *b"FLCA";
/// The only version this module reads and writes.
pub const VERSION: u8 = 1;
/// Bytes before the node id.
pub const HEADER_LEN: usize = 36;
/// Length of the HMAC-SHA256 trailer.
pub const MAC_LEN: usize = 32;
/// Longest node id, in bytes.
pub const MAX_NODE_ID_LEN: usize = 64;
/// Shortest valid datagram (one-byte node id).
pub const MIN_LEN: usize = HEADER_LEN + 1 + MAC_LEN;
/// Longest valid datagram (with the longest task report).
pub const MAX_LEN: usize = HEADER_LEN + MAX_NODE_ID_LEN + super::task::MAX_REPORT_LEN + MAC_LEN;
/// Flag: a task report section follows the node id.
pub const FLAG_TASK_REPORT: u8 = 1;

const NO_PROBE: u32 = u32::MAX;
const NO_WEIGHT: u8 = 255;

mod field {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const STATE: usize = 5;
    pub const FLAGS: usize = 6;
    pub const NODE_ID_LEN: usize = 7;
    pub const SEQUENCE: usize = 8;
    pub const SENT_AT: usize = 16;
    pub const LOAD: usize = 24;
    pub const PROBE_RTT: usize = 28;
    pub const WEIGHT: usize = 32;
    pub const RESERVED: usize = 33;
    pub const NODE_ID: usize = 36;
}

/// Why a datagram is not a valid heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than its header or its declared node id and MAC.
    Truncated,
    /// Does not start with `FLCA`.
    BadMagic,
    /// Unknown version.
    BadVersion(u8),
    /// Unknown agent state.
    BadState(u8),
    /// Node id length outside 1..=64.
    BadLength,
    /// Node id is not UTF-8.
    BadUtf8,
    /// A reserved field (flags or the 3 reserved bytes) is not zero.
    Reserved,
    /// The HMAC does not match (wrong key or altered bytes).
    BadMac,
    /// Longer than its declared node id and MAC, or than [`MAX_LEN`].
    TooLong,
    /// Weight outside 0..=100 and not the "unset" value 255.
    BadWeight(u8),
    /// The task report section is malformed.
    BadReport(TaskWireError),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("heartbeat truncated"),
            WireError::BadMagic => f.write_str("heartbeat: bad magic"),
            WireError::BadVersion(v) => write!(f, "heartbeat: unsupported version {v}"),
            WireError::BadState(s) => write!(f, "heartbeat: unknown state {s}"),
            WireError::BadLength => {
                write!(f, "heartbeat: node id length must be 1..={MAX_NODE_ID_LEN}")
            }
            WireError::BadUtf8 => f.write_str("heartbeat: node id is not UTF-8"),
            WireError::Reserved => f.write_str("heartbeat: reserved field not zero"),
            WireError::BadMac => f.write_str("heartbeat: authentication failed"),
            WireError::TooLong => f.write_str("heartbeat: trailing bytes"),
            WireError::BadWeight(w) => write!(f, "heartbeat: weight {w} outside 0..=100"),
            WireError::BadReport(e) => write!(f, "heartbeat: {e}"),
        }
    }
}

impl std::error::Error for WireError {}

/// The state an agent reports for its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// Serving normally.
    Ready,
    /// Finishing current connections; send no new ones.
    Drain,
    /// Serving but overloaded.
    Overloaded,
    /// The local service is not serving.
    Down,
}

impl AgentState {
    /// Wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            AgentState::Ready => 0,
            AgentState::Drain => 1,
            AgentState::Overloaded => 2,
            AgentState::Down => 3,
        }
    }

    /// Decodes a wire value.
    pub fn from_u8(v: u8) -> Result<Self, WireError> {
        match v {
            0 => Ok(AgentState::Ready),
            1 => Ok(AgentState::Drain),
            2 => Ok(AgentState::Overloaded),
            3 => Ok(AgentState::Down),
            other => Err(WireError::BadState(other)),
        }
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AgentState::Ready => "ready",
            AgentState::Drain => "drain",
            AgentState::Overloaded => "overloaded",
            AgentState::Down => "down",
        })
    }
}

fn read_array<const N: usize>(data: &[u8], at: usize) -> [u8; N] {
    data.get(at..at.saturating_add(N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

fn read_u8(data: &[u8], at: usize) -> u8 {
    data.get(at).copied().unwrap_or(0)
}

fn write_bytes(data: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = data.get_mut(at..at.saturating_add(bytes.len())) {
        dst.copy_from_slice(bytes);
    }
}

/// A read-only view of a heartbeat datagram whose length has been checked
/// against its `node_id_len` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checks; only for buffers built here.
    fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer is exactly header + node id + MAC long, with
    /// a node id length in 1..=64.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len > MAX_LEN {
            return Err(WireError::TooLong);
        }
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let n = usize::from(self.node_id_len());
        if n == 0 || n > MAX_NODE_ID_LEN {
            return Err(WireError::BadLength);
        }
        let total = HEADER_LEN + n + self.report_len()? + MAC_LEN;
        match len.cmp(&total) {
            std::cmp::Ordering::Less => Err(WireError::Truncated),
            std::cmp::Ordering::Greater => Err(WireError::TooLong),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn data(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The magic field.
    pub fn magic(&self) -> [u8; 4] {
        read_array(self.data(), field::MAGIC)
    }

    /// The version field.
    pub fn version(&self) -> u8 {
        read_u8(self.data(), field::VERSION)
    }

    /// The raw state field.
    pub fn state(&self) -> u8 {
        read_u8(self.data(), field::STATE)
    }

    /// The flags field.
    pub fn flags(&self) -> u8 {
        read_u8(self.data(), field::FLAGS)
    }

    /// The node id length field.
    pub fn node_id_len(&self) -> u8 {
        read_u8(self.data(), field::NODE_ID_LEN)
    }

    /// The sequence field.
    pub fn sequence(&self) -> u64 {
        u64::from_be_bytes(read_array(self.data(), field::SEQUENCE))
    }

    /// The sent-at field (ms since the UNIX epoch).
    pub fn sent_at_ms(&self) -> u64 {
        u64::from_be_bytes(read_array(self.data(), field::SENT_AT))
    }

    /// The load field (load average per CPU × 1000).
    pub fn load_per_cpu_milli(&self) -> u32 {
        u32::from_be_bytes(read_array(self.data(), field::LOAD))
    }

    /// The raw probe RTT field in µs (`u32::MAX` = no probe).
    pub fn probe_rtt_us(&self) -> u32 {
        u32::from_be_bytes(read_array(self.data(), field::PROBE_RTT))
    }

    /// The raw weight field (255 = not set).
    pub fn weight_pct(&self) -> u8 {
        read_u8(self.data(), field::WEIGHT)
    }

    /// The reserved bytes.
    pub fn reserved(&self) -> [u8; 3] {
        read_array(self.data(), field::RESERVED)
    }

    /// The length of the task report section (0 without the flag).
    fn report_len(&self) -> Result<usize, WireError> {
        if self.flags() & FLAG_TASK_REPORT == 0 {
            return Ok(0);
        }
        let at = field::NODE_ID + usize::from(self.node_id_len());
        let rest = self.data().get(at..).unwrap_or_default();
        Report::section_len(rest).map_err(|e| match e {
            TaskWireError::Truncated => WireError::Truncated,
            e => WireError::BadReport(e),
        })
    }

    fn report_offset(&self) -> usize {
        field::NODE_ID + usize::from(self.node_id_len())
    }

    fn mac_offset(&self) -> usize {
        self.report_offset() + self.report_len().unwrap_or(0)
    }

    /// The task report section's bytes (empty without the flag).
    pub fn report(&self) -> &[u8] {
        self.data()
            .get(self.report_offset()..self.mac_offset())
            .unwrap_or_default()
    }

    /// The node id bytes (not yet checked for UTF-8).
    pub fn node_id(&self) -> &[u8] {
        self.data()
            .get(field::NODE_ID..self.report_offset())
            .unwrap_or_default()
    }

    /// The bytes the MAC covers: everything before it.
    pub fn signed_bytes(&self) -> &[u8] {
        self.data().get(..self.mac_offset()).unwrap_or_default()
    }

    /// The MAC trailer.
    pub fn mac(&self) -> &[u8] {
        self.data().get(self.mac_offset()..).unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn data_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    fn set_header(&mut self, hb: &Heartbeat, node_id_len: u8) {
        let rtt = hb.probe_rtt.map_or(NO_PROBE, |d| {
            // Saturate just below the "no probe" marker.
            u32::try_from(d.as_micros()).map_or(NO_PROBE - 1, |us| us.min(NO_PROBE - 1))
        });
        let data = self.data_mut();
        write_bytes(data, field::MAGIC, &MAGIC);
        write_bytes(data, field::VERSION, &[VERSION]);
        write_bytes(data, field::STATE, &[hb.state.to_u8()]);
        let flags = if hb.report.is_some() {
            FLAG_TASK_REPORT
        } else {
            0
        };
        write_bytes(data, field::FLAGS, &[flags]);
        write_bytes(data, field::NODE_ID_LEN, &[node_id_len]);
        write_bytes(data, field::SEQUENCE, &hb.sequence.to_be_bytes());
        write_bytes(data, field::SENT_AT, &hb.sent_at_ms.to_be_bytes());
        write_bytes(data, field::LOAD, &hb.load_per_cpu_milli.to_be_bytes());
        write_bytes(data, field::PROBE_RTT, &rtt.to_be_bytes());
        write_bytes(data, field::WEIGHT, &[hb.weight_pct.unwrap_or(NO_WEIGHT)]);
        write_bytes(data, field::RESERVED, &[0; 3]);
        write_bytes(data, field::NODE_ID, hb.node_id.as_bytes());
    }

    /// Computes the MAC over [`Packet::signed_bytes`] and writes it.
    fn fill_mac(&mut self, key: &[u8]) -> Result<(), WireError> {
        let tag = compute_mac(key, self.signed_bytes())?;
        let at = self.mac_offset();
        write_bytes(self.data_mut(), at, &tag);
        Ok(())
    }
}

fn keyed(key: &[u8]) -> Result<HmacSha256, WireError> {
    // HMAC accepts keys of any length; the error arm is unreachable in
    // practice but is not worth a panic.
    HmacSha256::new_from_slice(key).map_err(|_| WireError::BadMac)
}

fn compute_mac(key: &[u8], data: &[u8]) -> Result<[u8; MAC_LEN], WireError> {
    let mut mac = keyed(key)?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().into())
}

/// A validated, authenticated heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The sending node's id (1..=64 bytes of UTF-8).
    pub node_id: String,
    /// The state the agent reports.
    pub state: AgentState,
    /// Strictly increasing per node id, across agent restarts too (see
    /// [`Receiver`]).
    pub sequence: u64,
    /// Sender's wall clock, ms since the UNIX epoch.
    pub sent_at_ms: u64,
    /// Load average per CPU × 1000.
    pub load_per_cpu_milli: u32,
    /// RTT of the agent's probe of its local service, µs resolution; `None`
    /// if it did not probe. Encoded saturated just below `u32::MAX` µs.
    pub probe_rtt: Option<Duration>,
    /// Requested weight in percent (0..=100), or `None` to leave it as
    /// configured.
    pub weight_pct: Option<u8>,
    /// One task's report, when the agent has one to give.
    pub report: Option<Report>,
}

impl Heartbeat {
    /// Encoded length of this heartbeat.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.node_id.len() + self.report.as_ref().map_or(0, Report::len) + MAC_LEN
    }

    /// Validates and decodes a length-checked packet with `key`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>, key: &[u8]) -> Result<Heartbeat, WireError> {
        packet.check_len()?;
        if packet.magic() != MAGIC {
            return Err(WireError::BadMagic);
        }
        if packet.version() != VERSION {
            return Err(WireError::BadVersion(packet.version()));
        }
        let mut mac = keyed(key)?;
        mac.update(packet.signed_bytes());
        mac.verify_slice(packet.mac())
            .map_err(|_| WireError::BadMac)?;
        if packet.flags() & !FLAG_TASK_REPORT != 0 || packet.reserved() != [0; 3] {
            return Err(WireError::Reserved);
        }
        let state = AgentState::from_u8(packet.state())?;
        let weight_pct = match packet.weight_pct() {
            NO_WEIGHT => None,
            w @ 0..=100 => Some(w),
            w => return Err(WireError::BadWeight(w)),
        };
        let probe_rtt = match packet.probe_rtt_us() {
            NO_PROBE => None,
            us => Some(Duration::from_micros(u64::from(us))),
        };
        let node_id = std::str::from_utf8(packet.node_id())
            .map_err(|_| WireError::BadUtf8)?
            .to_owned();
        let report = if packet.flags() & FLAG_TASK_REPORT != 0 {
            Some(Report::parse(packet.report()).map_err(WireError::BadReport)?)
        } else {
            None
        };
        Ok(Heartbeat {
            node_id,
            state,
            sequence: packet.sequence(),
            sent_at_ms: packet.sent_at_ms(),
            load_per_cpu_milli: packet.load_per_cpu_milli(),
            probe_rtt,
            weight_pct,
            report,
        })
    }

    /// Encodes and signs this heartbeat with `key`, replacing `buf`'s
    /// contents (the buffer's capacity is reused).
    ///
    /// Fails with [`WireError::BadLength`] for a node id outside 1..=64 bytes
    /// and [`WireError::BadWeight`] for a weight above 100; `buf` is then
    /// left empty.
    pub fn emit(&self, key: &[u8], buf: &mut Vec<u8>) -> Result<(), WireError> {
        buf.clear();
        let n = self.node_id.len();
        let node_id_len = match u8::try_from(n) {
            Ok(v) if (1..=MAX_NODE_ID_LEN).contains(&n) => v,
            _ => return Err(WireError::BadLength),
        };
        if let Some(w) = self.weight_pct.filter(|w| *w > 100) {
            return Err(WireError::BadWeight(w));
        }
        let mut section = Vec::new();
        if let Some(r) = &self.report {
            r.emit(&mut section).map_err(WireError::BadReport)?;
        }
        buf.resize(self.buffer_len(), 0);
        write_bytes(buf, HEADER_LEN + n, &section);
        let mut packet = Packet::new_unchecked(&mut buf[..]);
        packet.set_header(self, node_id_len);
        if let Err(e) = packet.fill_mac(key) {
            buf.clear();
            return Err(e);
        }
        Ok(())
    }
}

/// Decodes and authenticates one datagram.
pub fn parse(bytes: &[u8], key: &[u8]) -> Result<Heartbeat, WireError> {
    Heartbeat::parse(&Packet::new_checked(bytes)?, key)
}

/// Encodes and signs `hb` into `buf` (see [`Heartbeat::emit`]).
pub fn emit(hb: &Heartbeat, key: &[u8], buf: &mut Vec<u8>) -> Result<(), WireError> {
    hb.emit(key, buf)
}

/// Why an authentic heartbeat was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The sequence is not above the last accepted one for this node id.
    Replay {
        /// Last accepted sequence.
        last: u64,
        /// Rejected sequence.
        got: u64,
    },
    /// `sent_at_ms` is more than the maximum age in the past.
    Stale {
        /// How old it was, in ms.
        age_ms: u64,
    },
    /// `sent_at_ms` is more than the maximum skew in the future.
    Future {
        /// How far ahead it was, in ms.
        ahead_ms: u64,
    },
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Replay { last, got } => {
                write!(
                    f,
                    "replayed heartbeat: sequence {got} <= last accepted {last}"
                )
            }
            RejectReason::Stale { age_ms } => write!(f, "stale heartbeat: sent {age_ms} ms ago"),
            RejectReason::Future { ahead_ms } => {
                write!(
                    f,
                    "heartbeat from the future: {ahead_ms} ms ahead (clock skew?)"
                )
            }
        }
    }
}

impl std::error::Error for RejectReason {}

/// Replay and freshness filter for authentic heartbeats, keyed by node id.
///
/// Sequence state lives only in memory: after a distributor restart the first
/// heartbeat of each node is accepted, and the freshness window (`max_age`)
/// bounds what a replay can achieve. The agent must keep its sequence
/// increasing across its own restarts (e.g. start it at the wall clock in µs),
/// or its heartbeats are rejected until the count passes the old one.
///
/// The map grows by one entry per node id accepted; callers should only pass
/// heartbeats whose node id is in the pool, and [`Receiver::forget`] removed
/// nodes.
#[derive(Clone, Debug)]
pub struct Receiver {
    max_age_ms: u64,
    max_skew_ms: u64,
    last: BTreeMap<String, u64>,
}

impl Receiver {
    /// Default maximum age of a heartbeat.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(5);
    /// Default tolerance for a sender clock ahead of ours.
    pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(1);

    /// A receiver rejecting heartbeats older than `max_age` or more than
    /// `max_skew` in the future (both at ms resolution, saturating).
    pub fn new(max_age: Duration, max_skew: Duration) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Receiver {
            max_age_ms: ms(max_age),
            max_skew_ms: ms(max_skew),
            last: BTreeMap::new(),
        }
    }

    /// Accepts `hb` if it is fresh relative to `now_wall_ms` (our wall clock,
    /// ms since the UNIX epoch) and its sequence is above the last accepted
    /// one for its node id; records the sequence only on success.
    pub fn accept(&mut self, hb: &Heartbeat, now_wall_ms: u64) -> Result<(), RejectReason> {
        if hb.sent_at_ms > now_wall_ms {
            let ahead_ms = hb.sent_at_ms - now_wall_ms;
            if ahead_ms > self.max_skew_ms {
                return Err(RejectReason::Future { ahead_ms });
            }
        } else {
            let age_ms = now_wall_ms - hb.sent_at_ms;
            if age_ms > self.max_age_ms {
                return Err(RejectReason::Stale { age_ms });
            }
        }
        match self.last.get_mut(&hb.node_id) {
            Some(last) if hb.sequence <= *last => Err(RejectReason::Replay {
                last: *last,
                got: hb.sequence,
            }),
            Some(last) => {
                *last = hb.sequence;
                Ok(())
            }
            None => {
                self.last.insert(hb.node_id.clone(), hb.sequence);
                Ok(())
            }
        }
    }

    /// Last accepted sequence for `node_id`.
    pub fn last_sequence(&self, node_id: &str) -> Option<u64> {
        self.last.get(node_id).copied()
    }

    /// Drops the state for `node_id` (node removed from the pool).
    pub fn forget(&mut self, node_id: &str) {
        self.last.remove(node_id);
    }
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver::new(Self::DEFAULT_MAX_AGE, Self::DEFAULT_MAX_SKEW)
    }
}

/// Missing-heartbeat detector for one node, on the monotonic clock.
///
/// A node is missing once `misses × interval` has passed since its last
/// accepted heartbeat (or since [`Liveness::arm`] if none came yet). Before
/// either, there is no deadline and the node is never missing.
#[derive(Clone, Debug)]
pub struct Liveness {
    timeout: Duration,
    last: Option<Duration>,
    deadline: Option<Duration>,
}

impl Liveness {
    /// Default number of missed intervals before a node is missing.
    pub const DEFAULT_MISSES: u32 = 3;

    /// A detector for heartbeats expected every `interval`; `misses` below 1
    /// is treated as 1.
    pub fn new(interval: Duration, misses: u32) -> Self {
        Liveness {
            timeout: interval.saturating_mul(misses.max(1)),
            last: None,
            deadline: None,
        }
    }

    /// Starts the clock at `now` without a heartbeat (e.g. when the node is
    /// added), so a node that never reports becomes missing. No effect once
    /// armed or after a heartbeat.
    pub fn arm(&mut self, now: Duration) {
        if self.deadline.is_none() {
            self.deadline = Some(now.saturating_add(self.timeout));
        }
    }

    /// Records an accepted heartbeat at `now` and pushes the deadline out.
    /// A `now` earlier than a previous one is ignored.
    pub fn on_heartbeat(&mut self, now: Duration) {
        let now = self.last.map_or(now, |last| last.max(now));
        self.last = Some(now);
        self.deadline = Some(now.saturating_add(self.timeout));
    }

    /// Whether the deadline has passed (inclusive) at `now`.
    pub fn is_missing(&self, now: Duration) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// When the node becomes missing, for the driver's timer; `None` until
    /// armed or heard from.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// Time of the last accepted heartbeat.
    pub fn last_heartbeat(&self) -> Option<Duration> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test-key";

    /// node "web-1", drain, seq 42, sent 2023-11-14T22:13:20Z, load 1.250,
    /// probe 850 µs, weight 75 %, signed with `KEY`.
    static FIXTURE: [u8; 73] = [
        0x46, 0x4c, 0x43, 0x41, // magic "FLCA"
        0x01, // version
        0x01, // state: drain
        0x00, // flags
        0x05, // node_id_len
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, // sequence 42
        0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // sent_at_ms 1_700_000_000_000
        0x00, 0x00, 0x04, 0xe2, // load 1250
        0x00, 0x00, 0x03, 0x52, // probe_rtt_us 850
        0x4b, // weight 75
        0x00, 0x00, 0x00, // reserved
        0x77, 0x65, 0x62, 0x2d, 0x31, // "web-1"
        0x98, 0xc7, 0xc6, 0x87, 0xd0, 0xff, 0xab, 0x71, // HMAC-SHA256
        0x83, 0x19, 0x57, 0xf1, 0x12, 0x15, 0x5f, 0xa0, 0x31, 0xbd, 0xda, 0xe0, 0x18, 0x2c, 0xaa,
        0xf4, 0xd5, 0x84, 0xe7, 0x70, 0x7f, 0x79, 0xf6, 0x3b,
    ];

    fn repr() -> Heartbeat {
        Heartbeat {
            node_id: "web-1".to_owned(),
            state: AgentState::Drain,
            sequence: 42,
            sent_at_ms: 1_700_000_000_000,
            load_per_cpu_milli: 1250,
            probe_rtt: Some(Duration::from_micros(850)),
            weight_pct: Some(75),
            report: None,
        }
    }

    fn encode(hb: &Heartbeat) -> Vec<u8> {
        let mut buf = Vec::new();
        match hb.emit(KEY, &mut buf) {
            Ok(()) => buf,
            Err(e) => panic!("emit failed: {e}"),
        }
    }

    /// Re-signs a hand-edited datagram so format checks behind the MAC run.
    fn resign(bytes: &mut [u8]) {
        let mut p = Packet::new_unchecked(bytes);
        if let Err(e) = p.fill_mac(KEY) {
            panic!("{e}");
        }
    }

    #[test]
    fn test_deconstruct() {
        let p = match Packet::new_checked(&FIXTURE[..]) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(p.magic(), *b"FLCA");
        assert_eq!(p.version(), 1);
        assert_eq!(p.state(), 1);
        assert_eq!(p.flags(), 0);
        assert_eq!(p.node_id_len(), 5);
        assert_eq!(p.sequence(), 42);
        assert_eq!(p.sent_at_ms(), 1_700_000_000_000);
        assert_eq!(p.load_per_cpu_milli(), 1250);
        assert_eq!(p.probe_rtt_us(), 850);
        assert_eq!(p.weight_pct(), 75);
        assert_eq!(p.reserved(), [0; 3]);
        assert_eq!(p.node_id(), b"web-1");
        assert_eq!(p.signed_bytes(), &FIXTURE[..41]);
        assert_eq!(p.mac(), &FIXTURE[41..]);
    }

    #[test]
    fn test_construct() {
        let mut bytes = [0xa5; 73];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_header(&repr(), 5);
        if let Err(e) = p.fill_mac(KEY) {
            panic!("{e}");
        }
        assert_eq!(p.into_inner(), &FIXTURE[..]);
    }

    #[test]
    fn test_parse() {
        assert_eq!(parse(&FIXTURE, KEY), Ok(repr()));
    }

    #[test]
    fn test_emit() {
        let mut buf = b"stale contents".to_vec();
        assert_eq!(emit(&repr(), KEY, &mut buf), Ok(()));
        assert_eq!(buf, FIXTURE);
        assert_eq!(repr().buffer_len(), FIXTURE.len());
    }

    #[test]
    fn round_trip_extremes() {
        for hb in [
            Heartbeat {
                node_id: "é".repeat(32),
                state: AgentState::Down,
                sequence: u64::MAX,
                sent_at_ms: 0,
                load_per_cpu_milli: u32::MAX,
                probe_rtt: None,
                weight_pct: None,
                report: None,
            },
            Heartbeat {
                node_id: "x".to_owned(),
                state: AgentState::Overloaded,
                sequence: 0,
                sent_at_ms: u64::MAX,
                load_per_cpu_milli: 0,
                probe_rtt: Some(Duration::ZERO),
                weight_pct: Some(0),
                report: None,
            },
            Heartbeat {
                state: AgentState::Ready,
                weight_pct: Some(100),
                ..repr()
            },
        ] {
            let bytes = encode(&hb);
            assert_eq!(bytes.len(), hb.buffer_len());
            assert_eq!(parse(&bytes, KEY), Ok(hb));
        }
        let longest = Heartbeat {
            node_id: "a".repeat(64),
            report: Some(Report {
                id: u64::MAX,
                name: "t".repeat(64),
                status: crate::wire::task::TaskStatus::Running,
                started_ms: 1,
                ended_ms: 0,
                output: "o".repeat(crate::wire::task::MAX_REPORT_OUTPUT),
            }),
            ..repr()
        };
        assert_eq!(encode(&longest).len(), MAX_LEN);
        assert_eq!(parse(&encode(&longest), KEY), Ok(longest));
        assert_eq!(
            encode(&Heartbeat {
                node_id: "a".into(),
                ..repr()
            })
            .len(),
            MIN_LEN
        );
    }

    #[test]
    fn a_task_report_rides_in_the_signed_part() {
        let hb = Heartbeat {
            report: Some(Report {
                id: 9,
                name: "deploy".into(),
                status: crate::wire::task::TaskStatus::Exited(0),
                started_ms: 10,
                ended_ms: 20,
                output: "ok\n".into(),
            }),
            ..repr()
        };
        let bytes = encode(&hb);
        assert_eq!(bytes[6], FLAG_TASK_REPORT);
        assert_eq!(bytes.len(), FIXTURE.len() + 32 + 6 + 3);
        assert_eq!(parse(&bytes, KEY), Ok(hb));
        // Every truncation and every flipped byte is refused.
        for n in 0..bytes.len() {
            assert!(parse(&bytes[..n], KEY).is_err(), "length {n}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(parse(&bad, KEY).is_err(), "flipped byte {i}");
        }
        // The flag without a section, and a section with a bad status behind a good MAC.
        let mut no_section = FIXTURE.to_vec();
        no_section[6] = FLAG_TASK_REPORT;
        assert!(parse(&no_section, KEY).is_err());
        let mut bad_status = bytes.clone();
        bad_status[41 + 8] = 77;
        resign(&mut bad_status);
        assert_eq!(
            parse(&bad_status, KEY),
            Err(WireError::BadReport(TaskWireError::BadStatus(77)))
        );
    }

    #[test]
    fn probe_rtt_saturates_below_marker() {
        let hb = Heartbeat {
            probe_rtt: Some(Duration::from_secs(1 << 40)),
            ..repr()
        };
        let parsed = parse(&encode(&hb), KEY).map(|h| h.probe_rtt);
        assert_eq!(
            parsed,
            Ok(Some(Duration::from_micros(u64::from(u32::MAX - 1))))
        );
    }

    #[test]
    fn emit_rejects_invalid_repr() {
        let mut buf = vec![1, 2, 3];
        let empty = Heartbeat {
            node_id: String::new(),
            ..repr()
        };
        assert_eq!(emit(&empty, KEY, &mut buf), Err(WireError::BadLength));
        assert!(buf.is_empty());
        let long = Heartbeat {
            node_id: "a".repeat(65),
            ..repr()
        };
        assert_eq!(emit(&long, KEY, &mut buf), Err(WireError::BadLength));
        let huge = Heartbeat {
            node_id: "a".repeat(300),
            ..repr()
        };
        assert_eq!(emit(&huge, KEY, &mut buf), Err(WireError::BadLength));
        let heavy = Heartbeat {
            weight_pct: Some(101),
            ..repr()
        };
        assert_eq!(emit(&heavy, KEY, &mut buf), Err(WireError::BadWeight(101)));
        assert!(buf.is_empty());
    }

    #[test]
    fn every_truncation_is_rejected() {
        for n in 0..FIXTURE.len() {
            let r = parse(&FIXTURE[..n], KEY);
            assert!(r.is_err(), "length {n} accepted");
        }
        assert_eq!(
            parse(&FIXTURE[..HEADER_LEN - 1], KEY),
            Err(WireError::Truncated)
        );
        assert_eq!(parse(&FIXTURE[..72], KEY), Err(WireError::Truncated));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut long = FIXTURE.to_vec();
        long.push(0);
        assert_eq!(parse(&long, KEY), Err(WireError::TooLong));
        assert_eq!(parse(&[0u8; MAX_LEN + 1], KEY), Err(WireError::TooLong));
        assert_eq!(parse(&[0u8; 65_535], KEY), Err(WireError::TooLong));
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        for byte in 0..FIXTURE.len() {
            for bit in 0..8 {
                let mut b = FIXTURE;
                b[byte] ^= 1 << bit;
                let r = parse(&b, KEY);
                assert!(r.is_err(), "flip byte {byte} bit {bit} accepted");
                // Fields behind the magic/version/length checks fail the MAC.
                if byte >= 8 {
                    assert_eq!(r, Err(WireError::BadMac), "byte {byte} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn wrong_key_is_bad_mac() {
        assert_eq!(parse(&FIXTURE, b"other-key"), Err(WireError::BadMac));
        assert_eq!(parse(&FIXTURE, b""), Err(WireError::BadMac));
    }

    #[test]
    fn format_errors() {
        let cases: [(usize, u8, WireError); 7] = [
            (0, b'X', WireError::BadMagic),
            (4, 2, WireError::BadVersion(2)),
            (5, 4, WireError::BadState(4)),
            (6, 2, WireError::Reserved),
            (34, 1, WireError::Reserved),
            (32, 101, WireError::BadWeight(101)),
            (36, 0xff, WireError::BadUtf8),
        ];
        for (at, value, want) in cases {
            let mut b = FIXTURE;
            b[at] = value;
            resign(&mut b);
            assert_eq!(parse(&b, KEY), Err(want), "byte {at} = {value}");
        }
        let mut b = FIXTURE;
        b[7] = 0;
        assert_eq!(parse(&b, KEY), Err(WireError::BadLength));
        b[7] = 65;
        assert_eq!(parse(&b, KEY), Err(WireError::BadLength));
        b[7] = 6;
        assert_eq!(parse(&b, KEY), Err(WireError::Truncated));
        b[7] = 4;
        assert_eq!(parse(&b, KEY), Err(WireError::TooLong));
    }

    #[test]
    fn garbage_is_rejected() {
        let mut state = 0x1234_5678_9abc_def0u64;
        for len in 0..=MAX_LEN + 1 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            assert!(parse(&bytes, KEY).is_err(), "len {len}");
        }
    }

    fn hb(node: &str, sequence: u64, sent_at_ms: u64) -> Heartbeat {
        Heartbeat {
            node_id: node.to_owned(),
            sequence,
            sent_at_ms,
            ..repr()
        }
    }

    #[test]
    fn receiver_rejects_replay() {
        let mut r = Receiver::default();
        let now = 1_700_000_000_000;
        assert_eq!(r.accept(&hb("a", 10, now), now), Ok(()));
        assert_eq!(
            r.accept(&hb("a", 10, now), now),
            Err(RejectReason::Replay { last: 10, got: 10 })
        );
        assert_eq!(
            r.accept(&hb("a", 9, now), now + 5),
            Err(RejectReason::Replay { last: 10, got: 9 })
        );
        assert_eq!(r.accept(&hb("a", 11, now + 100), now + 100), Ok(()));
        // Node ids are independent.
        assert_eq!(r.accept(&hb("b", 1, now), now + 100), Ok(()));
        assert_eq!(r.last_sequence("a"), Some(11));
        assert_eq!(r.last_sequence("b"), Some(1));
        r.forget("a");
        assert_eq!(r.last_sequence("a"), None);
        assert_eq!(r.accept(&hb("a", 1, now), now + 100), Ok(()));
    }

    #[test]
    fn receiver_rejects_stale_and_future() {
        let mut r = Receiver::new(Duration::from_secs(5), Duration::from_millis(500));
        let now = 1_700_000_000_000;
        assert_eq!(
            r.accept(&hb("a", 1, now - 5001), now),
            Err(RejectReason::Stale { age_ms: 5001 })
        );
        assert_eq!(
            r.accept(&hb("a", 1, now + 501), now),
            Err(RejectReason::Future { ahead_ms: 501 })
        );
        // A rejected heartbeat does not advance the sequence.
        assert_eq!(r.last_sequence("a"), None);
        assert_eq!(r.accept(&hb("a", 1, now - 5000), now), Ok(()));
        assert_eq!(r.accept(&hb("a", 2, now + 500), now), Ok(()));
        // Extremes do not overflow.
        assert_eq!(
            r.accept(&hb("a", 3, 0), u64::MAX),
            Err(RejectReason::Stale { age_ms: u64::MAX })
        );
        assert_eq!(
            r.accept(&hb("a", 3, u64::MAX), 0),
            Err(RejectReason::Future { ahead_ms: u64::MAX })
        );
        assert!(RejectReason::Stale { age_ms: 7 }
            .to_string()
            .contains("7 ms"));
    }

    #[test]
    fn liveness_timing() {
        let s = Duration::from_secs;
        let mut l = Liveness::new(s(1), Liveness::DEFAULT_MISSES);
        assert_eq!(l.deadline(), None);
        assert!(!l.is_missing(s(1000)));
        l.arm(s(10));
        assert_eq!(l.deadline(), Some(s(13)));
        l.arm(s(11));
        assert_eq!(l.deadline(), Some(s(13)));
        assert!(!l.is_missing(s(12)));
        assert!(l.is_missing(s(13)));
        l.on_heartbeat(s(14));
        assert_eq!(l.last_heartbeat(), Some(s(14)));
        assert_eq!(l.deadline(), Some(s(17)));
        assert!(!l.is_missing(s(16) + Duration::from_millis(999)));
        assert!(l.is_missing(s(17)));
        // Out-of-order time does not pull the deadline back.
        l.on_heartbeat(s(12));
        assert_eq!(l.deadline(), Some(s(17)));
        // misses = 0 behaves as 1; huge values saturate.
        let mut l = Liveness::new(s(2), 0);
        l.on_heartbeat(s(5));
        assert_eq!(l.deadline(), Some(s(7)));
        let mut l = Liveness::new(Duration::MAX, u32::MAX);
        l.on_heartbeat(s(5));
        assert_eq!(l.deadline(), Some(Duration::MAX));
        assert!(!l.is_missing(s(1 << 40)));
    }
}
