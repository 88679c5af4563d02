//! The `pmesh-agent` command line: [`args`] holds what clap parses, and each verb has a file
//! of its own. Every verb ends in a [`CliError`] with a documented exit code on failure.

pub mod args;
mod join;
mod pattern;
mod run;
mod simulate;

pub use args::Cli;

use crate::exit::CliError;
use args::Command;

/// Runs the verb `cli` names.
///
/// # Errors
/// A [`CliError`] carrying the sentence and exit code.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Join(args) => join::run(args, &cli.data_dir).await,
        Command::Pattern(command) => pattern::run(command, &cli.data_dir).await,
        Command::Run(args) => run::run(args, &cli.data_dir).await,
        Command::Simulate(args) => simulate::run(args).await,
        Command::Completions { shell } => {
            pmesh_rt::docs::completions(<Cli as clap::CommandFactory>::command(), shell);
            Ok(())
        }
        Command::Manpages { dir } => pmesh_rt::docs::manpages(<Cli as clap::CommandFactory>::command(), &dir).map(drop),
    }
}
