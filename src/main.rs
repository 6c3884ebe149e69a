//! The `fulcrum` command: parses flags and runs a subcommand.

use std::process::ExitCode;

use clap::Parser;

use fulcrum::config::{Cli, Command, ServeConfig};
use fulcrum::{demo, serve};

fn main() -> ExitCode {
    let cli = Cli::parse(); // exits 2 with clap's one-line error on bad flags
    if let Command::Ctl(args) = cli.command {
        return ExitCode::from(fulcrum::control::ctl::run(args));
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let result = match cli.command {
        Command::Serve(args) => (|| {
            // Signals first: every thread started later inherits the blocked mask.
            let sfd = serve::signal_fd()?;
            let nofile = serve::raise_nofile();
            let cfg = ServeConfig::from_args(*args, nofile).map_err(std::io::Error::other)?;
            serve::Server::start(cfg, sfd)?.run()
        })(),
        Command::Demo(args) => demo::run(args),
        Command::Agent(args) => fulcrum::agent::run::run(*args),
        Command::Ctl(_) => Ok(()), // handled above, before logging is set up
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fulcrum: {e}");
            ExitCode::FAILURE
        }
    }
}
