//! Adds and removes the VIP on the interface, and reads the link state, through
//! rtnetlink.
//!
//! What it owns: one `NETLINK_ROUTE` socket (from `netlink-sys`, used synchronously:
//! the kernel answers address and link requests before `send` returns, and a 1 s
//! receive timeout bounds the wait anyway) and the request/ack encoding (from
//! `netlink-packet-route`), split into pure functions so they are unit-tested without
//! privileges.
//!
//! Idempotent by design: adding an address that is already there and removing one that
//! is not are reported as [`Change::Unchanged`], not as errors, so a restart after a
//! crash and a repeated release both just work.
//!
//! What it does not do: decide when (that is [`crate::ha::machine`]), or announce the
//! address ([`crate::ha::garp`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::ha::config::Vip;

/// Longest wait for the kernel's answer to one request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// Messages read while looking for the answer to one request (stray multicast
/// or stale replies are skipped, boundedly).
const MAX_REPLIES: usize = 16;

/// What a request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The address was added or removed.
    Done,
    /// Nothing to do: it was already there (add) or already gone (remove).
    Unchanged,
}

/// A route-netlink socket for one interface.
pub struct Netlink {
    socket: Socket,
    index: u32,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens the socket for the interface with this index.
    pub fn open(index: u32) -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as _, 0),
        )
        .map_err(io::Error::from)?;
        Ok(Netlink {
            socket,
            index,
            seq: 0,
            buf: vec![0; 16 * 1024],
        })
    }

    /// Adds the VIP (RTM_NEWADDR with NLM_F_EXCL); already present is `Unchanged`.
    pub fn add(&mut self, vip: Vip) -> io::Result<Change> {
        let seq = self.next_seq();
        let req = address_request(AddressOp::Add, self.index, vip, seq);
        match self.request(&req, seq) {
            Ok(_) => Ok(Change::Done),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(Change::Unchanged),
            Err(e) => Err(e),
        }
    }

    /// Removes the VIP whatever its prefix length; absent is `Unchanged`.
    pub fn remove(&mut self, vip: Vip) -> io::Result<Change> {
        let seq = self.next_seq();
        let req = address_request(AddressOp::Remove, self.index, vip, seq);
        match self.request(&req, seq) {
            Ok(_) => Ok(Change::Done),
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(Change::Unchanged),
            Err(e) => Err(e),
        }
    }

    /// Whether the interface is administratively up with carrier (IFF_UP and
    /// IFF_LOWER_UP), read with RTM_GETLINK.
    pub fn link_up(&mut self) -> io::Result<bool> {
        let seq = self.next_seq();
        let req = link_request(self.index, seq);
        let reply = self.request(&req, seq)?;
        reply.ok_or_else(|| io::Error::other("RTM_GETLINK: no link in the reply"))
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Sends one request and reads until its ack/error (or a link reply for GETLINK).
    fn request(&mut self, req: &[u8], seq: u32) -> io::Result<Option<bool>> {
        self.socket.send(req, 0)?;
        for _ in 0..MAX_REPLIES {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            let data = self.buf.get(..n).unwrap_or(&[]);
            match scan_replies(data, seq) {
                NetlinkReply::Ack => return Ok(None),
                NetlinkReply::Error(code) if code == libc::EPERM || code == libc::EACCES => {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "{}: changing addresses needs CAP_NET_ADMIN: run as root or \
                             setcap cap_net_admin,cap_net_raw=+ep $(command -v fulcrum)",
                            io::Error::from_raw_os_error(code)
                        ),
                    ))
                }
                NetlinkReply::Error(code) => return Err(io::Error::from_raw_os_error(code)),
                NetlinkReply::Link(up) => return Ok(Some(up)),
                NetlinkReply::None => {}
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no netlink answer to our request",
        ))
    }
}

/// Which address request to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressOp {
    /// RTM_NEWADDR, create, fail if it exists.
    Add,
    /// RTM_DELADDR.
    Remove,
}

/// The bytes of an RTM_NEWADDR/RTM_DELADDR request for `vip` on interface `index`.
///
/// Add sets IFA_LOCAL and IFA_ADDRESS (as `ip addr add` does); remove sets only
/// IFA_LOCAL, so the kernel matches the address whatever prefix length a previous run
/// gave it. An IPv6 address is added `nodad` (IFA_F_NODAD, as `ip addr add … nodad`):
/// duplicate address detection (RFC 4862 §5.4) would keep it tentative — unusable as a
/// source, not answered for — for a second or more, the whole point of a fast takeover;
/// the pair's election is what keeps the address unique.
pub fn address_request(op: AddressOp, index: u32, vip: Vip, seq: u32) -> Vec<u8> {
    let mut msg = AddressMessage::default();
    msg.header.family = match vip.addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.prefix_len = vip.prefix;
    msg.header.scope = AddressScope::Universe;
    msg.header.index = index;
    if vip.addr.is_ipv6() && op == AddressOp::Add {
        msg.header.flags = AddressHeaderFlags::Nodad;
    }
    let ip = vip.addr;
    msg.attributes.push(AddressAttribute::Local(ip));
    let (payload, flags) = match op {
        AddressOp::Add => {
            msg.attributes.push(AddressAttribute::Address(ip));
            (
                RouteNetlinkMessage::NewAddress(msg),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            )
        }
        AddressOp::Remove => (
            RouteNetlinkMessage::DelAddress(msg),
            NLM_F_REQUEST | NLM_F_ACK,
        ),
    };
    serialize(payload, flags, seq)
}

/// The bytes of an RTM_GETLINK request for interface `index`.
pub fn link_request(index: u32, seq: u32) -> Vec<u8> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    serialize(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST, seq)
}

fn serialize(payload: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(payload));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    // `finalize` made the header length match `buffer_len`, which is what
    // `serialize` requires (it panics only on a too-small buffer).
    packet.serialize(&mut buf[..]);
    buf
}

/// What one received datagram says about request `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetlinkReply {
    /// An NLMSG_ERROR with code 0.
    Ack,
    /// An NLMSG_ERROR with this (positive) errno.
    Error(i32),
    /// An RTM_NEWLINK answer: whether the link is up with carrier.
    Link(bool),
    /// Nothing about `seq` (another message, or unparsable bytes).
    None,
}

/// Walks the netlink messages in one datagram and reports the first about `seq`.
/// Never panics on malformed input.
pub fn scan_replies(mut data: &[u8], seq: u32) -> NetlinkReply {
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            return NetlinkReply::None;
        }
        let (one, rest) = data.split_at(len);
        if let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(one) {
            if msg.header.sequence_number == seq {
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => NetlinkReply::Ack,
                            Some(c) => NetlinkReply::Error(c.get().saturating_abs()),
                        }
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                        let f = link.header.flags;
                        return NetlinkReply::Link(
                            f.contains(LinkFlags::Up) && f.contains(LinkFlags::LowerUp),
                        );
                    }
                    _ => {}
                }
            }
        }
        // Messages are 4-byte aligned (NLMSG_ALIGN).
        let pad = (4 - len % 4) % 4;
        data = rest.get(pad..).unwrap_or(&[]);
    }
    NetlinkReply::None
}

/// The IPv4 addresses of an interface other than `exclude` (the VIPs), in the order
/// the system lists them.
pub fn own_ipv4(iface: &pnet::datalink::NetworkInterface, exclude: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    iface
        .ips
        .iter()
        .filter_map(|n| match n.ip() {
            IpAddr::V4(a) if !exclude.contains(&a) => Some(a),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip() -> Vip {
        Vip {
            addr: Ipv4Addr::new(10, 99, 0, 100).into(),
            prefix: 24,
        }
    }

    fn parse(bytes: &[u8]) -> NetlinkMessage<RouteNetlinkMessage> {
        NetlinkMessage::deserialize(bytes).unwrap()
    }

    #[test]
    fn add_request_carries_local_address_prefix_and_excl() {
        let req = address_request(AddressOp::Add, 7, vip(), 42);
        let msg = parse(&req);
        assert_eq!(msg.header.sequence_number, 42);
        assert_eq!(
            msg.header.flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        );
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) = msg.payload else {
            panic!("not RTM_NEWADDR")
        };
        assert_eq!(a.header.index, 7);
        assert_eq!(a.header.prefix_len, 24);
        assert_eq!(a.header.family, AddressFamily::Inet);
        let ip = vip().addr;
        assert!(a.attributes.contains(&AddressAttribute::Local(ip)));
        assert!(a.attributes.contains(&AddressAttribute::Address(ip)));
        assert_eq!(
            a.header.flags,
            AddressHeaderFlags::empty(),
            "IPv4: no flags"
        );
    }

    #[test]
    fn ipv6_add_is_inet6_and_nodad() {
        let v6 = Vip {
            addr: "fd99::100".parse().unwrap(),
            prefix: 64,
        };
        let msg = parse(&address_request(AddressOp::Add, 7, v6, 1));
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) = msg.payload else {
            panic!("not RTM_NEWADDR")
        };
        assert_eq!(a.header.family, AddressFamily::Inet6);
        assert_eq!(a.header.prefix_len, 64);
        assert_eq!(a.header.flags, AddressHeaderFlags::Nodad);
        assert!(a.attributes.contains(&AddressAttribute::Local(v6.addr)));
        let msg = parse(&address_request(AddressOp::Remove, 7, v6, 2));
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(a)) = msg.payload else {
            panic!("not RTM_DELADDR")
        };
        assert_eq!(a.header.family, AddressFamily::Inet6);
        assert_eq!(a.attributes, vec![AddressAttribute::Local(v6.addr)]);
    }

    #[test]
    fn remove_request_matches_on_local_only() {
        let msg = parse(&address_request(AddressOp::Remove, 7, vip(), 3));
        assert_eq!(msg.header.flags, NLM_F_REQUEST | NLM_F_ACK);
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(a)) = msg.payload else {
            panic!("not RTM_DELADDR")
        };
        assert_eq!(a.attributes, vec![AddressAttribute::Local(vip().addr)]);
    }

    fn error_reply(seq: u32, code: i32) -> Vec<u8> {
        // nlmsghdr (16) + error code (4) + the request's header (16).
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&code.to_ne_bytes());
        b.extend_from_slice(&[0u8; 16]);
        b
    }

    #[test]
    fn replies_are_matched_by_sequence() {
        assert_eq!(scan_replies(&error_reply(5, 0), 5), NetlinkReply::Ack);
        assert_eq!(
            scan_replies(&error_reply(5, -libc::EEXIST), 5),
            NetlinkReply::Error(libc::EEXIST)
        );
        assert_eq!(scan_replies(&error_reply(4, 0), 5), NetlinkReply::None);
        let mut two = error_reply(4, -1);
        two.extend(error_reply(5, -libc::EADDRNOTAVAIL));
        assert_eq!(
            scan_replies(&two, 5),
            NetlinkReply::Error(libc::EADDRNOTAVAIL)
        );
    }

    #[test]
    fn garbage_replies_do_not_panic() {
        assert_eq!(scan_replies(&[], 1), NetlinkReply::None);
        assert_eq!(scan_replies(&[0xff; 15], 1), NetlinkReply::None);
        assert_eq!(scan_replies(&[0xff; 64], 1), NetlinkReply::None);
        let mut short = error_reply(1, 0);
        short[0] = 200;
        assert_eq!(scan_replies(&short, 1), NetlinkReply::None);
        let mut tiny = error_reply(1, 0);
        tiny[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert_eq!(scan_replies(&tiny, 1), NetlinkReply::None);
        let mut truncated = error_reply(1, 0);
        truncated.truncate(20);
        truncated[0..4].copy_from_slice(&20u32.to_ne_bytes());
        let _ = scan_replies(&truncated, 1);
    }

    #[test]
    fn link_request_names_the_index() {
        let msg = parse(&link_request(9, 1));
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetLink(l)) = msg.payload else {
            panic!("not RTM_GETLINK")
        };
        assert_eq!(l.header.index, 9);
    }
}
