//! `pmesh instances ls|show`: what runs built on each agent, its last run and the pattern's
//! outputs. A secret output shows as `<secret>` (JSON: `"value": null, "secret": true`)
//! unless `--reveal`, which asks the agent holding it through the master.

use std::collections::BTreeMap;

use pmesh_proto::event::RunOutput;
use pmesh_proto::pattern::output::display;
use pmesh_proto::v1;
use serde_json::json;

use super::args::InstancesCommand;
use super::client::{CliError, Connection};
use super::output::{ago, table, Format};

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

/// The outputs as one JSON object by name: `{"type", "secret", "value"}`, a withheld secret's
/// value `null`.
pub fn outputs_json(outputs: &[v1::RunOutput]) -> serde_json::Value {
    let by_name: BTreeMap<String, serde_json::Value> = decoded(outputs)
        .into_iter()
        .map(|output| (output.name, json!({ "type": output.kind, "secret": output.secret, "value": output.value })))
        .collect();
    json!(by_name)
}

/// The outputs as text: a table of the one-line values, then each multi-line value (a PEM)
/// as a block; a withheld secret as `<secret>`.
pub fn outputs_text(outputs: &[v1::RunOutput]) -> String {
    let mut rows = Vec::new();
    let mut blocks = Vec::new();
    for output in decoded(outputs) {
        let value = match &output.value {
            Some(value) => display(value),
            None if output.secret => "<secret>".to_owned(),
            None => "-".to_owned(),
        };
        if value.trim_end().contains('\n') {
            let indented: Vec<String> = value.trim_end().lines().map(|line| format!("  {line}")).collect();
            blocks.push(format!("{} ({}):\n{}", output.name, output.kind, indented.join("\n")));
            rows.push(vec![output.name, output.kind, "(below)".to_owned()]);
        } else {
            rows.push(vec![output.name, output.kind, value]);
        }
    }
    let mut text = table(&["OUTPUT", "TYPE", "VALUE"], &rows);
    for block in blocks {
        text.push_str("\n\n");
        text.push_str(&block);
    }
    text
}

/// The wire outputs as the event type; one whose value does not decode shows without it.
fn decoded(outputs: &[v1::RunOutput]) -> Vec<RunOutput> {
    outputs
        .iter()
        .map(|output| {
            RunOutput::try_from(output.clone()).unwrap_or_else(|_| RunOutput {
                name: output.name.clone(),
                kind: output.r#type.clone(),
                secret: output.secret,
                value: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(name: &str, kind: &str, secret: bool, value: Option<serde_json::Value>) -> v1::RunOutput {
        v1::RunOutput::from(RunOutput { name: name.into(), kind: kind.into(), secret, value })
    }

    #[test]
    fn outputs_show_secrets_as_secret_and_pem_as_blocks() {
        let outputs = [
            wire("address", "ip", false, Some(json!("10.0.0.5"))),
            wire("ca", "string", false, Some(json!("-----BEGIN-----\nMIIB\n-----END-----\n"))),
            wire("password", "string", true, None),
            wire("zones", "list", false, Some(json!(["a", "b"]))),
        ];
        assert_eq!(
            outputs_text(&outputs),
            "OUTPUT    TYPE    VALUE\naddress   ip      10.0.0.5\nca        string  (below)\npassword  string  <secret>\nzones     list    a, b\n\nca (string):\n  -----BEGIN-----\n  MIIB\n  -----END-----"
        );
        let json = outputs_json(&outputs);
        assert_eq!(json["password"], json!({"type": "string", "secret": true, "value": null}));
        assert_eq!(json["address"]["value"], json!("10.0.0.5"));
    }
}
