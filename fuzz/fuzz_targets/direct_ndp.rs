//! Fuzz target for direct mode's neighbour-discovery parser
//! (`fulcrum::direct::ndp::NdpRepr::parse`) and the answer built from what it accepts.
//!
//! Owns nothing: the input is an IPv6 packet (what follows the Ethernet header). `parse`
//! must return `Ok` or `Err` and never panic; whatever it accepts, the answer written by
//! `emit_answer` must itself parse back as a valid advertisement.
//! Run with `cargo +nightly fuzz run direct_ndp`.
#![no_main]

use fulcrum::direct::ndp::{self, NdpMessage, NdpRepr};
use libfuzzer_sys::fuzz_target;
use pnet::util::MacAddr;

fuzz_target!(|data: &[u8]| {
    let Ok(nd) = NdpRepr::parse(data) else {
        return;
    };
    if let NdpMessage::Solicit { target, .. } = nd.msg {
        let our = MacAddr(2, 0x99, 0, 0, 0, 0x11);
        if let Some(a) = ndp::answer_for(&nd, MacAddr(2, 0, 0, 0, 0, 1), target) {
            let mut buf = [0u8; ndp::ND_FRAME_LEN];
            let n = ndp::emit_answer(&mut buf, our, &a).expect("the buffer fits an NA");
            let back = NdpRepr::parse(&buf[14..n]).expect("our NA is valid");
            assert!(matches!(back.msg, NdpMessage::Advert { override_: true, .. }));
        }
    }
});
