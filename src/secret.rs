//! Shared secrets: the failover key, the node agents' key, the HTTP bearer token.
//!
//! One type, [`Secret`], whose `Debug` never shows the bytes, and one reader with one set
//! of rules for every secret file:
//! - the file must not be readable or writable by group or others (as ssh refuses a
//!   private key with such a mode): `chmod 600 FILE`;
//! - at most [`MAX_KEY_LEN`] bytes (a larger file is refused before it is read);
//! - one trailing newline (`\n` or `\r\n`) is dropped;
//! - at least [`MIN_KEY_LEN`] bytes are left.
//!
//! Errors name the file, never the secret.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Shortest accepted secret, in bytes.
pub const MIN_KEY_LEN: usize = 16;
/// Longest accepted secret, in bytes.
pub const MAX_KEY_LEN: usize = 4096;

/// A secret's bytes. `Debug` prints only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The secret bytes (to key an HMAC or compare a token).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes, redacted)", self.0.len())
    }
}

/// Reads and checks a secret file; `flag` names it in errors (`--ha-key-file "/x": …`).
pub fn read(flag: &str, path: &Path) -> Result<Secret, String> {
    read_file(path).map_err(|e| format!("{flag} {e}"))
}

/// Reads and checks a secret file; errors name the file (`"/x": …`), for a caller (a
/// clap value parser) that adds the flag itself.
pub fn read_file(path: &Path) -> Result<Secret, String> {
    read_unnamed(path).map_err(|e| format!("\"{}\": {e}", path.display()))
}

fn read_unnamed(path: &Path) -> Result<Secret, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "readable by group or others (mode {mode:04o}); a secret file must be 0600: chmod 600 {}",
            path.display()
        ));
    }
    if meta.len() > MAX_KEY_LEN as u64 + 2 {
        return Err(format!(
            "{} bytes is not a key (at most {MAX_KEY_LEN})",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    check(bytes)
}

/// Applies the rules to a secret's bytes.
pub fn check(mut bytes: Vec<u8>) -> Result<Secret, String> {
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
    Ok(Secret(bytes))
}

/// Writes a secret file with mode 0600, as an operator would (for tests elsewhere).
#[cfg(test)]
pub(crate) fn write_private(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, contents: &str, mode: u32) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("fulcrum-secret-{}-{name}", std::process::id()));
        write_private(&p, contents);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn rules() {
        assert!(check(b"0123456789abcdef\n".to_vec()).is_ok());
        assert_eq!(
            check(b"0123456789abcdef\r\n".to_vec()).unwrap().bytes(),
            b"0123456789abcdef"
        );
        let e = check(b"short\n".to_vec()).unwrap_err();
        assert!(e.contains("5 bytes") && e.contains("16"), "{e}");
        assert!(check(vec![b'k'; MAX_KEY_LEN + 1]).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = check(vec![b'k'; 32]).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains("kkkk"), "{shown}");
        assert!(shown.contains("32 bytes"), "{shown}");
    }

    #[test]
    fn secret_file_readable_by_others_is_refused() {
        let p = temp("open", "0123456789abcdef0123\n", 0o644);
        let e = read("--http-token-file", &p).unwrap_err();
        assert!(e.contains("--http-token-file"), "{e}");
        assert!(e.contains("0644") && e.contains("chmod 600"), "{e}");
        assert!(!e.contains("0123456789abcdef"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read("--x", &p).unwrap_err().contains("0640"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read("--x", &p).unwrap().bytes(), b"0123456789abcdef0123");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn missing_file_is_named() {
        let e = read("--agent-key-file", Path::new("/nonexistent/fulcrum-key")).unwrap_err();
        assert!(
            e.contains("--agent-key-file") && e.contains("/nonexistent/fulcrum-key"),
            "{e}"
        );
    }
}
