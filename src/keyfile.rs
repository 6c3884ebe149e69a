//! Shared-secret files: the failover key, the node agents' key, the HTTP bearer token.
//!
//! One reader and one set of rules for all of them: at most [`MAX_KEY_LEN`] bytes (a
//! larger file is refused before it is read), one trailing newline (`\n` or `\r\n`)
//! dropped, at least [`MIN_KEY_LEN`] bytes left. Errors name the file, never the key.

use std::path::Path;

/// Shortest accepted key, in bytes.
pub const MIN_KEY_LEN: usize = 16;
/// Longest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 4096;

/// Reads and checks a key file.
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("\"{shown}\": {e}"))?;
    if meta.len() > MAX_KEY_LEN as u64 + 2 {
        return Err(format!(
            "\"{shown}\": {} bytes is not a key (at most {MAX_KEY_LEN})",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("\"{shown}\": {e}"))?;
    check(bytes).map_err(|e| format!("\"{shown}\": {e}"))
}

/// Applies the rules to a key's bytes.
pub fn check(mut bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.len() < MIN_KEY_LEN {
        return Err(format!(
            "key is {} bytes, need at least {MIN_KEY_LEN} (e.g. `head -c 32 /dev/urandom | base64 > FILE`)",
            bytes.len()
        ));
    }
    if bytes.len() > MAX_KEY_LEN {
        return Err(format!("key is longer than {MAX_KEY_LEN} bytes"));
    }
    Ok(bytes)
}
