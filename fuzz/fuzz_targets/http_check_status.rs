//! Fuzz target: the HTTP health check's status-line parser
//! (`fulcrum::health::http::parse_status`), which reads whatever a node answers.
//! Must never panic; an accepted status is a three-digit code in 100..=599, and any
//! longer input that starts with a complete accepted line gives the same answer.
#![no_main]

use fulcrum::health::http::parse_status;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(code)) = parse_status(data) {
        assert!((100..=599).contains(&code), "{code}");
        let mut longer = data.to_vec();
        longer.extend_from_slice(b"Server: x\r\n\r\n");
        assert_eq!(parse_status(&longer), Ok(Some(code)));
    }
});
