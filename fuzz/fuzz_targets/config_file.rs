//! Fuzz target: arbitrary bytes as a configuration file. The structural stage (TOML,
//! keys, places, types) and the command lines it builds must never panic. Validation
//! is left out: it would resolve backend names and read the key files a file names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fulcrum::config_file::fuzz_structure(data);
});
