//! UPDATE (RFC 4271 §4.3): withdrawn IPv4 prefixes, path attributes (§5; RFC 1997
//! COMMUNITIES; RFC 4760 MP_REACH_NLRI/MP_UNREACH_NLRI for IPv6 unicast) and IPv4
//! NLRI; the §6.3 error rules.
//!
//! What it does not do: interpret a received route (we accept none), or decide
//! what to announce ([`crate::bgp::session`] does).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{code, malformed, malformed_data, Reader, WireError, AFI_IPV6, AS_TRANS, SAFI_UNICAST};
use crate::bgp::prefix::Prefix;

/// The well-known GRACEFUL_SHUTDOWN community 65535:0 (RFC 8326 §4.1).
pub const GRACEFUL_SHUTDOWN: u32 = 0xffff_0000;

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
        /// Flags as received (the extended-length bit is recomputed by [`super::emit`]).
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
pub(super) fn parse_update(body: &[u8]) -> Result<Update, WireError> {
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

pub(super) fn emit_update(update: &Update, out: &mut Vec<u8>) {
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
