//! `pmesh agents ls|show|rm`: the enrolled agents, and removing one (which revokes it).

use std::path::Path;

use pmesh_proto::v1;

use super::args::AgentsCommand;
use super::client::{self, CliError};
use super::output::{self, AgentView, Format};

pub(super) async fn run(command: AgentsCommand, credentials: Option<&Path>, data_dir: &Path, format: Format) -> Result<(), CliError> {
    let connection = client::connect(credentials, data_dir)?;
    let mut client = connection.client.clone();
    let failed = |status| connection.failed(status);
    match command {
        AgentsCommand::Ls => {
            let listed = client.list_agents(v1::ListAgentsRequest {}).await.map_err(failed)?.into_inner();
            let mut views: Vec<AgentView> = listed.agents.into_iter().map(AgentView::from).collect();
            views.sort_by(|left, right| left.name.cmp(&right.name));
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&views).map_err(anyhow::Error::from)?),
                Format::Text if views.is_empty() => println!("no agents enrolled; create a join token with `pmesh token create`"),
                Format::Text => println!("{}", output::agents_table(&views)),
            }
        }
        AgentsCommand::Show { name } => {
            let agent = client.get_agent(v1::GetAgentRequest { name }).await.map_err(failed)?.into_inner();
            let view = AgentView::from(agent);
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&view).map_err(anyhow::Error::from)?),
                Format::Text => println!("{}", output::agent_detail(&view)),
            }
        }
        AgentsCommand::Rm { name } => {
            let removed = client.remove_agent(v1::RemoveAgentRequest { name: name.clone() }).await.map_err(failed)?.into_inner();
            match format {
                Format::Json => println!("{}", serde_json::json!({ "removed": name, "revoked_serials": removed.revoked_serials })),
                Format::Text => println!("removed agent {name}; revoked {} certificate(s)", removed.revoked_serials.len()),
            }
        }
    }
    Ok(())
}
