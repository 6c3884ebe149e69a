//! Errors of the configuration file: each names the file, the line, and — when one key
//! is at fault — the key and its value as written, e.g.
//! `/etc/fulcrum.toml:12: backend = "10.0.0.1": has no port (expected HOST:PORT)`.
//!
//! The loader collects every error it finds (so `fulcrum check` reports them all at
//! once); [`FileErrors`] prints one per line.

use std::fmt;
use std::path::{Path, PathBuf};

/// One error, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    path: PathBuf,
    /// 1-based line; `None` for what has no line (an unreadable file, no service).
    line: Option<usize>,
    /// `key = value` as written, when one key is at fault.
    at: Option<String>,
    /// What is wrong.
    message: String,
}

impl FileError {
    /// An error of the whole file, without a line.
    pub(crate) fn file(path: &Path, message: impl Into<String>) -> Self {
        FileError {
            path: path.to_path_buf(),
            line: None,
            at: None,
            message: message.into(),
        }
    }

    /// An error at a line, not tied to one key.
    pub(crate) fn line(path: &Path, line: usize, message: impl Into<String>) -> Self {
        FileError {
            path: path.to_path_buf(),
            line: Some(line),
            at: None,
            message: message.into(),
        }
    }

    /// An error of `key = value` at a line (`value` as written in the file).
    pub(crate) fn key(
        path: &Path,
        line: usize,
        key: &str,
        value: &str,
        message: impl Into<String>,
    ) -> Self {
        FileError {
            path: path.to_path_buf(),
            line: Some(line),
            at: Some(format!("{} = {}", clip(key), clip(value))),
            message: message.into(),
        }
    }
}

/// Shortens what is quoted from the file, so one huge value cannot flood the terminal.
fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX).collect();
    out.push('…');
    out
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(at) = &self.at {
            write!(f, ": {at}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FileError {}

/// Every error found in one file, in file order (each printed once).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileErrors(pub(crate) Vec<FileError>);

impl FileErrors {
    /// Adds an error unless the same one is already there (a global key's error is
    /// found once per service).
    pub(crate) fn push(&mut self, e: FileError) {
        if !self.0.contains(&e) {
            self.0.push(e);
        }
    }

    /// Whether no error was found.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors.
    pub fn iter(&self) -> impl Iterator<Item = &FileError> {
        self.0.iter()
    }

    /// Sorts by line (errors without a line first), keeping the order of equal lines.
    pub(crate) fn sort(&mut self) {
        self.0.sort_by_key(|e| e.line);
    }
}

impl From<FileError> for FileErrors {
    fn from(e: FileError) -> Self {
        FileErrors(vec![e])
    }
}

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FileErrors {}

/// The 1-based line of byte `offset` in `text` (past the end: the last line).
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_file_line_key_and_value() {
        let p = Path::new("/etc/fulcrum.toml");
        let e = FileError::key(p, 12, "backend", "\"10.0.0.1\"", "has no port");
        assert_eq!(
            e.to_string(),
            "/etc/fulcrum.toml:12: backend = \"10.0.0.1\": has no port"
        );
        assert_eq!(
            FileError::file(p, "no service").to_string(),
            "/etc/fulcrum.toml: no service"
        );
        let long = "x".repeat(500);
        assert!(FileError::key(p, 1, "k", &long, "m").to_string().len() < 120);
    }

    #[test]
    fn lines_count_from_one() {
        let t = "a\nb\nc";
        assert_eq!(line_of(t, 0), 1);
        assert_eq!(line_of(t, 2), 2);
        assert_eq!(line_of(t, 4), 3);
        assert_eq!(line_of(t, 999), 3);
    }
}
