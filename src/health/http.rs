//! HTTP health check encoding: the request bytes and the response status.
//!
//! This module owns the pure parts of an HTTP/1.1 check (RFC 9112): building
//! the `GET` request into a caller's buffer, validating the configured path
//! and host so the request cannot be split, parsing the expected-status set
//! (`"2xx,3xx"`, `"200,204,301-308"`), and extracting the status code from
//! the first bytes of the response.
//!
//! It deliberately does not open sockets, time out, read headers or bodies,
//! or follow redirects: the driver writes [`build_request`]'s bytes, feeds
//! what it reads to [`parse_status`] until it returns a code, and closes the
//! connection (the request says `Connection: close`).

use std::fmt;
use std::str::FromStr;

/// Longest status line [`parse_status`] accepts, terminator included.
pub const MAX_STATUS_LINE: usize = 256;

/// Longest check path [`validate_path`] accepts.
pub const MAX_PATH_LEN: usize = 1024;

/// Errors from validating check settings or parsing a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpCheckError {
    /// The check path does not start with `/`.
    PathNotAbsolute,
    /// The check path contains a space, CR, LF or other control byte.
    PathBadByte {
        /// The offending byte.
        byte: u8,
        /// Its offset in the path.
        index: usize,
    },
    /// The check path is longer than [`MAX_PATH_LEN`].
    PathTooLong(usize),
    /// The check host is empty.
    HostEmpty,
    /// The check host contains a space, CR, LF or other control byte.
    HostBadByte {
        /// The offending byte.
        byte: u8,
        /// Its offset in the host.
        index: usize,
    },
    /// A token of the expected-status list is not `Nxx`, `NNN` or `NNN-NNN`
    /// within 100..=599.
    StatusToken(String),
    /// The response does not start with an `HTTP/1.x NNN` status line.
    BadStatusLine,
    /// The status code is not three digits in 100..=599.
    BadStatusCode,
    /// No line terminator within [`MAX_STATUS_LINE`] bytes.
    StatusLineTooLong,
}

impl fmt::Display for HttpCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpCheckError::PathNotAbsolute => f.write_str("check path: must start with '/'"),
            HttpCheckError::PathBadByte { byte, index } => write!(
                f,
                "check path: byte 0x{byte:02x} at offset {index} is not allowed (space or control)"
            ),
            HttpCheckError::PathTooLong(len) => {
                write!(f, "check path: {len} bytes, at most {MAX_PATH_LEN} allowed")
            }
            HttpCheckError::HostEmpty => f.write_str("check host: must not be empty"),
            HttpCheckError::HostBadByte { byte, index } => write!(
                f,
                "check host: byte 0x{byte:02x} at offset {index} is not allowed (space or control)"
            ),
            HttpCheckError::StatusToken(tok) => write!(
                f,
                "expected status: bad token {tok:?} (want Nxx, NNN or NNN-NNN within 100-599)"
            ),
            HttpCheckError::BadStatusLine => f.write_str("response: not an HTTP/1.x status line"),
            HttpCheckError::BadStatusCode => f.write_str("response: bad status code"),
            HttpCheckError::StatusLineTooLong => write!(
                f,
                "response: status line longer than {MAX_STATUS_LINE} bytes"
            ),
        }
    }
}

impl std::error::Error for HttpCheckError {}

/// First byte in `s` that is a space, a control byte or DEL.
fn first_bad_byte(s: &str) -> Option<(usize, u8)> {
    s.bytes().enumerate().find(|&(_, b)| b <= b' ' || b == 0x7f)
}

/// Validates a check path at config time: starts with `/`, at most
/// [`MAX_PATH_LEN`] bytes, no space, CR, LF or other control byte (which
/// would split or corrupt the request line, RFC 9112 §3).
pub fn validate_path(path: &str) -> Result<(), HttpCheckError> {
    if !path.starts_with('/') {
        return Err(HttpCheckError::PathNotAbsolute);
    }
    if path.len() > MAX_PATH_LEN {
        return Err(HttpCheckError::PathTooLong(path.len()));
    }
    match first_bad_byte(path) {
        Some((index, byte)) => Err(HttpCheckError::PathBadByte { byte, index }),
        None => Ok(()),
    }
}

/// Validates a check `Host` value at config time: non-empty, no space, CR,
/// LF or other control byte (header injection).
pub fn validate_host(host: &str) -> Result<(), HttpCheckError> {
    if host.is_empty() {
        return Err(HttpCheckError::HostEmpty);
    }
    match first_bad_byte(host) {
        Some((index, byte)) => Err(HttpCheckError::HostBadByte { byte, index }),
        None => Ok(()),
    }
}

/// Appends the check request to `buf` (which the caller may reuse):
/// `GET {path} HTTP/1.1`, `Host`, `User-Agent: fulcrum-check`,
/// `Connection: close`, blank line.
///
/// `path` and `host` must have passed [`validate_path`] and
/// [`validate_host`]; this function does not re-check them.
pub fn build_request(path: &str, host: &str, buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"GET ");
    buf.extend_from_slice(path.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    buf.extend_from_slice(host.as_bytes());
    buf.extend_from_slice(b"\r\nUser-Agent: fulcrum-check\r\nConnection: close\r\n\r\n");
}

/// Set of acceptable status codes (100..=599), parsed from a comma-separated
/// list of `Nxx` classes, single codes and inclusive `NNN-NNN` ranges.
/// Defaults to `2xx,3xx`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StatusSet {
    // Bit `c` set means code `c` is accepted; codes 0..640.
    bits: [u64; 10],
}

impl StatusSet {
    /// The empty set (matches nothing).
    pub const fn empty() -> Self {
        StatusSet { bits: [0; 10] }
    }

    /// Whether `code` is in the set; false for anything outside 100..=599.
    pub fn contains(&self, code: u16) -> bool {
        let c = usize::from(code);
        match self.bits.get(c / 64) {
            Some(word) => word & (1u64 << (c % 64)) != 0,
            None => false,
        }
    }

    /// Adds the inclusive range `lo..=hi`, clipped to 100..=599.
    fn insert_range(&mut self, lo: u16, hi: u16) {
        for code in lo.max(100)..=hi.min(599) {
            let c = usize::from(code);
            if let Some(word) = self.bits.get_mut(c / 64) {
                *word |= 1u64 << (c % 64);
            }
        }
    }
}

impl Default for StatusSet {
    fn default() -> Self {
        let mut set = StatusSet::empty();
        set.insert_range(200, 399);
        set
    }
}

/// Parses a three-digit code in 100..=599.
fn parse_code(s: &str) -> Option<u16> {
    if s.len() != 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|c| (100..=599).contains(c))
}

fn parse_token(tok: &str) -> Option<(u16, u16)> {
    let b = tok.as_bytes();
    if let [class @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] = b {
        let lo = u16::from(class - b'0') * 100;
        return Some((lo, lo + 99));
    }
    match tok.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse_code(lo.trim())?, parse_code(hi.trim())?);
            (lo <= hi).then_some((lo, hi))
        }
        None => parse_code(tok).map(|c| (c, c)),
    }
}

impl FromStr for StatusSet {
    type Err = HttpCheckError;

    /// Parses e.g. `"2xx,3xx"` or `"200, 204, 301-308"`. Whitespace around
    /// tokens is ignored; an empty token is an error naming it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = StatusSet::empty();
        for raw in s.split(',') {
            let tok = raw.trim();
            let (lo, hi) =
                parse_token(tok).ok_or_else(|| HttpCheckError::StatusToken(tok.to_owned()))?;
            set.insert_range(lo, hi);
        }
        Ok(set)
    }
}

impl fmt::Display for StatusSet {
    /// Writes the set as sorted ranges, e.g. `200-399` or `200,204,301-308`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut code = 100u16;
        while code <= 599 {
            if !self.contains(code) {
                code += 1;
                continue;
            }
            let start = code;
            while code < 599 && self.contains(code + 1) {
                code += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == code {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{code}")?;
            }
            code += 1;
        }
        Ok(())
    }
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatusSet({self})")
    }
}

/// Extracts the status code from the start of a response.
///
/// - `Ok(None)`: no line terminator yet and fewer than [`MAX_STATUS_LINE`]
///   bytes, and what is there is still a plausible `HTTP/1.` prefix: read
///   more.
/// - `Ok(Some(code))`: `HTTP/1.x NNN` followed by a space or the end of the
///   line (the reason phrase is optional in practice).
/// - `Err`: not HTTP/1.x, a bad code, or no terminator within the limit.
///
/// A bare LF is accepted as the terminator (RFC 9112 §2.2 allows a recipient
/// to). Interim 1xx responses are returned as is; a check sends no
/// `Expect`, so a server has no reason to send one.
pub fn parse_status(head: &[u8]) -> Result<Option<u16>, HttpCheckError> {
    const PREFIX: &[u8] = b"HTTP/1.";
    let window = head.get(..MAX_STATUS_LINE).unwrap_or(head);
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if head.len() >= MAX_STATUS_LINE {
            return Err(HttpCheckError::StatusLineTooLong);
        }
        let n = head.len().min(PREFIX.len());
        if head.get(..n) != PREFIX.get(..n) {
            return Err(HttpCheckError::BadStatusLine);
        }
        return Ok(None);
    };
    let line = window.get(..lf).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // "HTTP/1." DIGIT SP
    let rest = match line.strip_prefix(PREFIX) {
        Some([minor, b' ', rest @ ..]) if minor.is_ascii_digit() => rest,
        _ => return Err(HttpCheckError::BadStatusLine),
    };
    let (code, tail) = match rest {
        [a, b, c, tail @ ..] => ([*a, *b, *c], tail),
        _ => return Err(HttpCheckError::BadStatusCode),
    };
    if !code.iter().all(u8::is_ascii_digit) || !matches!(tail.first(), None | Some(b' ')) {
        return Err(HttpCheckError::BadStatusCode);
    }
    let value = code
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&value) {
        return Err(HttpCheckError::BadStatusCode);
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> StatusSet {
        match s.parse() {
            Ok(v) => v,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    #[test]
    fn request_bytes() {
        let mut buf = Vec::new();
        build_request("/health?full=1", "web-1.example", &mut buf);
        assert_eq!(
            buf,
            b"GET /health?full=1 HTTP/1.1\r\nHost: web-1.example\r\n\
              User-Agent: fulcrum-check\r\nConnection: close\r\n\r\n"
        );
        // Appends; the caller clears to reuse.
        build_request("/", "h", &mut buf);
        assert!(buf.ends_with(
            b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: fulcrum-check\r\nConnection: close\r\n\r\n"
        ));
    }

    #[test]
    fn path_validation() {
        assert_eq!(validate_path("/"), Ok(()));
        assert_eq!(validate_path("/a/b?c=d%20e"), Ok(()));
        assert_eq!(validate_path(""), Err(HttpCheckError::PathNotAbsolute));
        assert_eq!(
            validate_path("health"),
            Err(HttpCheckError::PathNotAbsolute)
        );
        assert_eq!(
            validate_path("/a b"),
            Err(HttpCheckError::PathBadByte {
                byte: b' ',
                index: 2
            })
        );
        assert_eq!(
            validate_path("/a\r\nX: y"),
            Err(HttpCheckError::PathBadByte {
                byte: b'\r',
                index: 2
            })
        );
        assert_eq!(
            validate_path("/\n"),
            Err(HttpCheckError::PathBadByte {
                byte: b'\n',
                index: 1
            })
        );
        assert_eq!(
            validate_path("/\t"),
            Err(HttpCheckError::PathBadByte {
                byte: b'\t',
                index: 1
            })
        );
        assert_eq!(
            validate_path("/\x7f"),
            Err(HttpCheckError::PathBadByte {
                byte: 0x7f,
                index: 1
            })
        );
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(
            validate_path(&long),
            Err(HttpCheckError::PathTooLong(MAX_PATH_LEN + 1))
        );
        assert!(validate_path("x")
            .unwrap_err()
            .to_string()
            .starts_with("check path:"));
    }

    #[test]
    fn host_validation() {
        assert_eq!(validate_host("10.0.0.1:8080"), Ok(()));
        assert_eq!(validate_host("[::1]:80"), Ok(()));
        assert_eq!(validate_host(""), Err(HttpCheckError::HostEmpty));
        assert_eq!(
            validate_host("a\r\nb"),
            Err(HttpCheckError::HostBadByte {
                byte: b'\r',
                index: 1
            })
        );
        assert_eq!(
            validate_host("a b"),
            Err(HttpCheckError::HostBadByte {
                byte: b' ',
                index: 1
            })
        );
    }

    #[test]
    fn status_set_default_and_classes() {
        let d = StatusSet::default();
        assert!(d.contains(200) && d.contains(302) && d.contains(399));
        assert!(!d.contains(199) && !d.contains(400) && !d.contains(503));
        assert_eq!(d, set("2xx,3xx"));
        assert_eq!(d.to_string(), "200-399");
        assert_eq!(set("5XX").to_string(), "500-599");
    }

    #[test]
    fn status_set_codes_and_ranges() {
        let s = set("200, 204,301-308 ,418");
        for c in [200, 204, 301, 305, 308, 418] {
            assert!(s.contains(c), "{c}");
        }
        for c in [0, 99, 201, 300, 309, 417, 600, 999, u16::MAX] {
            assert!(!s.contains(c), "{c}");
        }
        assert_eq!(s.to_string(), "200,204,301-308,418");
        assert_eq!(set(&s.to_string()), s);
        assert_eq!(set("100-599").to_string(), "100-599");
    }

    #[test]
    fn status_set_errors_name_the_token() {
        for (input, tok) in [
            ("", ""),
            ("2xx,", ""),
            ("2xx,,3xx", ""),
            ("6xx", "6xx"),
            ("0xx", "0xx"),
            ("2x", "2x"),
            ("20", "20"),
            ("2000", "2000"),
            ("099", "099"),
            ("600", "600"),
            ("abc", "abc"),
            ("+20", "+20"),
            ("308-301", "308-301"),
            ("200-", "200-"),
            ("-200", "-200"),
            ("200-300-400", "200-300-400"),
            ("2xx, 20O", "20O"),
        ] {
            assert_eq!(
                input.parse::<StatusSet>(),
                Err(HttpCheckError::StatusToken(tok.to_owned())),
                "{input:?}"
            );
        }
        let e = "2xx,abc".parse::<StatusSet>().unwrap_err().to_string();
        assert!(e.contains("\"abc\""), "{e}");
    }

    #[test]
    fn parse_status_complete_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Ok(Some(200)));
        assert_eq!(
            parse_status(b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n"),
            Ok(Some(204))
        );
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Ok(Some(503))
        );
        assert_eq!(parse_status(b"HTTP/1.1 404\r\n"), Ok(Some(404)));
        assert_eq!(parse_status(b"HTTP/1.1 301 \r\n"), Ok(Some(301)));
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\n"), Ok(Some(200)));
        assert_eq!(
            parse_status(b"HTTP/1.1 100 Continue\r\n\r\n"),
            Ok(Some(100))
        );
    }

    #[test]
    fn parse_status_truncated_needs_more() {
        let full = b"HTTP/1.1 200 OK\r\n";
        for n in 0..full.len() - 1 {
            assert_eq!(parse_status(&full[..n]), Ok(None), "prefix {n}");
        }
        // CR without LF yet.
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r"), Ok(None));
    }

    #[test]
    fn parse_status_garbage() {
        for input in [
            &b"X"[..],
            b"http/1.1 200 OK\r\n",
            b"HTTP/2 200\r\n",
            b"HTTP/1.",
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"\r\n",
            b"\n",
            b"HTTP/1.1\r\n",
            b"HTTP/1.x 200 OK\r\n",
            b"HTTP/1.1  200 OK\r\n",
            b"\x00\x01\x02",
        ] {
            let r = parse_status(input);
            // "HTTP/1." alone is an incomplete but valid prefix.
            if input == b"HTTP/1." {
                assert_eq!(r, Ok(None));
            } else {
                assert!(r.is_err(), "{input:?} -> {r:?}");
            }
        }
    }

    #[test]
    fn parse_status_bad_codes() {
        for input in [
            &b"HTTP/1.1 20 OK\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1 099 Low\r\n",
            b"HTTP/1.1 600 High\r\n",
            b"HTTP/1.1 999\r\n",
            b"HTTP/1.1 abc OK\r\n",
            b"HTTP/1.1 2O0 OK\r\n",
            b"HTTP/1.1 \r\n",
            b"HTTP/1.1 200OK\r\n",
        ] {
            assert_eq!(
                parse_status(input),
                Err(HttpCheckError::BadStatusCode),
                "{input:?}"
            );
        }
    }

    #[test]
    fn parse_status_too_long() {
        let mut long = b"HTTP/1.1 200 ".to_vec();
        long.resize(MAX_STATUS_LINE, b'a');
        assert_eq!(parse_status(&long), Err(HttpCheckError::StatusLineTooLong));
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse_status(&long), Err(HttpCheckError::StatusLineTooLong));
        // Just under the limit is still fine.
        let mut ok = b"HTTP/1.1 200 ".to_vec();
        ok.resize(MAX_STATUS_LINE - 1, b'a');
        assert_eq!(parse_status(&ok), Ok(None));
        ok.push(b'\n');
        assert_eq!(parse_status(&ok), Ok(Some(200)));
    }
}
