//! A run's outputs for the operator: as JSON by name, and as text (a table of one-line values,
//! then each multi-line value as a block). A withheld secret is `<secret>` (JSON: `null`).

use std::collections::BTreeMap;

use pmesh_proto::event::RunOutput;
use pmesh_proto::pattern::output::display;
use pmesh_proto::v1;
use serde_json::json;

use super::output::table;

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
