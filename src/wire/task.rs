//! Node tasks on the agent's channel: the distributor's authenticated request that an
//! agent run a task it declared (`fulcrum agent --task NAME=COMMAND`), and the task
//! report the agent sends back inside its following heartbeats.
//!
//! What it owns:
//! - the request datagram (distributor → agent), read through a [`Request`] view whose
//!   length is checked once, authenticated by an HMAC-SHA256 trailer with the agent key;
//! - [`Senders`], the replay and freshness filter of requests, keyed by the sender's id;
//! - the task-report section ([`Report`]) that a heartbeat carries when its flag
//!   [`super::heartbeat::FLAG_TASK_REPORT`] is set (the heartbeat's own MAC, sequence
//!   and freshness cover it: a report cannot be replayed on its own).
//!
//! It deliberately does not run anything, keep the once-per-id memory (the agent
//! does), or read clocks: wall-clock times come in as arguments.
//!
//! # Request (version 1, integers big-endian)
//!
//! | offset | size | field        | meaning                                                 |
//! |--------|------|--------------|---------------------------------------------------------|
//! | 0      | 4    | magic        | `b"FLCT"`                                               |
//! | 4      | 1    | version      | `1`                                                     |
//! | 5      | 1    | node_id_len  | 1..=64 (`n`)                                            |
//! | 6      | 1    | name_len     | 1..=64 (`m`)                                            |
//! | 7      | 1    | sender_len   | 1..=64 (`s`)                                            |
//! | 8      | 8    | id           | the run's id: the agent runs it at most once; its value is the time it was made, in µs since the UNIX epoch (kept unique by counting up) |
//! | 16     | 8    | sequence     | strictly increasing per sender                          |
//! | 24     | 8    | sent_at_ms   | sender's wall clock, ms since the UNIX epoch            |
//! | 32     | 8    | deadline_ms  | wall clock by which the run must be over (then killed)  |
//! | 40     | n    | node_id      | the node the request is for (UTF-8)                     |
//! | 40+n   | m    | name         | the declared task's name (UTF-8)                        |
//! | 40+n+m | s    | sender       | the distributor's id (UTF-8)                            |
//! | …      | 32   | mac          | HMAC-SHA256(key, everything before it)                  |
//!
//! # Report section (inside a heartbeat, after the node id, before the MAC)
//!
//! | offset | size | field      | meaning                                                   |
//! |--------|------|------------|-----------------------------------------------------------|
//! | 0      | 8    | id         | the request's id                                          |
//! | 8      | 1    | status     | 0 running, 1 exited, 2 signalled, 3 timed out, 4 refused, 5 could not start |
//! | 9      | 1    | name_len   | 0..=64                                                    |
//! | 10     | 2    | output_len | 0..=1024: the tail of the output                          |
//! | 12     | 4    | code       | exit status, signal number, or the refusal's reason code  |
//! | 16     | 8    | started_ms | when it started (0 if it did not)                         |
//! | 24     | 8    | ended_ms   | when it ended (0 while it runs)                           |
//! | 32     | …    | name, then output                                           |

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// `b"FLCT"`: fulcrum task.
pub const MAGIC: [u8; 4] = *b"FLCT";
/// The only request version this module reads and writes.
pub const VERSION: u8 = 1;
/// Bytes of a request before its strings.
pub const REQUEST_HEADER_LEN: usize = 40;
/// Length of the HMAC-SHA256 trailer.
pub const MAC_LEN: usize = 32;
/// Longest node id, task name or sender id, in bytes.
pub const MAX_STR_LEN: usize = 64;
/// Longest request.
pub const MAX_REQUEST_LEN: usize = REQUEST_HEADER_LEN + 3 * MAX_STR_LEN + MAC_LEN;
/// Bytes of a report section before its name and output.
pub const REPORT_HEADER_LEN: usize = 32;
/// Most output bytes a report carries (the tail; one report fits a 1,500-byte datagram).
pub const MAX_REPORT_OUTPUT: usize = 1024;
/// Longest report section.
pub const MAX_REPORT_LEN: usize = REPORT_HEADER_LEN + MAX_STR_LEN + MAX_REPORT_OUTPUT;

/// Why bytes are not a valid request, or a report section is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskWireError {
    /// Shorter than its header or its declared strings and MAC.
    Truncated,
    /// Longer than its declared strings and MAC.
    TooLong,
    /// Does not start with `FLCT`.
    BadMagic,
    /// Unknown version.
    BadVersion(u8),
    /// A string length outside its bounds.
    BadLength,
    /// A string is not UTF-8.
    BadUtf8,
    /// The HMAC does not match (wrong key or altered bytes).
    BadMac,
    /// Unknown report status or refusal code.
    BadStatus(u8),
}

impl fmt::Display for TaskWireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskWireError::Truncated => f.write_str("task message truncated"),
            TaskWireError::TooLong => f.write_str("task message: trailing bytes"),
            TaskWireError::BadMagic => f.write_str("task request: bad magic"),
            TaskWireError::BadVersion(v) => write!(f, "task request: unsupported version {v}"),
            TaskWireError::BadLength => write!(
                f,
                "task message: a string length is outside 1..={MAX_STR_LEN} (or the output is over {MAX_REPORT_OUTPUT} bytes)"
            ),
            TaskWireError::BadUtf8 => f.write_str("task message: a string is not UTF-8"),
            TaskWireError::BadMac => f.write_str("task request: authentication failed"),
            TaskWireError::BadStatus(s) => write!(f, "task report: unknown status {s}"),
        }
    }
}

impl std::error::Error for TaskWireError {}

fn be_u64(data: &[u8], at: usize) -> u64 {
    data.get(at..at.saturating_add(8))
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_be_bytes)
}

fn be_u16(data: &[u8], at: usize) -> u16 {
    data.get(at..at.saturating_add(2))
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map_or(0, u16::from_be_bytes)
}

fn be_i32(data: &[u8], at: usize) -> i32 {
    data.get(at..at.saturating_add(4))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, i32::from_be_bytes)
}

fn byte(data: &[u8], at: usize) -> u8 {
    data.get(at).copied().unwrap_or(0)
}

fn utf8(b: &[u8]) -> Result<String, TaskWireError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| TaskWireError::BadUtf8)
}

fn str_len(s: &str) -> Result<u8, TaskWireError> {
    match u8::try_from(s.len()) {
        Ok(n) if (1..=MAX_STR_LEN).contains(&s.len()) => Ok(n),
        _ => Err(TaskWireError::BadLength),
    }
}

fn keyed(key: &[u8]) -> Result<HmacSha256, TaskWireError> {
    // HMAC takes keys of any length; the error arm is not worth a panic.
    HmacSha256::new_from_slice(key).map_err(|_| TaskWireError::BadMac)
}

/// A request datagram whose length matches its string lengths (not yet
/// authenticated: its fields are what the sender claims).
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    data: &'a [u8],
}

impl<'a> Request<'a> {
    /// Checks the magic, the version and the length against the string lengths.
    pub fn new_checked(data: &'a [u8]) -> Result<Request<'a>, TaskWireError> {
        if data.len() > MAX_REQUEST_LEN {
            return Err(TaskWireError::TooLong);
        }
        if data.len() < REQUEST_HEADER_LEN {
            return Err(TaskWireError::Truncated);
        }
        if data.get(..4) != Some(&MAGIC[..]) {
            return Err(TaskWireError::BadMagic);
        }
        if byte(data, 4) != VERSION {
            return Err(TaskWireError::BadVersion(byte(data, 4)));
        }
        let lens = [byte(data, 5), byte(data, 6), byte(data, 7)];
        if lens.iter().any(|&l| l == 0 || usize::from(l) > MAX_STR_LEN) {
            return Err(TaskWireError::BadLength);
        }
        let total =
            REQUEST_HEADER_LEN + lens.iter().map(|&l| usize::from(l)).sum::<usize>() + MAC_LEN;
        match data.len().cmp(&total) {
            std::cmp::Ordering::Less => Err(TaskWireError::Truncated),
            std::cmp::Ordering::Greater => Err(TaskWireError::TooLong),
            std::cmp::Ordering::Equal => Ok(Request { data }),
        }
    }

    fn string(&self, index: usize) -> &'a [u8] {
        let lens = [byte(self.data, 5), byte(self.data, 6), byte(self.data, 7)];
        let start = REQUEST_HEADER_LEN
            + lens
                .iter()
                .take(index)
                .map(|&l| usize::from(l))
                .sum::<usize>();
        let len = lens.get(index).map_or(0, |&l| usize::from(l));
        self.data.get(start..start + len).unwrap_or_default()
    }

    /// The claimed id.
    pub fn id(&self) -> u64 {
        be_u64(self.data, 8)
    }

    /// The claimed task name, lossily decoded (for a refusal's report).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(self.string(1)).into_owned()
    }

    fn signed(&self) -> &'a [u8] {
        self.data
            .get(..self.data.len().saturating_sub(MAC_LEN))
            .unwrap_or_default()
    }

    fn mac(&self) -> &'a [u8] {
        self.data
            .get(self.data.len().saturating_sub(MAC_LEN)..)
            .unwrap_or_default()
    }
}

/// A validated, authenticated request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRequest {
    /// The node the request is for (the agent's node id).
    pub node_id: String,
    /// The declared task's name.
    pub name: String,
    /// The sending distributor's id (its replay window is its own).
    pub sender: String,
    /// The run's id: when it was made, in µs since the UNIX epoch, made unique by
    /// counting up ([`Senders`] refuses ids made before the agent started).
    pub id: u64,
    /// Strictly increasing per sender.
    pub sequence: u64,
    /// Sender's wall clock, ms since the UNIX epoch.
    pub sent_at_ms: u64,
    /// Wall clock by which the run must be over.
    pub deadline_ms: u64,
}

impl TaskRequest {
    /// Decodes and authenticates `bytes` with `key`.
    pub fn parse(bytes: &[u8], key: &[u8]) -> Result<TaskRequest, TaskWireError> {
        let r = Request::new_checked(bytes)?;
        let mut mac = keyed(key)?;
        mac.update(r.signed());
        mac.verify_slice(r.mac())
            .map_err(|_| TaskWireError::BadMac)?;
        Ok(TaskRequest {
            node_id: utf8(r.string(0))?,
            name: utf8(r.string(1))?,
            sender: utf8(r.string(2))?,
            id: r.id(),
            sequence: be_u64(bytes, 16),
            sent_at_ms: be_u64(bytes, 24),
            deadline_ms: be_u64(bytes, 32),
        })
    }

    /// Encodes and signs this request with `key` into `buf` (replaced).
    pub fn emit(&self, key: &[u8], buf: &mut Vec<u8>) -> Result<(), TaskWireError> {
        buf.clear();
        let lens = [
            str_len(&self.node_id)?,
            str_len(&self.name)?,
            str_len(&self.sender)?,
        ];
        buf.extend_from_slice(&MAGIC);
        buf.push(VERSION);
        buf.extend_from_slice(&lens);
        for v in [self.id, self.sequence, self.sent_at_ms, self.deadline_ms] {
            buf.extend_from_slice(&v.to_be_bytes());
        }
        for s in [&self.node_id, &self.name, &self.sender] {
            buf.extend_from_slice(s.as_bytes());
        }
        let mut mac = keyed(key)?;
        mac.update(buf);
        let tag: [u8; MAC_LEN] = mac.finalize().into_bytes().into();
        buf.extend_from_slice(&tag);
        Ok(())
    }
}

/// Why an agent refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The agent declares no task of that name.
    Undeclared,
    /// The request's MAC does not match the agent's key.
    BadMac,
    /// The sequence is not above the last accepted one from that sender.
    Replay,
    /// Sent too long ago, from the future, before the agent started, or past its deadline.
    Stale,
    /// The request names another node.
    WrongNode,
    /// The agent already runs as many tasks as it allows.
    Busy,
}

impl Refusal {
    /// Every refusal, in code order (for counters).
    pub const ALL: [Refusal; 6] = [
        Refusal::Undeclared,
        Refusal::BadMac,
        Refusal::Replay,
        Refusal::Stale,
        Refusal::WrongNode,
        Refusal::Busy,
    ];

    fn code(self) -> i32 {
        match self {
            Refusal::Undeclared => 1,
            Refusal::BadMac => 2,
            Refusal::Replay => 3,
            Refusal::Stale => 4,
            Refusal::WrongNode => 5,
            Refusal::Busy => 6,
        }
    }

    fn from_code(c: i32) -> Option<Refusal> {
        Refusal::ALL.into_iter().find(|r| r.code() == c)
    }

    /// The label in metrics and status (`undeclared`, `bad-mac`, …).
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Undeclared => "undeclared",
            Refusal::BadMac => "bad-mac",
            Refusal::Replay => "replay",
            Refusal::Stale => "stale",
            Refusal::WrongNode => "wrong-node",
            Refusal::Busy => "busy",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Undeclared => "the agent declares no such task",
            Refusal::BadMac => "authentication failed (wrong key?)",
            Refusal::Replay => "replayed request",
            Refusal::Stale => "stale request (old, from the future, or past its deadline)",
            Refusal::WrongNode => "the request names another node",
            Refusal::Busy => "the agent runs too many tasks",
        })
    }
}

/// Where a task run stands, as its agent reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Started, not ended.
    Running,
    /// Exited with this status.
    Exited(i32),
    /// Killed by this signal.
    Signalled(i32),
    /// Killed at its deadline.
    TimedOut,
    /// Not run.
    Refused(Refusal),
    /// `/bin/sh` could not be started.
    NotStarted,
}

impl TaskStatus {
    /// Whether the run is over (whatever the outcome).
    pub fn is_over(self) -> bool {
        self != TaskStatus::Running
    }

    /// Whether the run is over and succeeded.
    pub fn is_success(self) -> bool {
        self == TaskStatus::Exited(0)
    }

    fn to_wire(self) -> (u8, i32) {
        match self {
            TaskStatus::Running => (0, 0),
            TaskStatus::Exited(c) => (1, c),
            TaskStatus::Signalled(s) => (2, s),
            TaskStatus::TimedOut => (3, 0),
            TaskStatus::Refused(r) => (4, r.code()),
            TaskStatus::NotStarted => (5, 0),
        }
    }

    fn from_wire(status: u8, code: i32) -> Result<TaskStatus, TaskWireError> {
        Ok(match status {
            0 => TaskStatus::Running,
            1 => TaskStatus::Exited(code),
            2 => TaskStatus::Signalled(code),
            3 => TaskStatus::TimedOut,
            4 => TaskStatus::Refused(Refusal::from_code(code).ok_or(TaskWireError::BadStatus(4))?),
            5 => TaskStatus::NotStarted,
            s => return Err(TaskWireError::BadStatus(s)),
        })
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskStatus::Running => f.write_str("running"),
            TaskStatus::Exited(0) => f.write_str("done"),
            TaskStatus::Exited(c) => write!(f, "failed: exit status {c}"),
            TaskStatus::Signalled(s) => write!(f, "failed: killed by signal {s}"),
            TaskStatus::TimedOut => f.write_str("failed: killed at its deadline"),
            TaskStatus::Refused(r) => write!(f, "refused: {r}"),
            TaskStatus::NotStarted => f.write_str("failed: could not start /bin/sh"),
        }
    }
}

/// One task's report, as a heartbeat carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The request's id.
    pub id: u64,
    /// The task's name (as requested; empty if the request's was not readable).
    pub name: String,
    /// Where it stands.
    pub status: TaskStatus,
    /// When it started, ms since the UNIX epoch (0 if it did not).
    pub started_ms: u64,
    /// When it ended (0 while it runs).
    pub ended_ms: u64,
    /// The tail of its output (at most [`MAX_REPORT_OUTPUT`] bytes, UTF-8).
    pub output: String,
}

impl Report {
    /// Encoded length.
    pub fn len(&self) -> usize {
        REPORT_HEADER_LEN + self.name.len() + self.output.len()
    }

    /// Never empty (a report has its header); for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The length of the report section at the start of `data`, from its header (its
    /// bounds checked): what a heartbeat's length check needs.
    pub fn section_len(data: &[u8]) -> Result<usize, TaskWireError> {
        if data.len() < REPORT_HEADER_LEN {
            return Err(TaskWireError::Truncated);
        }
        let name = usize::from(byte(data, 9));
        let out = usize::from(be_u16(data, 10));
        if name > MAX_STR_LEN || out > MAX_REPORT_OUTPUT {
            return Err(TaskWireError::BadLength);
        }
        Ok(REPORT_HEADER_LEN + name + out)
    }

    /// Decodes a section of exactly [`Report::section_len`] bytes.
    pub fn parse(data: &[u8]) -> Result<Report, TaskWireError> {
        let len = Report::section_len(data)?;
        if data.len() != len {
            return Err(if data.len() < len {
                TaskWireError::Truncated
            } else {
                TaskWireError::TooLong
            });
        }
        let name_len = usize::from(byte(data, 9));
        let name = data
            .get(REPORT_HEADER_LEN..REPORT_HEADER_LEN + name_len)
            .unwrap_or_default();
        let output = data.get(REPORT_HEADER_LEN + name_len..).unwrap_or_default();
        Ok(Report {
            id: be_u64(data, 0),
            name: utf8(name)?,
            status: TaskStatus::from_wire(byte(data, 8), be_i32(data, 12))?,
            started_ms: be_u64(data, 16),
            ended_ms: be_u64(data, 24),
            output: utf8(output)?,
        })
    }

    /// Appends the section to `buf`; fails on a name over 64 bytes or an output over
    /// [`MAX_REPORT_OUTPUT`] (callers keep the tail with [`tail`]).
    pub fn emit(&self, buf: &mut Vec<u8>) -> Result<(), TaskWireError> {
        let name_len = u8::try_from(self.name.len())
            .ok()
            .filter(|&n| usize::from(n) <= MAX_STR_LEN)
            .ok_or(TaskWireError::BadLength)?;
        let out_len = u16::try_from(self.output.len())
            .ok()
            .filter(|&n| usize::from(n) <= MAX_REPORT_OUTPUT)
            .ok_or(TaskWireError::BadLength)?;
        let (status, code) = self.status.to_wire();
        buf.extend_from_slice(&self.id.to_be_bytes());
        buf.push(status);
        buf.push(name_len);
        buf.extend_from_slice(&out_len.to_be_bytes());
        buf.extend_from_slice(&code.to_be_bytes());
        buf.extend_from_slice(&self.started_ms.to_be_bytes());
        buf.extend_from_slice(&self.ended_ms.to_be_bytes());
        buf.extend_from_slice(self.name.as_bytes());
        buf.extend_from_slice(self.output.as_bytes());
        Ok(())
    }
}

/// The last `max` bytes of `s`, cut at a character boundary.
pub fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s.get(start..).unwrap_or_default()
}

/// Replay and freshness filter of requests, keyed by sender id (bounded: the least
/// recently heard sender is forgotten past [`Senders::MAX_SENDERS`]).
#[derive(Clone, Debug)]
pub struct Senders {
    max_age_ms: u64,
    since_ms: u64,
    last: BTreeMap<String, (u64, u64)>,
}

impl Senders {
    /// Most senders remembered (a primary, a backup, their restarts).
    pub const MAX_SENDERS: usize = 16;
    /// Oldest request accepted, and furthest ahead a sender's clock may be.
    pub const MAX_AGE_MS: u64 = 30_000;

    /// A filter that also refuses anything sent, or any run id made, before `since_ms`
    /// (the agent's start, with 1 s of grace for clock skew): a request recorded before
    /// a restart cannot be replayed to the new process, and a run a previous agent
    /// process may have started is never started again, though the new process has no
    /// memory of it.
    pub fn new(since_ms: u64) -> Senders {
        Senders {
            max_age_ms: Self::MAX_AGE_MS,
            since_ms,
            last: BTreeMap::new(),
        }
    }

    /// Accepts `r` at our wall clock `now_ms`, recording its sequence only on success.
    pub fn accept(&mut self, r: &TaskRequest, now_ms: u64) -> Result<(), Refusal> {
        let old = now_ms.saturating_sub(r.sent_at_ms) > self.max_age_ms;
        let ahead = r.sent_at_ms.saturating_sub(now_ms) > self.max_age_ms;
        let made_ms = r.id / 1000;
        let before_start = r.sent_at_ms.saturating_add(1_000) < self.since_ms
            || made_ms.saturating_add(1_000) < self.since_ms;
        if old || ahead || before_start || r.deadline_ms <= now_ms {
            return Err(Refusal::Stale);
        }
        if let Some((seq, _)) = self.last.get(&r.sender) {
            if r.sequence <= *seq {
                return Err(Refusal::Replay);
            }
        }
        self.last.insert(r.sender.clone(), (r.sequence, now_ms));
        while self.last.len() > Self::MAX_SENDERS {
            let oldest = self
                .last
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.last.remove(&k),
                None => break,
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn request() -> TaskRequest {
        TaskRequest {
            node_id: "10.0.0.1:80".into(),
            name: "deploy".into(),
            sender: "lb1".into(),
            id: 7,
            sequence: 42,
            sent_at_ms: 1_000_000,
            deadline_ms: 1_600_000,
        }
    }

    /// The request, with an id made at its sending time.
    fn fresh() -> TaskRequest {
        TaskRequest {
            id: 1_000_000_000 + 7,
            ..request()
        }
    }

    /// The fixture: header, strings, then the MAC (checked by recomputation).
    fn fixture() -> Vec<u8> {
        let mut b = b"FLCT\x01\x0b\x06\x03".to_vec();
        for v in [7u64, 42, 1_000_000, 1_600_000] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(b"10.0.0.1:80deploylb1");
        let mut mac = HmacSha256::new_from_slice(KEY).unwrap();
        mac.update(&b);
        b.extend_from_slice(&mac.finalize().into_bytes());
        b
    }

    #[test]
    fn request_emits_and_parses_the_fixture() {
        let mut buf = Vec::new();
        request().emit(KEY, &mut buf).unwrap();
        assert_eq!(buf, fixture());
        assert_eq!(TaskRequest::parse(&fixture(), KEY), Ok(request()));
        let view = Request::new_checked(&buf).unwrap();
        assert_eq!((view.id(), view.name_lossy().as_str()), (7, "deploy"));
    }

    #[test]
    fn bad_requests_are_errors() {
        let good = fixture();
        assert_eq!(
            TaskRequest::parse(&good, b"another key"),
            Err(TaskWireError::BadMac)
        );
        for n in 0..good.len() {
            assert!(TaskRequest::parse(&good[..n], KEY).is_err(), "prefix {n}");
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(TaskRequest::parse(&long, KEY), Err(TaskWireError::TooLong));
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(TaskRequest::parse(&bad, KEY).is_err(), "flipped byte {i}");
        }
        let mut zero = good.clone();
        zero[6] = 0;
        assert_eq!(
            Request::new_checked(&zero).err(),
            Some(TaskWireError::BadLength)
        );
        let mut r = request();
        r.name = "x".repeat(65);
        assert_eq!(r.emit(KEY, &mut Vec::new()), Err(TaskWireError::BadLength));
    }

    #[test]
    fn reports_round_trip_and_bad_ones_are_errors() {
        let reports = [
            Report {
                id: 9,
                name: "deploy".into(),
                status: TaskStatus::Exited(3),
                started_ms: 5,
                ended_ms: 6,
                output: "no disk\n".into(),
            },
            Report {
                id: u64::MAX,
                name: String::new(),
                status: TaskStatus::Refused(Refusal::BadMac),
                started_ms: 0,
                ended_ms: 0,
                output: String::new(),
            },
            Report {
                id: 1,
                name: "t".into(),
                status: TaskStatus::Running,
                started_ms: 5,
                ended_ms: 0,
                output: "é".repeat(MAX_REPORT_OUTPUT / 2),
            },
        ];
        for r in reports {
            let mut buf = Vec::new();
            r.emit(&mut buf).unwrap();
            assert_eq!(buf.len(), r.len());
            assert_eq!(Report::section_len(&buf), Ok(buf.len()));
            assert_eq!(Report::parse(&buf), Ok(r.clone()));
            for n in 0..buf.len() {
                assert!(Report::parse(&buf[..n]).is_err(), "prefix {n}");
            }
        }
        let mut buf = Vec::new();
        let mut r = Report {
            id: 1,
            name: "t".into(),
            status: TaskStatus::Refused(Refusal::Busy),
            started_ms: 0,
            ended_ms: 0,
            output: String::new(),
        };
        r.emit(&mut buf).unwrap();
        buf[8] = 9;
        assert_eq!(Report::parse(&buf), Err(TaskWireError::BadStatus(9)));
        buf[8] = 4;
        buf[15] = 99;
        assert_eq!(Report::parse(&buf), Err(TaskWireError::BadStatus(4)));
        r.output = "x".repeat(MAX_REPORT_OUTPUT + 1);
        assert_eq!(r.emit(&mut Vec::new()), Err(TaskWireError::BadLength));
        assert_eq!(tail("aé", 1), "");
        assert_eq!(tail("aéb", 2), "b");
        assert_eq!(tail("abc", 9), "abc");
    }

    #[test]
    fn senders_refuse_replays_and_stale_requests() {
        let mut s = Senders::new(1_000_000);
        let r = fresh();
        assert_eq!(s.accept(&r, 1_000_100), Ok(()));
        assert_eq!(s.accept(&r, 1_000_100), Err(Refusal::Replay));
        let next = TaskRequest {
            sequence: 43,
            ..r.clone()
        };
        // Another sender has its own window.
        let other = TaskRequest {
            sender: "lb2".into(),
            sequence: 1,
            ..r.clone()
        };
        assert_eq!(s.accept(&other, 1_000_100), Ok(()));
        assert_eq!(s.accept(&next, 1_000_100), Ok(()));
        let old = TaskRequest {
            sequence: 50,
            ..r.clone()
        };
        assert_eq!(s.accept(&old, 1_031_000), Err(Refusal::Stale));
        let past_deadline = TaskRequest {
            sequence: 51,
            sent_at_ms: 1_599_990,
            ..r.clone()
        };
        assert_eq!(s.accept(&past_deadline, 1_600_000), Err(Refusal::Stale));
        // Sent before the agent started.
        let mut restarted = Senders::new(1_002_000);
        assert_eq!(restarted.accept(&r, 1_002_100), Err(Refusal::Stale));
        // Sent after, but for a run made before it started (a previous agent process
        // may have run it).
        let resent = TaskRequest {
            sent_at_ms: 1_002_050,
            sequence: 99,
            ..r.clone()
        };
        assert_eq!(restarted.accept(&resent, 1_002_100), Err(Refusal::Stale));
        let new_run = TaskRequest {
            id: 1_002_050_000,
            ..resent
        };
        assert_eq!(restarted.accept(&new_run, 1_002_100), Ok(()));
        // The sender map is bounded.
        for i in 0..40u64 {
            let x = TaskRequest {
                sender: format!("s{i}"),
                ..r.clone()
            };
            assert_eq!(s.accept(&x, 1_000_200 + i), Ok(()));
        }
        assert!(s.last.len() <= Senders::MAX_SENDERS);
    }
}
