//! The announced routes of a [`Session`]: the desired set, the set the peer has,
//! and the UPDATEs that move one to the other (RFC 4271 §4.3, §9.2; RFC 4760 for
//! IPv6; RFC 8326 graceful shutdown), split so that each fits in 4096 octets.

use super::{ConfigError, Negotiated, Session, State};
use crate::bgp::prefix::Prefix;
use crate::bgp::wire::{Attribute, Message, Update, GRACEFUL_SHUTDOWN, ORIGIN_IGP};

/// IPv4 prefixes per UPDATE: 700 × 5 octets plus attributes stays under 4096.
const V4_PER_UPDATE: usize = 700;
/// IPv6 prefixes per UPDATE: 200 × 17 octets plus attributes stays under 4096.
const V6_PER_UPDATE: usize = 200;

impl Session {
    /// Sets the prefixes to announce. When Established, UPDATEs for the
    /// difference with what the peer has are queued at once; otherwise they are
    /// sent on reaching Established.
    pub fn set_routes(&mut self, announce: Vec<Prefix>) -> Result<(), ConfigError> {
        if self.config.next_hop_v6.is_none() {
            if let Some(p) = announce.iter().find(|p| !p.is_ipv4()) {
                return Err(ConfigError::NoIpv6NextHop(*p));
            }
        }
        self.desired = announce.into_iter().collect();
        self.sync_routes();
        Ok(())
    }

    /// Withdraws every prefix (the desired set becomes empty).
    pub fn withdraw_all(&mut self) {
        self.desired.clear();
        self.sync_routes();
    }

    /// RFC 8326: re-announces every prefix with the GRACEFUL_SHUTDOWN community
    /// (65535:0) so that the peer moves traffic away before the routes go; later
    /// announcements carry it too. The caller withdraws ([`Session::withdraw_all`])
    /// after a drain delay of its choosing.
    pub fn graceful_shutdown(&mut self) {
        self.graceful = true;
        if let State::Established { neg, .. } = self.state {
            let all: Vec<Prefix> = self.announced.iter().copied().collect();
            self.send_announce(&all, neg);
        }
    }

    /// Queues UPDATEs that bring the peer from `announced` to `desired`.
    pub(super) fn sync_routes(&mut self) {
        let State::Established { neg, .. } = self.state else {
            return;
        };
        let withdraw: Vec<Prefix> = self.announced.difference(&self.desired).copied().collect();
        let announce: Vec<Prefix> = self
            .desired
            .difference(&self.announced)
            .filter(|p| neg.allows(p))
            .copied()
            .collect();
        self.send_withdraw(&withdraw);
        self.send_announce(&announce, neg);
        for p in &withdraw {
            self.announced.remove(p);
        }
        self.announced.extend(announce);
    }

    fn send_withdraw(&mut self, prefixes: &[Prefix]) {
        let (v4, v6): (Vec<Prefix>, Vec<Prefix>) = prefixes.iter().partition(|p| p.is_ipv4());
        for chunk in v4.chunks(V4_PER_UPDATE) {
            self.send(&Message::Update(Update {
                withdrawn: chunk.to_vec(),
                ..Update::default()
            }));
        }
        // RFC 4760 §4: an UPDATE with only MP_UNREACH_NLRI needs no other attribute.
        for chunk in v6.chunks(V6_PER_UPDATE) {
            self.send(&Message::Update(Update {
                attributes: vec![Attribute::MpUnreach(chunk.to_vec())],
                ..Update::default()
            }));
        }
    }

    /// Attributes in type-code order (RFC 4271 §5: SHOULD).
    fn send_announce(&mut self, prefixes: &[Prefix], neg: Negotiated) {
        let (v4, v6): (Vec<Prefix>, Vec<Prefix>) = prefixes.iter().partition(|p| p.is_ipv4());
        let common = |graceful: bool| {
            let mut attrs = vec![
                Attribute::Origin(ORIGIN_IGP),
                Attribute::as_path(self.config.local_as, neg.four_octet_as),
            ];
            if graceful {
                attrs.push(Attribute::Communities(vec![GRACEFUL_SHUTDOWN]));
            }
            attrs
        };
        let mut v4_attrs = common(self.graceful);
        // NEXT_HOP (3) goes before COMMUNITIES (8).
        v4_attrs.insert(2, Attribute::NextHop(self.config.next_hop_v4));
        let mut messages = Vec::new();
        for chunk in v4.chunks(V4_PER_UPDATE) {
            messages.push(Message::Update(Update {
                withdrawn: vec![],
                attributes: v4_attrs.clone(),
                nlri: chunk.to_vec(),
            }));
        }
        if let Some(next_hop) = self.config.next_hop_v6 {
            for chunk in v6.chunks(V6_PER_UPDATE) {
                let mut attributes = common(self.graceful);
                attributes.push(Attribute::MpReach {
                    next_hop,
                    link_local: None,
                    nlri: chunk.to_vec(),
                });
                messages.push(Message::Update(Update {
                    attributes,
                    ..Update::default()
                }));
            }
        }
        for m in &messages {
            self.send(m);
        }
    }
}
