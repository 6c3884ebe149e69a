//! Fuzz target: the control plane's HTTP request parser
//! (`fulcrum::control::http::parse_request`) must never panic, and what it accepts
//! must respect the limits it promises (a body of at most 4 KiB, taken from the input,
//! a method). The first half of the input is parsed too, as the shell re-parses after
//! every read and a read can end anywhere.
#![no_main]

use fulcrum::control::http::{parse_request, Parse, MAX_BODY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Parse::Request(r) = parse_request(data) {
        assert!(r.body.len() <= MAX_BODY);
        assert!(r.body.len() <= data.len());
        assert!(!r.method.is_empty());
    }
    // The shell re-parses after every read: a split anywhere must not panic either.
    let cut = data.len() / 2;
    let _ = parse_request(&data[..cut]);
});
