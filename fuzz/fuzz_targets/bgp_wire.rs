//! Fuzz target: the BGP-4 message parser (`fulcrum::bgp::wire::parse`) and a BGP
//! session's byte input (`Session::on_bytes`), as fed by the peer's TCP stream.
//!
//! Every message parsed from the stream must re-emit to bytes that parse back to
//! the same message, and the parser never claims more bytes than it was given.
//! The same bytes then go to a session in OpenSent, in chunks split where the
//! first byte says. Must never panic.
#![no_main]

use std::net::Ipv4Addr;
use std::time::Duration;

use fulcrum::bgp::session::{Config, Session};
use fulcrum::bgp::wire::{emit, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut buf = rest;
    while let Ok((message, used)) = parse(buf) {
        assert!(used >= 19 && used <= buf.len());
        let mut out = Vec::new();
        emit(&message, &mut out);
        assert_eq!(parse(&out).map(|(m, _)| m).as_ref(), Ok(&message));
        buf = &buf[used..];
    }

    let config = Config {
        local_as: 65001,
        peer_as: 65000,
        router_id: Ipv4Addr::new(192, 0, 2, 10),
        hold_time: 9,
        next_hop_v4: Ipv4Addr::new(192, 0, 2, 1),
        next_hop_v6: None,
    };
    let Ok(mut session) = Session::new(config) else {
        return;
    };
    let now = Duration::ZERO;
    session.start(now);
    session.on_connected(now);
    let split = usize::from(split).min(rest.len());
    session.on_bytes(&rest[..split], now);
    session.on_bytes(&rest[split..], Duration::from_secs(1));
    session.on_timeout(Duration::from_secs(10));
    while session.poll_transmit().is_some() {}
    while session.poll_event().is_some() {}
});
