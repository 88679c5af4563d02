//! The `pmesh` command line: the master daemon (`serve`), mesh creation (`ca init`) and the
//! operator's verbs. [`args`] holds what clap parses; each verb lives in a file of its own,
//! and this module only dispatches. Every verb returns a [`CliError`] with a documented exit
//! code on failure.

pub mod admin;
pub mod agents;
pub mod args;
pub mod artifact;
pub mod bootstrap;
pub mod ca;
pub mod client;
pub mod destroy;
pub mod instances;
pub mod lab;
pub mod live;
pub mod output;
pub mod pattern;
pub mod run_outputs;
pub mod runs;
pub mod serve;
pub mod summary;
pub mod tokens;
pub mod version;

pub use args::{
    AdminCommand, AgentsCommand, ArtifactCommand, CaCommand, Cli, Command, InstancesCommand, PatternCommand, RunArgs, RunsCommand,
    Selector, ServeArgs, TokenCommand,
};
pub use serve::serve_config;

use client::CliError;

/// Runs the verb `cli` names.
///
/// # Errors
/// A [`CliError`] carrying the sentence and exit code.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let data_dir = cli.data_dir.as_path();
    let credentials = cli.credentials.as_deref();
    let format = cli.output;
    output::set_no_headers(cli.no_headers);
    match cli.command {
        Command::Completions { shell } => {
            pmesh_rt::docs::completions(<Cli as clap::CommandFactory>::command(), shell);
            return Ok(());
        }
        Command::Manpages { dir } => return pmesh_rt::docs::manpages(<Cli as clap::CommandFactory>::command(), &dir).map(drop),
        _ => {}
    }
    // The daemon sets up its own logging (`--log-format`); every other verb logs to stderr.
    if !matches!(cli.command, Command::Serve(_)) {
        pmesh_rt::logging::init_cli(cli.verbose, cli.quiet);
    }
    match cli.command {
        Command::Serve(args) => serve::run(args, data_dir).await,
        Command::Ca(command) => ca::run(command, data_dir, format),
        Command::Token(command) => tokens::run(command, credentials, data_dir, format).await,
        Command::Agents(command) => agents::run(command, credentials, data_dir, format).await,
        Command::Admin(command) => admin::run(command, credentials, data_dir).await,
        Command::Bootstrap(args) => bootstrap::run(args, credentials, data_dir).await,
        Command::Artifact(command) => artifact::run(command, credentials, data_dir, format).await,
        Command::Lab(lab::LabCommand::Lint { file }) => lab::lint(&file, client::connect(credentials, data_dir), format).await,
        Command::Lab(command) => lab::run(command, &client::connect(credentials, data_dir)?, format).await,
        Command::Destroy(args) => destroy::run(args, &client::connect(credentials, data_dir)?, format).await,
        Command::Version => version::run(credentials, data_dir, format).await,
        Command::Completions { .. } | Command::Manpages { .. } => Ok(()),
        Command::Instances(command) => instances::run(command, &client::connect(credentials, data_dir)?, format).await,
        Command::Pattern(PatternCommand::Lint { path }) => pattern::lint(&path, format),
        Command::Pattern(PatternCommand::Show { path }) if pattern::is_registered_reference(&path) => {
            let reference = path.to_string_lossy();
            pattern::show_registered(&client::connect(credentials, data_dir)?, &reference, format).await
        }
        Command::Pattern(PatternCommand::Show { path }) => pattern::show(&path, format),
        Command::Pattern(PatternCommand::Push { path }) => runs::push(&client::connect(credentials, data_dir)?, &path, format).await,
        Command::Pattern(PatternCommand::Ls) => runs::list_patterns(&client::connect(credentials, data_dir)?, format).await,
        Command::Run(args) => run_outcome(runs::run(&client::connect(credentials, data_dir)?, args.into(), format).await?),
        Command::Runs(command) => {
            let connection = client::connect(credentials, data_dir)?;
            match command {
                RunsCommand::Ls(filter) => runs::list(&connection, &filter.into(), format).await,
                RunsCommand::Show { run_id } => runs::show(&connection, &run_id, format).await,
                RunsCommand::Logs { run_id, step, follow } => runs::logs(&connection, &run_id, step.as_deref(), follow, format).await,
                RunsCommand::Cancel { run_id } => runs::cancel(&connection, &run_id, format).await,
                RunsCommand::Watch { run_id } => run_outcome(runs::watch(&connection, &run_id, format).await?),
            }
        }
    }
}

/// A followed run's exit code as the command's outcome.
fn run_outcome(code: u8) -> Result<(), CliError> {
    match code {
        0 => Ok(()),
        code => Err(CliError::new(code, "the run did not succeed on every agent")),
    }
}
