//! `pmesh instances ls|show`: what runs built on each agent, its last run and the pattern's
//! outputs. A secret output shows as `<secret>` (JSON: `"value": null, "secret": true`)
//! unless `--reveal`, which asks the agent holding it through the master.

use pmesh_proto::v1;
use serde_json::json;

use super::args::InstancesCommand;
use super::client::{CliError, Connection};
use super::output::{ago, table, Format};
use super::run_outputs::{outputs_json, outputs_text};

pub(super) async fn run(command: InstancesCommand, connection: &Connection, format: Format) -> Result<(), CliError> {
    let mut client = connection.client.clone();
    let failed = |status| connection.failed(status);
    match command {
        InstancesCommand::Ls { agent } => {
            let request = v1::ListInstancesRequest { agent: agent.unwrap_or_default() };
            let listed = client.list_instances(request).await.map_err(failed)?.into_inner().instances;
            match format {
                Format::Json => print_json(&json!(listed.iter().map(instance_json).collect::<Vec<_>>())),
                Format::Text if listed.is_empty() => println!("no instances yet; start one with `pmesh run`"),
                Format::Text => {
                    let rows: Vec<Vec<String>> = listed
                        .iter()
                        .map(|instance| {
                            vec![
                                instance.name.clone(),
                                instance.agent.clone(),
                                instance.pattern.clone(),
                                instance.state.clone(),
                                instance.last_run.clone(),
                                instance.outputs.len().to_string(),
                                ago(Some(instance.updated_at_unix)),
                            ]
                        })
                        .collect();
                    println!("{}", table(&["NAME", "AGENT", "PATTERN", "STATE", "LAST RUN", "OUTPUTS", "UPDATED"], &rows));
                }
            }
        }
        InstancesCommand::Show { name, agent, reveal } => {
            let request = v1::GetInstanceRequest { name, agent: agent.unwrap_or_default(), reveal };
            let found = client.get_instance(request).await.map_err(failed)?.into_inner().instances;
            match format {
                Format::Json if found.len() == 1 => print_json(&instance_json(&found[0])),
                Format::Json => print_json(&json!(found.iter().map(instance_json).collect::<Vec<_>>())),
                Format::Text => {
                    let shown: Vec<String> = found.iter().map(instance_text).collect();
                    println!("{}", shown.join("\n\n"));
                }
            }
        }
    }
    Ok(())
}

fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

fn instance_json(instance: &v1::InstanceSummary) -> serde_json::Value {
    json!({
        "name": instance.name,
        "agent": instance.agent,
        "pattern": instance.pattern,
        "last_run": instance.last_run,
        "state": instance.state,
        "outputs_run": instance.outputs_run,
        "outputs": outputs_json(&instance.outputs),
        "updated_at_unix": instance.updated_at_unix,
    })
}

fn instance_text(instance: &v1::InstanceSummary) -> String {
    let mut text = format!(
        "Instance: {}\nAgent:    {}\nPattern:  {}\nLast run: {} ({})\nUpdated:  {}",
        instance.name,
        instance.agent,
        instance.pattern,
        instance.last_run,
        instance.state,
        ago(Some(instance.updated_at_unix))
    );
    if instance.outputs.is_empty() {
        text.push_str("\n\nNo outputs: no run of this instance has succeeded with outputs.");
    } else {
        let from = if instance.outputs_run == instance.last_run { String::new() } else { format!(" (of run {})", instance.outputs_run) };
        text.push_str(&format!("\n\nOutputs{from}:\n{}", outputs_text(&instance.outputs)));
    }
    text
}
