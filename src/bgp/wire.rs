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
//! Never panics: every read goes through a bounds-checked cursor.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::prefix::Prefix;

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
/// The well-known GRACEFUL_SHUTDOWN community 65535:0 (RFC 8326 §4.1).
pub const GRACEFUL_SHUTDOWN: u32 = 0xffff_0000;

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

/// Optional parameter type "capabilities" (RFC 5492 §4).
const PARAM_CAPABILITIES: u8 = 2;
const CAP_MULTIPROTOCOL: u8 = 1;
const CAP_FOUR_OCTET_AS: u8 = 65;

const ATTR_ORIGIN: u8 = 1;
const ATTR_AS_PATH: u8 = 2;
const ATTR_NEXT_HOP: u8 = 3;
const ATTR_COMMUNITIES: u8 = 8;
const ATTR_MP_REACH: u8 = 14;
const ATTR_MP_UNREACH: u8 = 15;

/// Attribute flag: optional (RFC 4271 §4.3).
pub const FLAG_OPTIONAL: u8 = 0x80;
/// Attribute flag: transitive.
pub const FLAG_TRANSITIVE: u8 = 0x40;
/// Attribute flag: the length is two octets.
pub const FLAG_EXTENDED_LENGTH: u8 = 0x10;

/// AS_PATH segment type AS_SEQUENCE (RFC 4271 §4.3).
const AS_SEQUENCE: u8 = 2;

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

/// An OPEN message as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The 2-octet "My Autonomous System": [`AS_TRANS`] when the AS is > 65535.
    pub my_as: u16,
    /// Seconds; 0 or ≥ 3 (§4.2).
    pub hold_time: u16,
    /// The BGP identifier, non-zero.
    pub bgp_id: Ipv4Addr,
    /// Every capability of every capabilities optional parameter, in order.
    /// [`emit`] writes them all in one optional parameter.
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// Our OPEN: `asn` goes in the 4-octet AS capability, and in `my_as` when it
    /// fits (else [`AS_TRANS`], RFC 6793 §4.1); one multiprotocol capability per
    /// `(afi, safi)`.
    pub fn new(asn: u32, hold_time: u16, bgp_id: Ipv4Addr, families: &[(u16, u8)]) -> Open {
        let mut capabilities = vec![Capability::FourOctetAs(asn)];
        capabilities.extend(
            families
                .iter()
                .map(|&(afi, safi)| Capability::Multiprotocol { afi, safi }),
        );
        Open {
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_id,
            capabilities,
        }
    }

    /// The sender's AS: the 4-octet AS capability's when present, else `my_as`
    /// (RFC 6793 §4.1).
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    /// Whether the sender supports 4-octet AS numbers.
    pub fn four_octet_as(&self) -> bool {
        self.capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)))
    }

    /// Whether the sender announced the multiprotocol capability for `(afi, safi)`.
    pub fn has_family(&self, afi: u16, safi: u8) -> bool {
        self.capabilities
            .contains(&Capability::Multiprotocol { afi, safi })
    }

    /// Whether the sender announced any multiprotocol capability.
    pub fn has_any_family(&self) -> bool {
        self.capabilities
            .iter()
            .any(|c| matches!(c, Capability::Multiprotocol { .. }))
    }
}

/// A capability (RFC 5492 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Multiprotocol extensions (RFC 4760 §8, code 1).
    Multiprotocol {
        /// Address family identifier.
        afi: u16,
        /// Subsequent address family identifier.
        safi: u8,
    },
    /// 4-octet AS numbers (RFC 6793 §3, code 65), with the sender's AS.
    FourOctetAs(u32),
    /// Any other capability, kept so that it round-trips; we ignore it.
    Unknown {
        /// Capability code.
        code: u8,
        /// Capability value.
        value: Vec<u8>,
    },
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

/// An UPDATE message (RFC 4271 §4.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// IPv4 prefixes withdrawn.
    pub withdrawn: Vec<Prefix>,
    /// Path attributes, in the order written.
    pub attributes: Vec<Attribute>,
    /// IPv4 prefixes announced.
    pub nlri: Vec<Prefix>,
}

/// A path attribute (RFC 4271 §4.3, §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// ORIGIN (type 1): 0 IGP, 1 EGP, 2 INCOMPLETE.
    Origin(u8),
    /// AS_PATH (type 2), its segments as opaque bytes (see the module doc).
    AsPath(Vec<u8>),
    /// NEXT_HOP (type 3).
    NextHop(Ipv4Addr),
    /// COMMUNITIES (type 8, RFC 1997).
    Communities(Vec<u32>),
    /// MP_REACH_NLRI (type 14, RFC 4760 §3) for IPv6 unicast.
    MpReach {
        /// The global next hop.
        next_hop: Ipv6Addr,
        /// The link-local next hop, when the next hop field is 32 octets (RFC 2545 §3).
        link_local: Option<Ipv6Addr>,
        /// The prefixes announced.
        nlri: Vec<Prefix>,
    },
    /// MP_UNREACH_NLRI (type 15, RFC 4760 §4) for IPv6 unicast.
    MpUnreach(Vec<Prefix>),
    /// Any other attribute (or MP_* for another family), kept so that it round-trips.
    Other {
        /// Flags as received (the extended-length bit is recomputed by [`emit`]).
        flags: u8,
        /// Type code.
        type_code: u8,
        /// Value.
        value: Vec<u8>,
    },
}

/// ORIGIN IGP (RFC 4271 §5.1.1): we originate the routes.
pub const ORIGIN_IGP: u8 = 0;

impl Attribute {
    /// An AS_PATH of one AS_SEQUENCE holding `asn` (RFC 4271 §5.1.2): 4 octets
    /// wide when the 4-octet AS capability was negotiated, else 2 octets with
    /// [`AS_TRANS`] standing in for an AS > 65535 (RFC 6793 §4.2.2).
    pub fn as_path(asn: u32, four_octet: bool) -> Attribute {
        let mut v = vec![AS_SEQUENCE, 1];
        if four_octet {
            v.extend_from_slice(&asn.to_be_bytes());
        } else {
            v.extend_from_slice(&u16::try_from(asn).unwrap_or(AS_TRANS).to_be_bytes());
        }
        Attribute::AsPath(v)
    }

    fn type_code(&self) -> u8 {
        match self {
            Attribute::Origin(_) => ATTR_ORIGIN,
            Attribute::AsPath(_) => ATTR_AS_PATH,
            Attribute::NextHop(_) => ATTR_NEXT_HOP,
            Attribute::Communities(_) => ATTR_COMMUNITIES,
            Attribute::MpReach { .. } => ATTR_MP_REACH,
            Attribute::MpUnreach(_) => ATTR_MP_UNREACH,
            Attribute::Other { type_code, .. } => *type_code,
        }
    }

    fn flags(&self) -> u8 {
        match self {
            Attribute::Origin(_) | Attribute::AsPath(_) | Attribute::NextHop(_) => FLAG_TRANSITIVE,
            Attribute::Communities(_) => FLAG_OPTIONAL | FLAG_TRANSITIVE,
            Attribute::MpReach { .. } | Attribute::MpUnreach(_) => FLAG_OPTIONAL,
            Attribute::Other { flags, .. } => *flags & !FLAG_EXTENDED_LENGTH,
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
        TYPE_OPEN => Message::Open(parse_open(body)?),
        TYPE_UPDATE => Message::Update(parse_update(body)?),
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

/// RFC 4271 §6.2. A recognised optional parameter that is malformed is 2/0.
fn parse_open(body: &[u8]) -> Result<Open, WireError> {
    let open_error = || malformed(code::OPEN, code::UNSPECIFIC);
    let mut r = Reader::new(body);
    let version = r.u8().ok_or_else(open_error)?;
    if version != VERSION {
        // The data is the largest version we support, as 2 octets (§6.2).
        return Err(malformed_data(
            code::OPEN,
            code::UNSUPPORTED_VERSION,
            &[0, VERSION],
        ));
    }
    let (Some(my_as), Some(hold_time), Some(bgp_id), Some(params_len)) =
        (r.u16(), r.u16(), r.u32(), r.u8())
    else {
        return Err(open_error());
    };
    let params = r.take(usize::from(params_len)).ok_or_else(open_error)?;
    if !r.is_empty() {
        return Err(open_error());
    }
    let mut capabilities = Vec::new();
    let mut p = Reader::new(params);
    while !p.is_empty() {
        let (Some(kind), Some(plen)) = (p.u8(), p.u8()) else {
            return Err(open_error());
        };
        let value = p.take(usize::from(plen)).ok_or_else(open_error)?;
        if kind != PARAM_CAPABILITIES {
            return Err(malformed(code::OPEN, code::UNSUPPORTED_OPTIONAL_PARAMETER));
        }
        parse_capabilities(value, &mut capabilities)?;
    }
    if hold_time == 1 || hold_time == 2 {
        return Err(malformed(code::OPEN, code::UNACCEPTABLE_HOLD_TIME));
    }
    if bgp_id == 0 {
        return Err(malformed(code::OPEN, code::BAD_BGP_IDENTIFIER));
    }
    Ok(Open {
        my_as,
        hold_time,
        bgp_id: Ipv4Addr::from(bgp_id),
        capabilities,
    })
}

fn parse_capabilities(value: &[u8], out: &mut Vec<Capability>) -> Result<(), WireError> {
    let open_error = || malformed(code::OPEN, code::UNSPECIFIC);
    let mut c = Reader::new(value);
    while !c.is_empty() {
        let (Some(code), Some(clen)) = (c.u8(), c.u8()) else {
            return Err(open_error());
        };
        let v = c.take(usize::from(clen)).ok_or_else(open_error)?;
        let mut vr = Reader::new(v);
        let cap = match code {
            CAP_FOUR_OCTET_AS => {
                let asn = vr.u32().filter(|_| clen == 4).ok_or_else(open_error)?;
                Capability::FourOctetAs(asn)
            }
            CAP_MULTIPROTOCOL => {
                let (Some(afi), Some(_reserved), Some(safi)) = (vr.u16(), vr.u8(), vr.u8()) else {
                    return Err(open_error());
                };
                if clen != 4 {
                    return Err(open_error());
                }
                Capability::Multiprotocol { afi, safi }
            }
            _ => Capability::Unknown {
                code,
                value: v.to_vec(),
            },
        };
        out.push(cap);
    }
    Ok(())
}

/// Decodes a run of `(length, prefix octets)` (RFC 4271 §4.3, RFC 4760 §5);
/// a length too long for the family is 3/10 ("invalid network field"), a run
/// cut short is `truncated`.
fn parse_prefixes(
    buf: &[u8],
    v6: bool,
    truncated: fn() -> WireError,
) -> Result<Vec<Prefix>, WireError> {
    let mut out = Vec::new();
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let len = r.u8().ok_or_else(truncated)?;
        if len > if v6 { 128 } else { 32 } {
            return Err(invalid_network());
        }
        let bytes = r.take(usize::from(len).div_ceil(8)).ok_or_else(truncated)?;
        let addr = if v6 {
            let mut a = [0u8; 16];
            let dst = a.get_mut(..bytes.len()).ok_or_else(invalid_network)?;
            dst.copy_from_slice(bytes);
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            let mut a = [0u8; 4];
            let dst = a.get_mut(..bytes.len()).ok_or_else(invalid_network)?;
            dst.copy_from_slice(bytes);
            IpAddr::V4(Ipv4Addr::from(a))
        };
        out.push(Prefix::truncating(addr, len).ok_or_else(invalid_network)?);
    }
    Ok(out)
}

fn invalid_network() -> WireError {
    malformed(code::UPDATE, code::INVALID_NETWORK_FIELD)
}

fn malformed_attribute_list() -> WireError {
    malformed(code::UPDATE, code::MALFORMED_ATTRIBUTE_LIST)
}

/// RFC 4271 §6.3: lengths that overrun the message or a duplicated attribute
/// are 3/1; a well-known attribute of the wrong length 3/5; a bad ORIGIN 3/6;
/// NLRI without ORIGIN, AS_PATH or NEXT_HOP 3/3.
fn parse_update(body: &[u8]) -> Result<Update, WireError> {
    let mut r = Reader::new(body);
    let withdrawn_len = r.u16().ok_or_else(malformed_attribute_list)?;
    let withdrawn = r
        .take(usize::from(withdrawn_len))
        .ok_or_else(malformed_attribute_list)?;
    let attrs_len = r.u16().ok_or_else(malformed_attribute_list)?;
    let attrs = r
        .take(usize::from(attrs_len))
        .ok_or_else(malformed_attribute_list)?;
    let nlri = r.buf;

    let withdrawn = parse_prefixes(withdrawn, false, malformed_attribute_list)?;
    let mut attributes: Vec<Attribute> = Vec::new();
    let mut a = Reader::new(attrs);
    while !a.is_empty() {
        let (Some(flags), Some(type_code)) = (a.u8(), a.u8()) else {
            return Err(malformed_attribute_list());
        };
        let len = if flags & FLAG_EXTENDED_LENGTH != 0 {
            a.u16().map(usize::from)
        } else {
            a.u8().map(usize::from)
        }
        .ok_or_else(malformed_attribute_list)?;
        let value = a.take(len).ok_or_else(malformed_attribute_list)?;
        if attributes.iter().any(|x| x.type_code() == type_code) {
            return Err(malformed_attribute_list());
        }
        attributes.push(parse_attribute(flags, type_code, value)?);
    }
    let nlri = parse_prefixes(nlri, false, invalid_network)?;
    if !nlri.is_empty() {
        for needed in [ATTR_ORIGIN, ATTR_AS_PATH, ATTR_NEXT_HOP] {
            if !attributes.iter().any(|x| x.type_code() == needed) {
                return Err(malformed_data(
                    code::UPDATE,
                    code::MISSING_WELL_KNOWN_ATTRIBUTE,
                    &[needed],
                ));
            }
        }
    }
    Ok(Update {
        withdrawn,
        attributes,
        nlri,
    })
}

fn parse_attribute(flags: u8, type_code: u8, value: &[u8]) -> Result<Attribute, WireError> {
    let length_error = || malformed(code::UPDATE, code::ATTRIBUTE_LENGTH_ERROR);
    let mut r = Reader::new(value);
    let other = || Attribute::Other {
        flags: flags & !FLAG_EXTENDED_LENGTH,
        type_code,
        value: value.to_vec(),
    };
    Ok(match type_code {
        ATTR_ORIGIN => {
            let origin = r
                .u8()
                .filter(|_| value.len() == 1)
                .ok_or_else(length_error)?;
            if origin > 2 {
                return Err(malformed_data(code::UPDATE, code::INVALID_ORIGIN, value));
            }
            Attribute::Origin(origin)
        }
        ATTR_AS_PATH => Attribute::AsPath(value.to_vec()),
        ATTR_NEXT_HOP => {
            let nh = r
                .u32()
                .filter(|_| value.len() == 4)
                .ok_or_else(length_error)?;
            Attribute::NextHop(Ipv4Addr::from(nh))
        }
        ATTR_COMMUNITIES => {
            if value.len() % 4 != 0 {
                return Err(length_error());
            }
            let mut communities = Vec::with_capacity(value.len() / 4);
            while let Some(c) = r.u32() {
                communities.push(c);
            }
            Attribute::Communities(communities)
        }
        ATTR_MP_REACH => {
            let (Some(afi), Some(safi)) = (r.u16(), r.u8()) else {
                return Err(malformed_attribute_list());
            };
            if afi != AFI_IPV6 || safi != SAFI_UNICAST {
                return Ok(other());
            }
            let nh_len = r.u8().ok_or_else(malformed_attribute_list)?;
            let nh = r
                .take(usize::from(nh_len))
                .ok_or_else(malformed_attribute_list)?;
            let (next_hop, link_local) = match nh_len {
                16 => (ipv6(nh).ok_or_else(malformed_attribute_list)?, None),
                32 => (
                    ipv6(nh.get(..16).unwrap_or_default()).ok_or_else(malformed_attribute_list)?,
                    Some(
                        ipv6(nh.get(16..).unwrap_or_default())
                            .ok_or_else(malformed_attribute_list)?,
                    ),
                ),
                _ => return Err(malformed_attribute_list()),
            };
            // One reserved octet (RFC 4760 §3).
            r.u8().ok_or_else(malformed_attribute_list)?;
            let nlri = parse_prefixes(r.buf, true, malformed_attribute_list)?;
            Attribute::MpReach {
                next_hop,
                link_local,
                nlri,
            }
        }
        ATTR_MP_UNREACH => {
            let (Some(afi), Some(safi)) = (r.u16(), r.u8()) else {
                return Err(malformed_attribute_list());
            };
            if afi != AFI_IPV6 || safi != SAFI_UNICAST {
                return Ok(other());
            }
            Attribute::MpUnreach(parse_prefixes(r.buf, true, malformed_attribute_list)?)
        }
        _ => other(),
    })
}

fn ipv6(b: &[u8]) -> Option<Ipv6Addr> {
    let a: [u8; 16] = b.try_into().ok()?;
    Some(Ipv6Addr::from(a))
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
            emit_open(open, out);
        }
        Message::Update(update) => {
            out.push(TYPE_UPDATE);
            emit_update(update, out);
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

fn emit_open(open: &Open, out: &mut Vec<u8>) {
    out.push(VERSION);
    out.extend_from_slice(&open.my_as.to_be_bytes());
    out.extend_from_slice(&open.hold_time.to_be_bytes());
    out.extend_from_slice(&open.bgp_id.octets());
    let mut caps = Vec::new();
    for cap in &open.capabilities {
        match cap {
            Capability::Multiprotocol { afi, safi } => {
                caps.extend_from_slice(&[CAP_MULTIPROTOCOL, 4]);
                caps.extend_from_slice(&afi.to_be_bytes());
                caps.extend_from_slice(&[0, *safi]);
            }
            Capability::FourOctetAs(asn) => {
                caps.extend_from_slice(&[CAP_FOUR_OCTET_AS, 4]);
                caps.extend_from_slice(&asn.to_be_bytes());
            }
            Capability::Unknown { code, value } => {
                caps.push(*code);
                caps.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
                caps.extend_from_slice(value);
            }
        }
    }
    if caps.is_empty() {
        out.push(0);
    } else {
        // One capabilities optional parameter holding them all (RFC 5492 §4).
        let clen = u8::try_from(caps.len()).unwrap_or(u8::MAX);
        out.push(clen.saturating_add(2));
        out.extend_from_slice(&[PARAM_CAPABILITIES, clen]);
        out.extend_from_slice(&caps);
    }
}

fn emit_prefixes(prefixes: &[Prefix], out: &mut Vec<u8>) {
    for p in prefixes {
        out.push(p.prefix_len());
        let n = usize::from(p.prefix_len()).div_ceil(8);
        match p.addr() {
            IpAddr::V4(a) => out.extend_from_slice(a.octets().get(..n).unwrap_or_default()),
            IpAddr::V6(a) => out.extend_from_slice(a.octets().get(..n).unwrap_or_default()),
        }
    }
}

fn emit_update(update: &Update, out: &mut Vec<u8>) {
    let mut withdrawn = Vec::new();
    emit_prefixes(&update.withdrawn, &mut withdrawn);
    out.extend_from_slice(
        &u16::try_from(withdrawn.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&withdrawn);
    let mut attrs = Vec::new();
    for attr in &update.attributes {
        emit_attribute(attr, &mut attrs);
    }
    out.extend_from_slice(&u16::try_from(attrs.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&attrs);
    emit_prefixes(&update.nlri, out);
}

fn emit_attribute(attr: &Attribute, out: &mut Vec<u8>) {
    let mut value = Vec::new();
    match attr {
        Attribute::Origin(o) => value.push(*o),
        Attribute::AsPath(v) => value.extend_from_slice(v),
        Attribute::NextHop(nh) => value.extend_from_slice(&nh.octets()),
        Attribute::Communities(cs) => {
            for c in cs {
                value.extend_from_slice(&c.to_be_bytes());
            }
        }
        Attribute::MpReach {
            next_hop,
            link_local,
            nlri,
        } => {
            value.extend_from_slice(&AFI_IPV6.to_be_bytes());
            value.push(SAFI_UNICAST);
            value.push(if link_local.is_some() { 32 } else { 16 });
            value.extend_from_slice(&next_hop.octets());
            if let Some(ll) = link_local {
                value.extend_from_slice(&ll.octets());
            }
            value.push(0);
            emit_prefixes(nlri, &mut value);
        }
        Attribute::MpUnreach(withdrawn) => {
            value.extend_from_slice(&AFI_IPV6.to_be_bytes());
            value.push(SAFI_UNICAST);
            emit_prefixes(withdrawn, &mut value);
        }
        Attribute::Other { value: v, .. } => value.extend_from_slice(v),
    }
    let flags = attr.flags();
    match u8::try_from(value.len()) {
        Ok(len) => out.extend_from_slice(&[flags, attr.type_code(), len]),
        Err(_) => {
            out.extend_from_slice(&[flags | FLAG_EXTENDED_LENGTH, attr.type_code()]);
            out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        }
    }
    out.extend_from_slice(&value);
}

#[cfg(test)]
mod tests {
    use super::*;

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
