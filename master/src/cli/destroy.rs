//! `pmesh destroy INSTANCE [--agent A]`: the master asks each agent holding the instance to
//! destroy it from its own records (`Agent.DestroyInstance`), so no pattern directory or
//! values are needed. Destroying a destroyed instance says so and exits 0; an unknown one
//! exits 1.

use clap::Args;
use pmesh_proto::v1;
use serde_json::json;

use super::client::{CliError, Connection};
use super::output::Format;

/// `pmesh destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The instance's name (`pmesh instances ls` lists them).
    pub instance: String,
    /// Only on this agent; on every agent that has it otherwise.
    #[arg(long)]
    pub agent: Option<String>,
}

/// Destroys the instance and prints what each agent removed.
///
/// # Errors
/// A [`CliError`]: 1 for an unknown instance or an agent that refused, 4 when an agent or the
/// master cannot be reached.
pub async fn run(args: DestroyArgs, connection: &Connection, format: Format) -> Result<(), CliError> {
    let request = v1::MasterDestroyInstanceRequest { name: args.instance.clone(), agent: args.agent.unwrap_or_default() };
    let destroyed =
        connection.client.clone().destroy_instance(request).await.map_err(|status| connection.failed(status))?.into_inner().instances;
    match format {
        Format::Json => {
            let items: Vec<serde_json::Value> = destroyed
                .iter()
                .map(|item| json!({"agent": item.agent, "removed": item.removed, "already_destroyed": item.already_destroyed}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&json!({"instance": args.instance, "agents": items})).unwrap_or_default());
        }
        Format::Text => {
            for item in &destroyed {
                println!("{}", describe(&args.instance, item));
            }
        }
    }
    Ok(())
}

/// One line per agent.
pub fn describe(instance: &str, item: &v1::DestroyedInstance) -> String {
    if item.already_destroyed {
        return format!("{instance} on {}: already destroyed; nothing to do", item.agent);
    }
    if item.removed.is_empty() {
        return format!("{instance} on {}: destroyed (nothing carried its labels any more)", item.agent);
    }
    format!("{instance} on {}: destroyed, removed {}", item.agent, item.removed.join(", "))
}
