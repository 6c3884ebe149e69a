//! Fuzz target: the agent's task-request parser and the task-report section must
//! never panic on any datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fulcrum::wire::task::TaskRequest::parse(data, b"fuzz-key-0123456789");
    if let Ok(r) = fulcrum::wire::task::Request::new_checked(data) {
        let _ = (r.id(), r.name_lossy());
    }
    let _ = fulcrum::wire::task::Report::parse(data);
});
