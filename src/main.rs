//! The `fulcrum` command: parses flags and runs a subcommand.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use fulcrum::cli::{Cli, CliCommand};
use fulcrum::config::{ServeConfig, EXIT_CONFIG};
use fulcrum::generate::{self, GenerateError};
use fulcrum::{config_file, demo, serve, sys};

/// Exit code for a bad command line, the same as clap's.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // Exits 2 with clap's one-line error on bad flags. The matches are kept: `serve
    // --config` needs to know which flags were typed.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The commands that print or talk to another process need no logger.
    let command = match cli.command {
        CliCommand::Ctl(args) => return ExitCode::from(fulcrum::control::ctl::run(args)),
        CliCommand::Completions(args) => {
            generate::completions(Cli::command(), args.shell, &mut std::io::stdout().lock());
            return ExitCode::SUCCESS;
        }
        CliCommand::Man(args) => {
            let out = &mut std::io::stdout().lock();
            return match generate::man(Cli::command(), args.page.as_deref(), out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fulcrum: {e}");
                    match e {
                        GenerateError::UnknownPage { .. } => ExitCode::from(EXIT_USAGE),
                        GenerateError::Io(_) => ExitCode::FAILURE,
                    }
                }
            };
        }
        other => other,
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let result = match command {
        CliCommand::Serve(args) => (|| {
            // Signals first: every thread started later inherits the blocked mask.
            let sfd = sys::signal::signal_fd()?;
            let nofile = sys::limits::raise_nofile();
            let Some(path) = args.config.clone() else {
                let cfg = ServeConfig::from_args(*args, nofile)
                    .unwrap_or_else(|e| config_exit(&e.to_string()));
                return serve::Server::start(vec![cfg], sfd)?.run();
            };
            // The file is read again, with the same flags beside it, at each SIGHUP.
            let overrides = matches
                .subcommand_matches("serve")
                .map(config_file::Overrides::from_matches)
                .unwrap_or_default();
            let load = move || {
                config_file::FileConfig::load(&path, &overrides, nofile)
                    .and_then(config_file::FileConfig::into_services)
                    .map_err(|e| e.to_string())
            };
            let services = load().unwrap_or_else(|e| config_exit(&e));
            serve::Server::start(services, sfd)?
                .with_reloader(Box::new(load))
                .run()
        })(),
        CliCommand::Check(args) => {
            let report = config_file::check(&args.config, sys::limits::raise_nofile());
            if let Some(text) = &report.normalised {
                print!("{text}");
            }
            if report.errors.iter().next().is_some() {
                config_exit(&report.errors.to_string());
            }
            Ok(())
        }
        CliCommand::Demo(args) => demo::run(args),
        CliCommand::Agent(args) => fulcrum::agent::run::run(*args),
        // Handled above, before logging is set up.
        CliCommand::Ctl(_) | CliCommand::Completions(_) | CliCommand::Man(_) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fulcrum: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a configuration error (one `fulcrum: ` line per error) and exits 2.
fn config_exit(errors: &str) -> ! {
    for line in errors.lines() {
        eprintln!("fulcrum: {line}");
    }
    std::process::exit(i32::from(EXIT_CONFIG));
}
