//! Fuzz target for the failover advert parser (`fulcrum::wire::advert::parse`).
//!
//! Owns nothing: feeds arbitrary bytes to the parser, which must return
//! `Ok` or `Err` and never panic. Does not check the MAC path deeply (the
//! fuzzer cannot forge HMACs); the round trip is covered by unit tests.
//! Run with `cargo +nightly fuzz run ha_wire`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fulcrum::wire::advert::parse(data, b"k");
});
