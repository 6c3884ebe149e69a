//! The `fulcrum` command: parses flags and runs a subcommand.

use std::process::ExitCode;

use clap::Parser;

use fulcrum::cli::{Cli, CliCommand};
use fulcrum::config::{ServeConfig, EXIT_CONFIG};
use fulcrum::{demo, serve, sys};

fn main() -> ExitCode {
    let cli = Cli::parse(); // exits 2 with clap's one-line error on bad flags
    if let CliCommand::Ctl(args) = cli.command {
        return ExitCode::from(fulcrum::control::ctl::run(args));
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let result = match cli.command {
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
        CliCommand::Ctl(_) => Ok(()), // handled above, before logging is set up
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fulcrum: {e}");
            ExitCode::FAILURE
        }
    }
}
