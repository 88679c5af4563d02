//! `pmesh-agent pattern apply|destroy`: a pattern on this host, without a master.

use std::path::Path;

use super::args::PatternCommand;
use crate::config::AgentConfig;
use crate::exit::{self, CliError};
use crate::local::LocalOptions;

pub(super) async fn run(command: PatternCommand, data_dir: &Path) -> Result<(), CliError> {
    let (args, destroy) = match command {
        PatternCommand::Apply(args) => (args, false),
        PatternCommand::Destroy(args) => (args, true),
    };
    let path = args.config.clone().unwrap_or_else(|| AgentConfig::default_path(data_dir));
    let config = AgentConfig::load(&path).map_err(|err| CliError::new(exit::USAGE, format!("{err:#}")))?;
    let options = LocalOptions {
        pattern: args.pattern,
        instance: args.instance,
        assignments: args.params,
        values_file: args.values,
        data_dir: data_dir.to_path_buf(),
    };
    if destroy {
        let removed = crate::local::destroy(options, config).await?;
        println!("removed {} object(s): {}", removed.len(), removed.join(", "));
        return Ok(());
    }
    match crate::local::apply(options, config).await? {
        0 => Ok(()),
        code => Err(CliError::new(code, "the run did not succeed")),
    }
}
