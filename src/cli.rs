//! The `fulcrum` command line: one subcommand per program the binary holds.
//!
//! Each subcommand's flags belong to the layer that uses them (`serve`'s to
//! [`crate::config`], the agent's to [`crate::agent::config`], `ctl`'s to
//! [`crate::control::ctl`]); this file only names them. The two that describe the
//! command line itself (`completions`, `man`) take their few arguments from here.
//! `check` reads the configuration file of [`crate::config_file`].

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;

use crate::agent::config::AgentArgs;
use crate::config::{DemoArgs, ServeArgs};
use crate::control::ctl::CtlArgs;

/// fulcrum: a Layer-4 TCP connection distributor.
#[derive(Debug, Parser)]
#[command(name = "fulcrum", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: CliCommand,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run the distributor.
    Serve(Box<ServeArgs>),
    /// Run three built-in HTTP backends on loopback and a distributor on 127.0.0.1:8080.
    Demo(DemoArgs),
    /// Run the node agent on a server node: probe the local service, report load and state.
    Agent(Box<AgentArgs>),
    /// Send a command to a running distributor's control socket.
    Ctl(CtlArgs),
    /// Validate a configuration file without binding anything; print it normalised.
    Check(CheckArgs),
    /// Print a shell completion script to stdout.
    Completions(CompletionsArgs),
    /// Print a roff man page to stdout.
    Man(ManArgs),
}

/// `fulcrum check` flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The configuration file to validate (the one `fulcrum serve --config` reads).
    #[arg(long, value_name = "FILE")]
    pub config: std::path::PathBuf,
}

/// `fulcrum completions SHELL`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `fulcrum man [PAGE]`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// A subcommand's page (`serve` prints fulcrum-serve(1)); none prints fulcrum(1).
    pub page: Option<String>,
}
