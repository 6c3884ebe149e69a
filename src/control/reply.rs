//! A control command's answer, as every front end (Unix socket, HTTP, failover sync)
//! and every executor (node commands, rollouts, windows) passes it on.

/// A command's answer: body lines, and whether it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Refused (`error: …`) or not.
    pub ok: bool,
    /// Text, without a trailing blank line.
    pub body: String,
}

impl Reply {
    /// A success with this text.
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply {
            ok: true,
            body: body.into(),
        }
    }
    /// A refusal.
    pub fn error(msg: impl std::fmt::Display) -> Reply {
        Reply {
            ok: false,
            body: format!("error: {msg}"),
        }
    }
}
