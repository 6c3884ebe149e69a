//! Counted nouns for log lines and replies: `1 node`, `2 nodes`.
//!
//! Only regular English plurals (add `s`), which is all fulcrum's messages need.

use std::fmt;

/// `count` and `noun`, the noun in the plural unless the count is 1. Formats without
/// allocating: `format!("{}", plural(n, "connection"))`.
pub fn plural(count: impl Into<u64>, noun: &str) -> Plural<'_> {
    Plural {
        count: count.into(),
        noun,
    }
}

/// See [`plural`].
#[derive(Debug, Clone, Copy)]
pub struct Plural<'a> {
    count: u64,
    noun: &'a str,
}

impl fmt::Display for Plural<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.count == 1 { "" } else { "s" };
        write!(f, "{} {}{s}", self.count, self.noun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_node_two_nodes() {
        assert_eq!(plural(1u32, "node").to_string(), "1 node");
        assert_eq!(plural(0u32, "node").to_string(), "0 nodes");
        assert_eq!(plural(2u64, "connection").to_string(), "2 connections");
    }
}
