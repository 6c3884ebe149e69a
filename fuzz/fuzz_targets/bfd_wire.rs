//! Fuzz target: the BFD control packet parser (`fulcrum::bfd::wire::parse`) and a
//! BFD session's datagram input (`Session::on_datagram`), as fed by the peer's
//! UDP datagrams (RFC 5880 §4.1, RFC 5881).
//!
//! Every packet that parses must re-emit to 24 bytes that parse back to the same
//! packet. The input is then cut into datagrams (the first byte of each chunk is
//! its length) and given to a session at advancing times, with timeouts and
//! transmissions polled in between. Must never panic.
#![no_main]

use std::time::Duration;

use fulcrum::bfd::session::{Config, Session};
use fulcrum::bfd::wire::{emit, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = parse(data) {
        let mut out = [0; 24];
        emit(&packet, &mut out);
        assert_eq!(parse(&out), Ok(packet));
    }

    let config = Config {
        local_discriminator: 1,
        desired_min_tx: Duration::from_millis(100),
        required_min_rx: Duration::from_millis(100),
        detect_mult: 3,
        seed: 1,
    };
    let Ok(mut session) = Session::new(config) else {
        return;
    };
    let mut now = Duration::ZERO;
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        session.on_datagram(datagram, now);
        while session.poll_transmit(now).is_some() {}
        while session.poll_event().is_some() {}
        now += Duration::from_millis(len as u64 * 7);
        session.on_timeout(now);
        rest = tail;
    }
});
