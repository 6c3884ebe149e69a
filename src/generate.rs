//! `fulcrum completions` and `fulcrum man`: shell completions and roff man pages,
//! generated from the clap [`Command`] that parses the flags, so they cannot drift from
//! them.
//!
//! It writes to any [`Write`] and takes the command as a value: it does not import
//! [`crate::cli`] (the binary hands it `Cli::command()`), so the CLI layer, which names
//! these subcommands, does not import its own user. It does not install files; where
//! they go is in `docs/packaging.md`.

use std::fmt;
use std::io::{self, Write};

use clap::Command;
use clap_complete::Shell;

/// Why a man page could not be written.
#[derive(Debug)]
pub enum GenerateError {
    /// `fulcrum man PAGE` with a `PAGE` that is no subcommand.
    UnknownPage {
        /// What was asked for.
        page: String,
        /// The pages there are.
        known: Vec<String>,
    },
    /// Writing the output failed (e.g. stdout closed).
    Io(io::Error),
}

impl fmt::Display for GenerateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GenerateError::UnknownPage { page, known } => write!(
                f,
                "man: no page {page:?} (pages: none for fulcrum(1), or one of {})",
                known.join(", ")
            ),
            GenerateError::Io(e) => write!(f, "man: {e}"),
        }
    }
}

impl std::error::Error for GenerateError {}

impl From<io::Error> for GenerateError {
    fn from(e: io::Error) -> Self {
        GenerateError::Io(e)
    }
}

/// Writes `shell`'s completion script for `cmd` to `out`.
pub fn completions(mut cmd: Command, shell: Shell, out: &mut dyn Write) {
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// Writes the man page of `cmd` (with `page` None) or of its subcommand `page` (named
/// `fulcrum-PAGE(1)`, as the main page's SUBCOMMANDS section refers to it) to `out`.
pub fn man(mut cmd: Command, page: Option<&str>, out: &mut dyn Write) -> Result<(), GenerateError> {
    // Building sets every subcommand's display name ("fulcrum-serve", the page title)
    // and bin name ("fulcrum serve", used in the synopsis).
    cmd.build();
    // The footer's "source" names the program and its version on every page
    // (clap_mangen would name a subcommand page after the subcommand, without one).
    let source = format!(
        "{} {}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    );
    let target = match page {
        None => cmd,
        Some(p) => match cmd.find_subcommand(p) {
            Some(sub) => sub.clone(),
            None => {
                return Err(GenerateError::UnknownPage {
                    page: p.to_owned(),
                    known: cmd
                        .get_subcommands()
                        .filter(|s| !s.is_hide_set())
                        .map(|s| s.get_name().to_owned())
                        .collect(),
                })
            }
        },
    };
    clap_mangen::Man::new(target).source(source).render(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn toy() -> Command {
        Command::new("toy")
            .version("1.2.3")
            .about("A toy.")
            .subcommand(
                Command::new("run")
                    .about("Run it.")
                    .arg(Arg::new("speed").long("speed")),
            )
            .subcommand(Command::new("stop").about("Stop it."))
    }

    fn man_text(page: Option<&str>) -> Result<String, GenerateError> {
        let mut out = Vec::new();
        man(toy(), page, &mut out)?;
        Ok(String::from_utf8(out).expect("roff is UTF-8"))
    }

    #[test]
    fn main_page_lists_subcommand_pages() {
        let text = man_text(None).unwrap();
        assert!(text.contains(".TH toy 1  \"toy 1.2.3\""), "{text}");
        assert!(text.contains("toy\\-run(1)"), "{text}");
    }

    #[test]
    fn subcommand_page_has_its_own_title_and_flags() {
        let text = man_text(Some("run")).unwrap();
        assert!(text.contains(".TH toy-run 1  \"toy 1.2.3\""), "{text}");
        assert!(text.contains("speed"), "{text}");
    }

    #[test]
    fn unknown_page_names_the_pages_there_are() {
        match man_text(Some("fly")) {
            Err(e @ GenerateError::UnknownPage { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("\"fly\"") && msg.contains("run, stop"),
                    "{msg}"
                );
            }
            other => panic!("expected UnknownPage, got {other:?}"),
        }
    }

    #[test]
    fn completions_name_subcommands_and_flags() {
        let mut out = Vec::new();
        completions(toy(), Shell::Bash, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("run") && text.contains("--speed"), "{text}");
    }
}
