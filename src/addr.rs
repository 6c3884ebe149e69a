//! Socket addresses as operators write them: literal listen addresses, and HOST:PORT
//! names resolved once at start. Used by every subcommand's flags.

use std::net::{SocketAddr, ToSocketAddrs};

/// Parses a listen address (a literal IP:PORT; names are not resolved for listeners).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("\"{s}\" is not IP:PORT (IPv6 as [::1]:80)"))
}

/// Resolves HOST:PORT to one address (the first the resolver returns).
pub fn resolve(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    if !s.contains(':') {
        return Err(format!("\"{s}\" has no port (expected HOST:PORT)"));
    }
    let mut it = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve \"{s}\": {e}"))?;
    it.next()
        .ok_or_else(|| format!("cannot resolve \"{s}\": no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_needs_a_literal_address() {
        assert_eq!(
            parse_listen("127.0.0.1:80"),
            Ok("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(parse_listen("[::1]:80"), Ok("[::1]:80".parse().unwrap()));
        assert!(parse_listen("localhost:80").is_err());
        assert!(parse_listen("127.0.0.1").is_err());
    }

    #[test]
    fn resolve_names_a_missing_port() {
        assert_eq!(resolve("127.0.0.1:9"), Ok("127.0.0.1:9".parse().unwrap()));
        assert!(resolve("localhost").unwrap_err().contains("no port"));
    }
}
