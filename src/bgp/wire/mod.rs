//! The BGP-4 message codec (RFC 4271 §4), written by hand in smoltcp's style: a
//! validated [`Message`] repr, [`parse`] over a byte stream and [`emit`] into a
//! buffer, tested against hand-computed byte fixtures.
//!
//! What it owns: the byte layout of OPEN (with the 4-octet AS capability of
//! RFC 6793 and the multiprotocol capability of RFC 4760, carried in RFC 5492
//! optional parameters), UPDATE (withdrawn IPv4 prefixes, path attributes, IPv4
//! NLRI, MP_REACH_NLRI/MP_UNREACH_NLRI for IPv6 unicast), NOTIFICATION and
//! KEEPALIVE, and the mapping of every malformation it detects to the
//! NOTIFICATION error code/subcode of RFC 4271 §6.
//!
//! What it does not do: decide anything (the peer AS check, hold-time
//! negotiation and state live in [`super::session`]), or interpret received
//! routes. fulcrum is an announce-only speaker, so an UPDATE from the peer is
//! only checked for framing (lengths, attribute list, prefixes) and then
//! ignored; AS_PATH is kept as opaque bytes because its AS width depends on the
//! negotiated capabilities, which a stateless parser does not know
//! ([`Attribute::as_path`] builds ours).
//!
//! Layout: this file holds the header (§4.1), NOTIFICATION, KEEPALIVE and the
//! dispatch; [`open`] and [`update`] hold the two message bodies.
//!
//! Never panics: every read goes through a bounds-checked cursor.

use core::fmt;

mod open;
mod update;

pub use open::{Capability, Open};
pub use update::{
    Attribute, Update, FLAG_EXTENDED_LENGTH, FLAG_OPTIONAL, FLAG_TRANSITIVE, GRACEFUL_SHUTDOWN,
    ORIGIN_IGP,
};

/// The header's marker: all ones (RFC 4271 §4.1).
pub const MARKER: [u8; 16] = [0xff; 16];
/// Marker, length and type.
pub const HEADER_LEN: usize = 19;
/// Largest message (RFC 4271 §4.1).
pub const MAX_LEN: usize = 4096;
/// The only BGP version spoken (RFC 4271 §4.2).
pub const VERSION: u8 = 4;
/// The 2-octet stand-in for a 4-octet AS number (RFC 6793 §9).
pub const AS_TRANS: u16 = 23456;

/// Address family identifier of IPv4 (IANA).
pub const AFI_IPV4: u16 = 1;
/// Address family identifier of IPv6 (IANA).
pub const AFI_IPV6: u16 = 2;
/// Subsequent address family identifier of unicast (RFC 4760 §6).
pub const SAFI_UNICAST: u8 = 1;

const TYPE_OPEN: u8 = 1;
const TYPE_UPDATE: u8 = 2;
const TYPE_NOTIFICATION: u8 = 3;
const TYPE_KEEPALIVE: u8 = 4;

/// NOTIFICATION error codes and subcodes (RFC 4271 §4.5, §6; RFC 6608 for FSM).
pub mod code {
    /// Message header error.
    pub const HEADER: u8 = 1;
    /// 1/1: the marker is not all ones.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    /// 1/2.
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    /// 1/3.
    pub const BAD_MESSAGE_TYPE: u8 = 3;
    /// OPEN message error.
    pub const OPEN: u8 = 2;
    /// 2/1.
    pub const UNSUPPORTED_VERSION: u8 = 1;
    /// 2/2.
    pub const BAD_PEER_AS: u8 = 2;
    /// 2/3.
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    /// 2/4.
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    /// 2/6.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    /// UPDATE message error.
    pub const UPDATE: u8 = 3;
    /// 3/1.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    /// 3/3 (data: the missing attribute's type code).
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    /// 3/5.
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    /// 3/6.
    pub const INVALID_ORIGIN: u8 = 6;
    /// 3/10.
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    /// Hold timer expired (4/0).
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite state machine error; subcodes 1..3 are RFC 6608's "unexpected
    /// message in OpenSent/OpenConfirm/Established".
    pub const FSM: u8 = 5;
    /// Cease (RFC 4486 gives the subcodes).
    pub const CEASE: u8 = 6;
    /// Subcode 0, "unspecific".
    pub const UNSPECIFIC: u8 = 0;
}

/// A BGP message (RFC 4271 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN (§4.2).
    Open(Open),
    /// UPDATE (§4.3).
    Update(Update),
    /// NOTIFICATION (§4.5).
    Notification(Notification),
    /// KEEPALIVE (§4.4): the header alone.
    Keepalive,
}

/// A NOTIFICATION message (RFC 4271 §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Diagnostic data.
    pub data: Vec<u8>,
}

impl Notification {
    /// A NOTIFICATION with no data.
    pub fn new(code: u8, subcode: u8) -> Notification {
        Notification {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    fn with_data(code: u8, subcode: u8, data: &[u8]) -> Notification {
        Notification {
            code,
            subcode,
            data: data.to_vec(),
        }
    }
}

/// Why [`parse`] returned no message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes are buffered than the message needs: read more and call again.
    Incomplete,
    /// The message is malformed; the NOTIFICATION to send before closing
    /// (RFC 4271 §6).
    Malformed(Notification),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Incomplete => f.write_str("incomplete BGP message"),
            WireError::Malformed(n) => {
                write!(f, "malformed BGP message (error {}/{})", n.code, n.subcode)
            }
        }
    }
}

impl std::error::Error for WireError {}

fn malformed(code: u8, subcode: u8) -> WireError {
    WireError::Malformed(Notification::new(code, subcode))
}

fn malformed_data(code: u8, subcode: u8, data: &[u8]) -> WireError {
    WireError::Malformed(Notification::with_data(code, subcode, data))
}

/// A bounds-checked big-endian reader; every method returns `None` past the end.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes(b.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes(b.try_into().ok()?))
    }
}

/// Parses the first message in `buf`, a byte stream: the message and how many
/// bytes it used, [`WireError::Incomplete`] when `buf` holds less than a whole
/// message, or the NOTIFICATION that the malformation calls for.
///
/// Checks in RFC 4271 §6.1 order: marker (1/1), length (1/2), type (1/3), then the
/// type's own minimum length (1/2) and body (§6.2 OPEN, §6.3 UPDATE).
pub fn parse(buf: &[u8]) -> Result<(Message, usize), WireError> {
    let mut r = Reader::new(buf);
    let (Some(marker), Some(length), Some(kind)) = (r.take(16), r.u16(), r.u8()) else {
        return Err(WireError::Incomplete);
    };
    if marker != MARKER {
        return Err(malformed(code::HEADER, code::CONNECTION_NOT_SYNCHRONIZED));
    }
    let len = usize::from(length);
    let bad_length = || {
        malformed_data(
            code::HEADER,
            code::BAD_MESSAGE_LENGTH,
            &length.to_be_bytes(),
        )
    };
    if !(HEADER_LEN..=MAX_LEN).contains(&len) {
        return Err(bad_length());
    }
    let min = match kind {
        TYPE_OPEN => 29,
        TYPE_UPDATE => 23,
        TYPE_NOTIFICATION => 21,
        TYPE_KEEPALIVE => HEADER_LEN,
        _ => {
            return Err(malformed_data(
                code::HEADER,
                code::BAD_MESSAGE_TYPE,
                &[kind],
            ))
        }
    };
    if len < min || (kind == TYPE_KEEPALIVE && len != HEADER_LEN) {
        return Err(bad_length());
    }
    let body = buf.get(HEADER_LEN..len).ok_or(WireError::Incomplete)?;
    let message = match kind {
        TYPE_OPEN => Message::Open(open::parse_open(body)?),
        TYPE_UPDATE => Message::Update(update::parse_update(body)?),
        TYPE_NOTIFICATION => Message::Notification(parse_notification(body)?),
        _ => Message::Keepalive,
    };
    Ok((message, len))
}

fn parse_notification(body: &[u8]) -> Result<Notification, WireError> {
    let mut r = Reader::new(body);
    let (Some(code), Some(subcode)) = (r.u8(), r.u8()) else {
        return Err(malformed(code::HEADER, code::BAD_MESSAGE_LENGTH));
    };
    Ok(Notification::with_data(code, subcode, r.buf))
}

/// Appends `message` to `out`. The caller keeps messages within [`MAX_LEN`]
/// (the session splits UPDATEs); a longer one would get a wrong length field,
/// so it is written with the length clamped and a debug assertion.
pub fn emit(message: &Message, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&[0, 0]);
    match message {
        Message::Open(open) => {
            out.push(TYPE_OPEN);
            open::emit_open(open, out);
        }
        Message::Update(update) => {
            out.push(TYPE_UPDATE);
            update::emit_update(update, out);
        }
        Message::Notification(n) => {
            out.push(TYPE_NOTIFICATION);
            out.push(n.code);
            out.push(n.subcode);
            out.extend_from_slice(&n.data);
        }
        Message::Keepalive => out.push(TYPE_KEEPALIVE),
    }
    let len = out.len() - start;
    debug_assert!(len <= MAX_LEN, "BGP message of {len} bytes");
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    if let Some(field) = out.get_mut(start + 16..start + 18) {
        field.copy_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// 16 marker bytes, then the rest of a fixture.
    fn with_marker(rest: &[u8]) -> Vec<u8> {
        let mut v = MARKER.to_vec();
        v.extend_from_slice(rest);
        v
    }

    fn keepalive_bytes() -> Vec<u8> {
        with_marker(&[0x00, 0x13, 0x04])
    }

    /// OPEN from AS 4200000001 (0xfa56ea01, so My AS is AS_TRANS 23456 = 0x5ba0),
    /// hold time 90, identifier 192.0.2.1, one capabilities parameter holding the
    /// 4-octet AS capability and multiprotocol IPv4 unicast. 19 + 10 + 14 = 43.
    fn open_bytes() -> Vec<u8> {
        with_marker(&[
            0x00, 0x2b, 0x01, // length 43, OPEN
            0x04, // version
            0x5b, 0xa0, // My AS = AS_TRANS
            0x00, 0x5a, // hold time 90
            0xc0, 0x00, 0x02, 0x01, // BGP identifier
            0x0e, // optional parameters length 14
            0x02, 0x0c, // capabilities, 12 octets
            0x41, 0x04, 0xfa, 0x56, 0xea, 0x01, // 4-octet AS
            0x01, 0x04, 0x00, 0x01, 0x00, 0x01, // MP IPv4 unicast
        ])
    }

    fn open_repr() -> Open {
        Open {
            my_as: AS_TRANS,
            hold_time: 90,
            bgp_id: Ipv4Addr::new(192, 0, 2, 1),
            capabilities: vec![
                Capability::FourOctetAs(4_200_000_001),
                Capability::Multiprotocol {
                    afi: AFI_IPV4,
                    safi: SAFI_UNICAST,
                },
            ],
        }
    }

    /// NOTIFICATION unsupported version (2/1), data: the version we support, 2 octets.
    fn notification_bytes() -> Vec<u8> {
        with_marker(&[0x00, 0x17, 0x03, 0x02, 0x01, 0x00, 0x04])
    }

    /// UPDATE announcing 10.0.0.100/32 from AS 65001 (4-octet AS_PATH), next hop
    /// 192.0.2.1. Attributes 4 + 9 + 7 = 20; 19 + 2 + 2 + 20 + 5 = 48.
    fn announce_bytes() -> Vec<u8> {
        with_marker(&[
            0x00, 0x30, 0x02, // length 48, UPDATE
            0x00, 0x00, // no withdrawn routes
            0x00, 0x14, // path attributes: 20 octets
            0x40, 0x01, 0x01, 0x00, // ORIGIN IGP
            0x40, 0x02, 0x06, 0x02, 0x01, 0x00, 0x00, 0xfd, 0xe9, // AS_PATH [65001]
            0x40, 0x03, 0x04, 0xc0, 0x00, 0x02, 0x01, // NEXT_HOP
            0x20, 0x0a, 0x00, 0x00, 0x64, // NLRI 10.0.0.100/32
        ])
    }

    fn announce_repr() -> Update {
        Update {
            withdrawn: vec![],
            attributes: vec![
                Attribute::Origin(ORIGIN_IGP),
                Attribute::as_path(65001, true),
                Attribute::NextHop(Ipv4Addr::new(192, 0, 2, 1)),
            ],
            nlri: vec!["10.0.0.100/32".parse().unwrap()],
        }
    }

    /// UPDATE withdrawing 10.0.0.100/32: 19 + 2 + 5 + 2 = 28.
    fn withdraw_bytes() -> Vec<u8> {
        with_marker(&[
            0x00, 0x1c, 0x02, // length 28, UPDATE
            0x00, 0x05, 0x20, 0x0a, 0x00, 0x00, 0x64, // withdrawn 10.0.0.100/32
            0x00, 0x00, // no attributes
        ])
    }

    fn withdraw_repr() -> Update {
        Update {
            withdrawn: vec!["10.0.0.100/32".parse().unwrap()],
            ..Update::default()
        }
    }

    /// UPDATE announcing 2001:db8::100/128 via MP_REACH_NLRI, next hop 2001:db8::1.
    /// MP_REACH value 2 + 1 + 1 + 16 + 1 + 17 = 38; attributes 4 + 9 + 41 = 54;
    /// 19 + 2 + 2 + 54 = 77.
    fn mp_reach_bytes() -> Vec<u8> {
        with_marker(&[
            0x00, 0x4d, 0x02, // length 77, UPDATE
            0x00, 0x00, // no withdrawn routes
            0x00, 0x36, // path attributes: 54 octets
            0x40, 0x01, 0x01, 0x00, // ORIGIN IGP
            0x40, 0x02, 0x06, 0x02, 0x01, 0x00, 0x00, 0xfd, 0xe9, // AS_PATH [65001]
            0x80, 0x0e, 0x26, // MP_REACH_NLRI, 38 octets
            0x00, 0x02, 0x01, // AFI IPv6, SAFI unicast
            0x10, // next hop length 16
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // 2001:db8::1
            0x00, // reserved
            0x80, // /128
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, // 2001:db8::100
        ])
    }

    fn mp_reach_repr() -> Update {
        Update {
            withdrawn: vec![],
            attributes: vec![
                Attribute::Origin(ORIGIN_IGP),
                Attribute::as_path(65001, true),
                Attribute::MpReach {
                    next_hop: "2001:db8::1".parse().unwrap(),
                    link_local: None,
                    nlri: vec!["2001:db8::100/128".parse().unwrap()],
                },
            ],
            nlri: vec![],
        }
    }

    fn fixtures() -> Vec<(&'static str, Vec<u8>, Message)> {
        vec![
            ("keepalive", keepalive_bytes(), Message::Keepalive),
            ("open", open_bytes(), Message::Open(open_repr())),
            (
                "notification",
                notification_bytes(),
                Message::Notification(Notification::with_data(2, 1, &[0, 4])),
            ),
            (
                "announce",
                announce_bytes(),
                Message::Update(announce_repr()),
            ),
            (
                "withdraw",
                withdraw_bytes(),
                Message::Update(withdraw_repr()),
            ),
            (
                "mp_reach",
                mp_reach_bytes(),
                Message::Update(mp_reach_repr()),
            ),
        ]
    }

    #[test]
    fn bgp_wire_parse_fixtures() {
        for (name, bytes, repr) in fixtures() {
            assert_eq!(parse(&bytes), Ok((repr, bytes.len())), "{name}");
        }
        assert_eq!(keepalive_bytes().len(), 19);
    }

    #[test]
    fn bgp_wire_emit_fixtures() {
        for (name, bytes, repr) in fixtures() {
            let mut out = Vec::new();
            emit(&repr, &mut out);
            assert_eq!(out, bytes, "{name}");
        }
    }

    #[test]
    fn bgp_wire_open_accessors() {
        let open = open_repr();
        assert_eq!(open.asn(), 4_200_000_001);
        assert!(open.four_octet_as());
        assert!(open.has_family(AFI_IPV4, SAFI_UNICAST));
        assert!(!open.has_family(AFI_IPV6, SAFI_UNICAST));
        let built = Open::new(
            4_200_000_001,
            90,
            Ipv4Addr::new(192, 0, 2, 1),
            &[(AFI_IPV4, SAFI_UNICAST)],
        );
        assert_eq!(built, open);
        let small = Open::new(65001, 9, Ipv4Addr::new(192, 0, 2, 1), &[]);
        assert_eq!(small.my_as, 65001);
        let legacy = Open {
            capabilities: vec![],
            ..small
        };
        assert_eq!(legacy.asn(), 65001);
        assert!(!legacy.four_octet_as());
    }

    #[test]
    fn bgp_wire_two_octet_as_path() {
        assert_eq!(
            Attribute::as_path(65001, false),
            Attribute::AsPath(vec![2, 1, 0xfd, 0xe9])
        );
        assert_eq!(
            Attribute::as_path(4_200_000_001, false),
            Attribute::AsPath(vec![2, 1, 0x5b, 0xa0])
        );
    }

    #[test]
    fn bgp_wire_stream_of_two_messages() {
        let mut stream = announce_bytes();
        stream.extend_from_slice(&keepalive_bytes());
        let (m, used) = parse(&stream).unwrap();
        assert_eq!(m, Message::Update(announce_repr()));
        let (m, used2) = parse(&stream[used..]).unwrap();
        assert_eq!(m, Message::Keepalive);
        assert_eq!(used + used2, stream.len());
    }

    #[test]
    fn bgp_wire_truncated_is_incomplete() {
        for (name, bytes, _) in fixtures() {
            for n in 0..bytes.len() {
                assert_eq!(parse(&bytes[..n]), Err(WireError::Incomplete), "{name} {n}");
            }
        }
    }

    #[test]
    fn bgp_wire_roundtrip_other_messages() {
        let extras = vec![
            Message::Notification(Notification::new(4, 0)),
            Message::Update(Update {
                withdrawn: vec!["10.0.0.0/8".parse().unwrap(), "0.0.0.0/0".parse().unwrap()],
                attributes: vec![
                    Attribute::Origin(ORIGIN_IGP),
                    Attribute::as_path(65001, false),
                    Attribute::NextHop(Ipv4Addr::new(192, 0, 2, 1)),
                    Attribute::Communities(vec![GRACEFUL_SHUTDOWN]),
                    Attribute::MpUnreach(vec!["2001:db8::/33".parse().unwrap()]),
                    Attribute::Other {
                        flags: FLAG_OPTIONAL | FLAG_TRANSITIVE,
                        type_code: 99,
                        value: vec![7; 300],
                    },
                ],
                nlri: vec!["192.0.2.0/25".parse().unwrap()],
            }),
            Message::Update(Update {
                attributes: vec![Attribute::MpReach {
                    next_hop: "2001:db8::1".parse().unwrap(),
                    link_local: Some("fe80::1".parse().unwrap()),
                    nlri: vec!["2001:db8:1::/48".parse().unwrap()],
                }],
                ..Update::default()
            }),
            Message::Open(Open {
                capabilities: vec![Capability::Unknown {
                    code: 2,
                    value: vec![],
                }],
                ..open_repr()
            }),
        ];
        for m in extras {
            let mut out = Vec::new();
            emit(&m, &mut out);
            assert_eq!(parse(&out), Ok((m, out.len())));
        }
    }

    /// `bytes` with the byte at `at` replaced.
    fn patched(mut bytes: Vec<u8>, at: usize, value: u8) -> Vec<u8> {
        bytes[at] = value;
        bytes
    }

    fn expect_error(bytes: &[u8], code: u8, subcode: u8) {
        match parse(bytes) {
            Err(WireError::Malformed(n)) => {
                assert_eq!((n.code, n.subcode), (code, subcode), "{bytes:02x?}")
            }
            other => panic!("{bytes:02x?}: expected {code}/{subcode}, got {other:?}"),
        }
    }

    #[test]
    fn bgp_wire_header_errors() {
        // 1/1: marker not all ones.
        expect_error(&patched(keepalive_bytes(), 3, 0), 1, 1);
        // 1/2: length below 19, above 4096, or wrong for the type.
        expect_error(&with_marker(&[0x00, 0x12, 0x04]), 1, 2);
        expect_error(&with_marker(&[0x10, 0x01, 0x04]), 1, 2);
        expect_error(&with_marker(&[0x00, 0x14, 0x04, 0x00]), 1, 2);
        expect_error(&with_marker(&[0x00, 0x13, 0x01]), 1, 2);
        expect_error(&with_marker(&[0x00, 0x13, 0x03]), 1, 2);
        expect_error(&with_marker(&[0x00, 0x15, 0x02, 0x00, 0x00]), 1, 2);
        // 1/3: unknown type; the data is the type.
        assert_eq!(
            parse(&with_marker(&[0x00, 0x13, 0x09])),
            Err(malformed_data(1, 3, &[9]))
        );
        // The bad length is the data of 1/2.
        assert_eq!(
            parse(&with_marker(&[0x00, 0x12, 0x04])),
            Err(malformed_data(1, 2, &[0x00, 0x12]))
        );
    }

    #[test]
    fn bgp_wire_open_errors() {
        const VERSION_AT: usize = 19;
        const HOLD_AT: usize = 22;
        const ID_AT: usize = 24;
        const PARAM_TYPE_AT: usize = 29;
        assert_eq!(
            parse(&patched(open_bytes(), VERSION_AT, 3)),
            Err(malformed_data(2, 1, &[0, 4]))
        );
        expect_error(&patched(open_bytes(), HOLD_AT + 1, 1), 2, 6);
        expect_error(&patched(open_bytes(), HOLD_AT + 1, 2), 2, 6);
        let mut zero_id = open_bytes();
        zero_id[ID_AT..ID_AT + 4].copy_from_slice(&[0; 4]);
        expect_error(&zero_id, 2, 3);
        expect_error(&patched(open_bytes(), PARAM_TYPE_AT, 1), 2, 4);
        // A capability whose length runs past its parameter: 2/0.
        expect_error(&patched(open_bytes(), 32, 0x20), 2, 0);
        // 4-octet AS capability of the wrong length: 2/0.
        expect_error(&patched(open_bytes(), 32, 0x02), 2, 0);
        // Optional parameters length disagreeing with the message length: 2/0.
        expect_error(&patched(open_bytes(), 28, 0x0d), 2, 0);
        // Hold time 0 and 3 are fine.
        assert!(parse(&patched(open_bytes(), HOLD_AT + 1, 0)).is_ok());
        assert!(parse(&patched(open_bytes(), HOLD_AT + 1, 3)).is_ok());
    }

    #[test]
    fn bgp_wire_update_errors() {
        // Withdrawn routes length past the message: 3/1.
        expect_error(&patched(withdraw_bytes(), 20, 0x09), 3, 1);
        // Total path attribute length past the message: 3/1.
        expect_error(&patched(announce_bytes(), 22, 0x30), 3, 1);
        // An attribute's length past the attribute list: 3/1.
        expect_error(&patched(announce_bytes(), 25, 0x20), 3, 1);
        // A duplicated attribute: 3/1 (AS_PATH's type patched to ORIGIN's).
        expect_error(&patched(announce_bytes(), 28, 0x01), 3, 1);
        // ORIGIN 3: 3/6.
        expect_error(&patched(announce_bytes(), 26, 0x03), 3, 6);
        // NEXT_HOP of 3 octets (and the lengths patched to match): 3/5.
        let mut short_nh = announce_bytes();
        short_nh.remove(42);
        short_nh[17] -= 1;
        short_nh[22] -= 1;
        short_nh[38] = 3;
        expect_error(&short_nh, 3, 5);
        // NLRI /33: 3/10.
        expect_error(&patched(announce_bytes(), 43, 33), 3, 10);
        // Withdrawn /40: 3/10.
        expect_error(&patched(withdraw_bytes(), 21, 40), 3, 10);
        // NLRI without NEXT_HOP (its type changed to an unknown one): 3/3, data 3.
        assert_eq!(
            parse(&patched(announce_bytes(), 37, 0x63)),
            Err(malformed_data(3, 3, &[3]))
        );
        // MP_REACH next hop length 15: 3/1.
        expect_error(&patched(mp_reach_bytes(), 42, 15), 3, 1);
    }

    /// A tiny xorshift64 generator: deterministic, no dependency.
    fn xorshift(state: &mut u64) -> u64 {
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        x
    }

    /// Parses `buf`; what parses must re-emit to bytes that parse back to it
    /// (the fuzz target's property).
    fn check(buf: &[u8]) {
        if let Ok((m, used)) = parse(buf) {
            assert!(used <= buf.len());
            let mut out = Vec::new();
            emit(&m, &mut out);
            assert_eq!(parse(&out).map(|(m2, _)| m2).as_ref(), Ok(&m));
        }
    }

    #[test]
    fn bgp_wire_never_panics() {
        // Every prefix of every fixture, and every fixture with each byte flipped.
        for (_, bytes, _) in fixtures() {
            for n in 0..=bytes.len() {
                check(&bytes[..n]);
            }
            for i in 0..bytes.len() {
                for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                    check(&patched(bytes.clone(), i, v));
                }
            }
        }
        // Random byte soup, half of it behind a valid marker so the parser gets
        // past the header.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..20_000 {
            let len = (xorshift(&mut seed) % 200) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| xorshift(&mut seed) as u8).collect();
            if round % 2 == 0 {
                let mut framed = MARKER.to_vec();
                let total = (HEADER_LEN + buf.len()) as u16;
                framed.extend_from_slice(&total.to_be_bytes());
                framed.push(1 + (xorshift(&mut seed) % 4) as u8);
                framed.append(&mut buf);
                buf = framed;
            }
            check(&buf);
        }
    }
}
