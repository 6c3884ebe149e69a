//! The `fulcrum` command: parses flags and runs a subcommand.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use fulcrum::cli::{Cli, CliCommand};
use fulcrum::config::{ServeConfig, EXIT_CONFIG};
use fulcrum::generate::{self, GenerateError};
use fulcrum::{demo, serve, sys};

/// Exit code for a bad command line, the same as clap's.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // Exits 2 with clap's one-line error on bad flags.
    let cli = Cli::parse();
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
            let cfg = match ServeConfig::from_args(*args, nofile) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("fulcrum: {e}");
                    std::process::exit(i32::from(EXIT_CONFIG));
                }
            };
            serve::Server::start(cfg, sfd)?.run()
        })(),
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
