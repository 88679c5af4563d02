//! A lab's record as the wire status: components in dependency order, with their instances,
//! runs and outputs (secret ones without a value, as the store keeps them).

use pmesh_proto::lab::{self, Lab};
use pmesh_proto::v1;

use crate::store::LabRecord;

/// The wire status of a lab.
pub fn lab_status(record: &LabRecord) -> v1::LabStatus {
    let parsed = lab::parse(&record.file, &record.text).ok();
    let mut names: Vec<String> = match &parsed {
        Some(lab) => lab.order().iter().map(|component| component.name.clone()).collect(),
        None => Vec::new(),
    };
    for name in record.components.keys() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let components = names
        .iter()
        .filter_map(|name| {
            let component = record.components.get(name)?;
            let needs = parsed.as_ref().and_then(|lab| lab.component(name)).map(Lab::dependencies).unwrap_or_default();
            Some(v1::LabComponentStatus {
                name: name.clone(),
                pattern: component.pattern.clone(),
                state: component.state.to_string(),
                agent: component.agent.clone(),
                instances: component
                    .replicas
                    .iter()
                    .map(|replica| v1::LabInstance {
                        instance: replica.instance.clone(),
                        agent: component.agent.clone(),
                        run_id: replica.run_id.clone(),
                        state: replica.state.to_string(),
                        outputs: replica.outputs.iter().cloned().map(v1::RunOutput::from).collect(),
                        runs: replica.runs,
                    })
                    .collect(),
                error: component.error.clone(),
                started_at_unix: component.started_at,
                finished_at_unix: component.finished_at,
                unchanged: component.unchanged,
                needs: needs.into_iter().collect(),
            })
        })
        .collect();
    v1::LabStatus {
        name: record.name.clone(),
        state: record.state.as_str().to_owned(),
        components,
        updated_at_unix: record.updated_at,
        file: record.file.clone(),
    }
}
