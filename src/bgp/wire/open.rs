//! OPEN (RFC 4271 §4.2) and its capabilities (RFC 5492): the 4-octet AS number
//! (RFC 6793) and multiprotocol extensions (RFC 4760); the §6.2 error rules.
//!
//! What it does not do: the peer AS check and hold-time negotiation, which need
//! the session's configuration ([`crate::bgp::session`]).

use std::net::Ipv4Addr;

use super::{code, malformed, malformed_data, Reader, WireError, AS_TRANS, VERSION};

/// Optional parameter type "capabilities" (RFC 5492 §4).
const PARAM_CAPABILITIES: u8 = 2;
const CAP_MULTIPROTOCOL: u8 = 1;
const CAP_FOUR_OCTET_AS: u8 = 65;

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
    /// [`super::emit`] writes them all in one optional parameter.
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

/// RFC 4271 §6.2. A recognised optional parameter that is malformed is 2/0.
pub(super) fn parse_open(body: &[u8]) -> Result<Open, WireError> {
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

pub(super) fn emit_open(open: &Open, out: &mut Vec<u8>) {
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
