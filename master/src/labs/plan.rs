//! `lab plan`: what each component's agent would do (`PlanRun`, through the dispatcher's
//! plan-only start), with values from the outputs the lab's components have now. A component
//! whose values reference outputs not known yet (its producer has not succeeded) is not
//! asked: its plan waits for those components. Nothing is recorded, pushed or started.

use std::collections::BTreeMap;

use pmesh_proto::lab::{self, refs};
use pmesh_proto::v1;

use super::{checked, Labs};
use crate::error::ApiError;
use crate::store::ComponentState;

impl Labs {
    /// The plan of a lab file.
    ///
    /// # Errors
    /// [`ApiError::Invalid`] listing every problem of the file.
    pub async fn plan(&self, request: &v1::LabFileRequest) -> Result<v1::PlanLabResponse, ApiError> {
        let lab = checked(&self.dispatcher, &request.file, &request.text)?;
        let stored = self.store.lab(&lab.name)?;
        let mut outputs: BTreeMap<(String, String), serde_json::Value> = BTreeMap::new();
        let mut succeeded = Vec::new();
        if let Some(stored) = &stored {
            for (name, component) in stored.components.iter().filter(|(_, component)| component.state == ComponentState::Succeeded) {
                succeeded.push(name.clone());
                for replica in &component.replicas {
                    for output in &replica.outputs {
                        let Some(value) = output.value.clone() else { continue };
                        let key = (name.clone(), output.name.clone());
                        if component.replicas.len() > 1 {
                            if let serde_json::Value::Array(items) = outputs.entry(key).or_insert_with(|| serde_json::Value::Array(vec![]))
                            {
                                items.push(value);
                            }
                        } else {
                            outputs.insert(key, value);
                        }
                    }
                }
            }
        }
        let registry = self.dispatcher.registry()?;
        let mut plans = Vec::new();
        for component in lab.order() {
            let agent = registry.place(&component.placement).unwrap_or_default();
            let waits_for: Vec<String> = component
                .values
                .iter()
                .flat_map(|value| value.refs.iter().map(|reference| reference.component.clone()))
                .filter(|producer| !succeeded.contains(producer))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let pattern = lab::Catalog::pattern(&registry, &component.pattern, component.version.as_ref())
                .map(|resolved| resolved.reference)
                .unwrap_or_default();
            for index in 0..component.count {
                let instance = lab.instance(component, index);
                let mut plan = v1::LabComponentPlan {
                    name: component.name.clone(),
                    agent: agent.clone(),
                    instance: instance.clone(),
                    waits_for: waits_for.clone(),
                    ..Default::default()
                };
                if waits_for.is_empty() {
                    let lookup = |producer: &str, output: &str| outputs.get(&(producer.to_owned(), output.to_owned())).cloned();
                    let mut values = serde_json::Map::new();
                    let mut problem = None;
                    for value in &component.values {
                        match refs::resolve(&value.value, index, &lookup) {
                            Ok(resolved) => {
                                values.insert(value.param.clone(), resolved);
                            }
                            Err(err) => problem = Some(format!("value `{}`: {err}", value.param)),
                        }
                    }
                    match problem {
                        Some(problem) => plan.error = problem,
                        None => {
                            let request = v1::MasterStartRunRequest {
                                pattern: pattern.clone(),
                                on: vec![agent.clone()],
                                values_json: serde_json::Value::Object(values).to_string(),
                                instance: instance.clone(),
                                plan_only: true,
                                ..Default::default()
                            };
                            match self.dispatcher.start(request).await {
                                Ok(response) => {
                                    for target in response.targets {
                                        plan.actions.extend(target.plan);
                                        if !target.error.is_empty() {
                                            plan.error = target.error;
                                        }
                                    }
                                }
                                Err(err) => plan.error = err.to_string(),
                            }
                        }
                    }
                }
                plans.push(plan);
            }
        }
        Ok(v1::PlanLabResponse { components: plans })
    }
}
