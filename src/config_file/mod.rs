//! The configuration file of `fulcrum serve --config FILE` and `fulcrum check`
//! (issue #10; the format is documented in `docs/configuration.md`).
//!
//! The rule: every `serve` flag is a key of the same name without the leading dashes,
//! with the same value syntax; repeatable flags are arrays. Global keys sit at the top,
//! per-service keys in `[[service]]` tables (with a `name`) or in `[defaults]`; which is
//! which is the one table [`keys::KEYS`].
//!
//! How: the file is parsed with spans ([`parse`]), each service is turned into the
//! command line it stands for and read by the same clap `ServeArgs` parser and the same
//! [`ServeConfig`] validation as flags ([`args`]), so flags and file cannot disagree;
//! errors are moved back to the key's line ([`error`]).
//!
//! Nothing here binds a socket; reading the key files named in
//! the file is part of validation (a bad key file is a configuration error).

mod args;
mod error;
pub(crate) mod keys;
mod parse;
mod render;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use args::Overrides;
pub use error::{FileError, FileErrors};

use crate::config::ServeConfig;

/// Largest configuration file read (a larger one is refused, not loaded).
const MAX_FILE: u64 = 1 << 20;

/// A configuration file, parsed and validated.
#[derive(Debug)]
pub struct FileConfig {
    /// Where it was read from (errors and `check` name it).
    path: PathBuf,
    /// The services, in file order.
    services: Vec<ServiceSection>,
}

/// One `[[service]]`, validated with the global keys and `[defaults]` folded in.
#[derive(Debug)]
pub(crate) struct ServiceSection {
    /// Its `name`.
    pub(crate) name: String,
    /// Line of its table.
    pub(crate) line: usize,
    /// The validated configuration (what one process serves today).
    pub(crate) config: ServeConfig,
    /// Every key's value in force, for `fulcrum check`.
    pub(crate) values: Vec<args::KeyValue>,
}

impl FileConfig {
    /// Reads, parses and validates `path`; `overrides` are the flags given beside
    /// `--config`; `nofile` is the descriptor limit (for `max-conns = 0`).
    pub fn load(path: &Path, overrides: &Overrides, nofile: u64) -> Result<Self, FileErrors> {
        let text = read(path)?;
        Self::from_text(path, &text, overrides, nofile)
    }

    /// Parses and validates `text` as if read from `path`.
    pub(crate) fn from_text(
        path: &Path,
        text: &str,
        overrides: &Overrides,
        nofile: u64,
    ) -> Result<Self, FileErrors> {
        let mut errors = FileErrors::default();
        let doc = parse::parse(path, text, &mut errors);
        let mut services: Vec<ServiceSection> = Vec::new();
        for svc in &doc.services {
            match args::parse_service(path, &doc, svc, overrides, nofile) {
                Ok(p) => {
                    listen_clash(
                        path,
                        svc,
                        &p.config,
                        &services,
                        &doc,
                        overrides,
                        &mut errors,
                    );
                    services.push(ServiceSection {
                        name: svc.name.clone(),
                        line: svc.line,
                        config: p.config,
                        values: p.values,
                    });
                }
                Err(es) => es.into_iter().for_each(|e| errors.push(e)),
            }
        }
        // Commands and state-file lines leave the name `default` out (it is the one
        // service of flags), so beside other services it would be ambiguous.
        if doc.services.len() > 1 {
            for svc in doc
                .services
                .iter()
                .filter(|s| s.name == crate::config::DEFAULT_SERVICE)
            {
                errors.push(FileError::line(
                    path,
                    svc.line,
                    "name = \"default\": reserved for the one service of a file or of flags; \
                     give each of several services its own name",
                ));
            }
        }
        if !errors.is_empty() {
            errors.sort();
            return Err(errors);
        }
        Ok(FileConfig {
            path: path.to_path_buf(),
            services,
        })
    }

    /// The services, in file order.
    pub(crate) fn services(&self) -> &[ServiceSection] {
        &self.services
    }

    /// The services' configurations, in file order: what `serve` runs. Direct mode
    /// serves one service per process: a file with a direct-mode service and another
    /// service is refused.
    pub fn into_services(self) -> Result<Vec<ServeConfig>, FileErrors> {
        let direct = self
            .services
            .iter()
            .find(|s| matches!(s.config.mode, crate::config::ForwardMode::Direct(_)));
        if let (Some(d), true) = (direct, self.services.len() > 1) {
            return Err(FileError::line(
                &self.path,
                d.line,
                format!(
                    "service \"{}\": direct mode serves one service per process; \
                     give it a file (and a fulcrum) of its own, or use mode = \"proxy\"",
                    d.name
                ),
            )
            .into());
        }
        Ok(self.services.into_iter().map(|s| s.config).collect())
    }

    /// The normalised configuration as TOML: every key, defaults filled in.
    pub fn render(&self) -> String {
        render::render(self)
    }
}

/// Reads the file: a bounded size, UTF-8.
fn read(path: &Path) -> Result<String, FileErrors> {
    use std::io::Read;
    let fail = |why: String| FileErrors::from(FileError::file(path, why));
    let f = std::fs::File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(fail(format!("larger than {MAX_FILE} bytes")));
    }
    String::from_utf8(bytes).map_err(|e| {
        let line = error::line_of(
            &String::from_utf8_lossy(&e.as_bytes()[..e.utf8_error().valid_up_to()]),
            usize::MAX,
        );
        FileError::line(path, line, "not UTF-8 text").into()
    })
}

/// Refuses a listen address of `svc` that an earlier service listens on too (equal,
/// or the same port on a wildcard address: both would bind it, and with SO_REUSEPORT
/// the kernel would split the connections between them).
fn listen_clash(
    path: &Path,
    svc: &parse::RawService,
    config: &ServeConfig,
    earlier: &[ServiceSection],
    doc: &parse::Document,
    ov: &Overrides,
    errors: &mut FileErrors,
) {
    let overlap = |a: &std::net::SocketAddr, b: &std::net::SocketAddr| {
        a.port() == b.port()
            && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
    };
    for a in &config.listen {
        let Some(other) = earlier
            .iter()
            .find(|o| o.config.listen.iter().any(|b| overlap(a, b)))
        else {
            continue;
        };
        let item = args::argv_items(doc, svc, ov).into_iter().find(|i| {
            i.flag == "listen" && i.value.as_deref().and_then(|v| v.parse().ok()) == Some(*a)
        });
        let msg = format!(
            "listen address {a} is also used by service \"{}\" (line {})",
            other.name, other.line
        );
        errors.push(match item {
            Some(i) => FileError::key(path, i.line, i.key, &i.shown, msg),
            None => FileError::line(path, svc.line, format!("service \"{}\": {msg}", svc.name)),
        });
    }
}

/// What `fulcrum check --config FILE` found.
#[derive(Debug)]
pub struct CheckReport {
    /// The normalised configuration, when every service is valid.
    pub normalised: Option<String>,
    /// The errors (`serve` would refuse the file when there is any).
    pub errors: FileErrors,
}

/// `fulcrum check --config FILE`: validates as `serve` would, binding nothing.
pub fn check(path: &Path, nofile: u64) -> CheckReport {
    match FileConfig::load(path, &Overrides::default(), nofile) {
        Ok(file) => {
            let normalised = Some(file.render());
            let errors = match file.into_services() {
                Ok(_) => FileErrors::default(),
                Err(e) => e,
            };
            CheckReport { normalised, errors }
        }
        Err(errors) => CheckReport {
            normalised: None,
            errors,
        },
    }
}

/// Fuzzing entry (not an API): the structural stage on arbitrary bytes, and the
/// command lines it builds. Validation is left out on purpose: it resolves backend
/// names and reads the key files a file names, which a fuzzer must not do.
#[doc(hidden)]
pub fn fuzz_structure(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    let mut errors = FileErrors::default();
    let doc = parse::parse(path, text, &mut errors);
    for svc in &doc.services {
        let _ = args::argv(&doc, svc, &Overrides::default());
    }
    let _ = errors.to_string();
}
