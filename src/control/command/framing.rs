//! Sans-IO line framing for the control socket.
//!
//! Owns [`LineBuffer`] and its [`LineError`]: bytes in, complete lines out,
//! with a hard cap of [`MAX_LINE`] bytes per line that is enforced as bytes
//! arrive, so an over-long line is never held in memory. It does not parse
//! lines (that is `crate::control::command::parse`) and does no I/O.

use std::collections::VecDeque;
use std::error::Error;
use std::fmt;

/// Longest accepted line in bytes, not counting the terminating `\n`
/// (a trailing `\r` counts).
pub const MAX_LINE: usize = 4096;

/// Why a line could not be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// The line exceeded [`MAX_LINE`] bytes; it was discarded up to its
    /// newline and reported once.
    TooLong,
    /// The line is not valid UTF-8.
    InvalidUtf8,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::TooLong => write!(f, "line longer than {MAX_LINE} bytes, discarded"),
            LineError::InvalidUtf8 => f.write_str("line is not valid UTF-8"),
        }
    }
}

impl Error for LineError {}

/// Sans-IO line framing for the control socket.
///
/// Feed whatever `read(2)` returned to [`push`](Self::push), then call
/// [`next_line`](Self::next_line) until it returns `None`. Lines end with
/// `\n`; one trailing `\r` is stripped. A line longer than [`MAX_LINE`] is
/// never buffered: its bytes are dropped as they arrive, and it yields
/// [`LineError::TooLong`] once, in its place in the sequence of lines.
///
/// Complete lines the caller has not consumed yet stay buffered; the shell
/// should stop reading while [`buffered`](Self::buffered) is large.
#[derive(Debug, Default, Clone)]
pub struct LineBuffer {
    /// Unconsumed bytes: complete lines, then one partial line.
    buf: Vec<u8>,
    /// Read position in `buf`; the consumed prefix is dropped by `push`.
    head: usize,
    /// Start of the partial (unterminated) line in `buf`.
    partial: usize,
    /// Positions in `buf` where an over-long line was dropped, in order.
    too_long: VecDeque<usize>,
    /// Inside an over-long line: drop bytes up to the next `\n`.
    discarding: bool,
}

impl LineBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        let mut rest = bytes;
        while !rest.is_empty() {
            let newline = rest.iter().position(|&b| b == b'\n');
            if self.discarding {
                match newline {
                    Some(i) => {
                        self.discarding = false;
                        rest = rest.get(i + 1..).unwrap_or(&[]);
                        continue;
                    }
                    None => return,
                }
            }
            let pending = self.buf.len() - self.partial;
            let chunk = newline.unwrap_or(rest.len());
            if pending + chunk > MAX_LINE {
                self.buf.truncate(self.partial);
                self.too_long.push_back(self.partial);
                // If the newline is in this chunk the line is over; else keep
                // dropping until it arrives.
                self.discarding = newline.is_none();
            } else if let Some(line) = rest.get(..chunk + usize::from(newline.is_some())) {
                self.buf.extend_from_slice(line);
                if newline.is_some() {
                    self.partial = self.buf.len();
                }
            }
            rest = match newline {
                Some(i) => rest.get(i + 1..).unwrap_or(&[]),
                None => &[],
            };
        }
    }

    /// The peer closed its side: treats an unterminated last line as
    /// complete (so `printf 'show nodes' | nc -U sock` works), and stops
    /// discarding an over-long one, which was already reported.
    pub fn finish(&mut self) {
        if self.discarding {
            self.discarding = false;
        } else if self.buf.len() > self.partial {
            self.push(b"\n");
        }
    }

    /// The next complete line, without its `\n` or trailing `\r`, or `None`
    /// when no complete line is buffered.
    pub fn next_line(&mut self) -> Option<Result<String, LineError>> {
        if self.too_long.front() == Some(&self.head) {
            self.too_long.pop_front();
            return Some(Err(LineError::TooLong));
        }
        let end = self.too_long.front().copied().unwrap_or(self.partial);
        let region = self.buf.get(self.head..end)?;
        let len = region.iter().position(|&b| b == b'\n')?;
        let line = region.get(..len)?;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let result = match std::str::from_utf8(line) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(LineError::InvalidUtf8),
        };
        self.head += len + 1;
        Some(result)
    }

    /// Bytes held: unconsumed complete lines plus the partial line.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Drops the consumed prefix so `buf` does not grow without bound.
    fn compact(&mut self) {
        if self.head == 0 {
            return;
        }
        self.buf.drain(..self.head);
        self.partial -= self.head;
        for pos in &mut self.too_long {
            *pos -= self.head;
        }
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(lb: &mut LineBuffer) -> Vec<Result<String, LineError>> {
        std::iter::from_fn(|| lb.next_line()).collect()
    }

    #[test]
    fn line_buffer_frames_split_reads_and_strips_cr() {
        let mut lb = LineBuffer::new();
        lb.push(b"show no");
        assert_eq!(lb.next_line(), None);
        lb.push(b"des\r\nenable\n\nhel");
        assert_eq!(
            drain(&mut lb),
            vec![
                Ok("show nodes".into()),
                Ok("enable".into()),
                Ok(String::new())
            ]
        );
        lb.push(b"p\n");
        assert_eq!(drain(&mut lb), vec![Ok("help".into())]);
        assert_eq!(lb.buffered(), 0);
    }

    #[test]
    fn line_buffer_reports_long_line_once_without_buffering_it() {
        let mut lb = LineBuffer::new();
        lb.push(b"enable\n");
        for _ in 0..100 {
            lb.push(&[b'a'; 1000]);
            assert!(lb.buffered() <= 7 + MAX_LINE);
        }
        lb.push(b"aaa\ndisable\n");
        assert_eq!(
            drain(&mut lb),
            vec![
                Ok("enable".into()),
                Err(LineError::TooLong),
                Ok("disable".into())
            ]
        );
    }

    #[test]
    fn line_buffer_limit_is_exact() {
        let mut lb = LineBuffer::new();
        let mut exact = vec![b'a'; MAX_LINE];
        exact.push(b'\n');
        lb.push(&exact);
        let mut over = vec![b'b'; MAX_LINE + 1];
        over.push(b'\n');
        lb.push(&over);
        lb.push(&over);
        let got = drain(&mut lb);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().map(String::len), Ok(MAX_LINE));
        assert_eq!(got[1], Err(LineError::TooLong));
        assert_eq!(got[2], Err(LineError::TooLong));
    }

    #[test]
    fn line_buffer_invalid_utf8_and_finish() {
        let mut lb = LineBuffer::new();
        lb.push(b"\xff\xfe\nshow stats");
        assert_eq!(drain(&mut lb), vec![Err(LineError::InvalidUtf8)]);
        lb.finish();
        assert_eq!(drain(&mut lb), vec![Ok("show stats".into())]);
        lb.finish();
        assert_eq!(lb.next_line(), None);
    }

    #[test]
    fn line_buffer_byte_at_a_time_matches_bulk() {
        let input: &[u8] = b"a\r\nbb\n\xc3\n\xc3\xa9\nlast";
        let mut bulk = LineBuffer::new();
        bulk.push(input);
        bulk.finish();
        let mut single = LineBuffer::new();
        let mut got = Vec::new();
        for b in input {
            single.push(std::slice::from_ref(b));
            got.extend(drain(&mut single));
        }
        single.finish();
        got.extend(drain(&mut single));
        assert_eq!(got, drain(&mut bulk));
        assert_eq!(got.len(), 5);
    }

    /// Seeded xorshift so the sweep is reproducible without a dependency.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_chunking_matches_bulk_and_never_panics() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..200 {
            let mut input = Vec::new();
            while input.len() < 12_000 {
                match next(&mut rng) % 8 {
                    0 => input.push(b'\n'),
                    1 => input.extend_from_slice(b"\r\n"),
                    2 => input.push(0xff),
                    3 => input.extend(std::iter::repeat_n(b'x', (next(&mut rng) % 5000) as usize)),
                    4 => input.extend_from_slice(b"set weight [::1]:80 7"),
                    _ => input.push(b'a' + (next(&mut rng) % 26) as u8),
                }
            }
            let mut bulk = LineBuffer::new();
            bulk.push(&input);
            bulk.finish();
            let want = drain(&mut bulk);

            let mut chunked = LineBuffer::new();
            let mut got = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let n = ((next(&mut rng) % 700) as usize + 1).min(rest.len());
                chunked.push(&rest[..n]);
                rest = &rest[n..];
                assert!(chunked.buffered() <= MAX_LINE + 700 + 1);
                got.extend(drain(&mut chunked));
            }
            chunked.finish();
            got.extend(drain(&mut chunked));
            assert_eq!(got, want);
            for line in got.iter().flatten() {
                assert!(line.len() <= MAX_LINE);
                let _ = crate::control::command::parse(line);
            }
        }
    }
}
