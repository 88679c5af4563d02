//! A succeeded run's outputs: `value` ones were rendered when the plan was compiled; `from`
//! ones are read here from their step's container, bounded, and typed. A file that is
//! missing, too large, not UTF-8 or not of the output's type fails the run, naming the
//! output, the step and the path. Secret values stay in the outputs (the journal keeps them
//! in the run's record); the event the journal writes withholds them.

use pmesh_proto::event::RunOutput;
use pmesh_proto::pattern::output::typed_text;

use super::{instance_filter, Failure, Runner};
use crate::executor::contract::labels;
use crate::executor::plan::{Action, OutputSource, Plan, PlannedOutput};

/// The largest file a `from` output reads.
pub const MAX_OUTPUT_FILE: u64 = 1 << 20;

impl Runner {
    /// Every output of `plan`, in the plan's order.
    pub(super) async fn outputs(&self, plan: &Plan) -> Result<Vec<RunOutput>, Failure> {
        let mut outputs = Vec::with_capacity(plan.outputs.len());
        for output in &plan.outputs {
            let value = match &output.source {
                OutputSource::Value(value) => value.clone(),
                OutputSource::File { step, path } => self.read_output(plan, output, step, path).await?,
            };
            let value = if output.secret { value } else { redact_json(&value, &|text| self.redactor.redact(text)) };
            outputs.push(RunOutput {
                name: output.name.clone(),
                kind: output.kind.name().to_owned(),
                secret: output.secret,
                value: Some(value),
            });
        }
        Ok(outputs)
    }

    async fn read_output(&self, plan: &Plan, output: &PlannedOutput, step: &str, path: &str) -> Result<serde_json::Value, Failure> {
        let fail = |problem: String| Failure::new(format!("output `{}`: {path} of step {step}: {problem}", output.name));
        let hash = plan.steps.iter().find(|planned| planned.name == step).and_then(|planned| match &planned.action {
            Action::Run(spec) | Action::Service(spec) => Some(spec.spec_hash()),
            _ => None,
        });
        let found = self.driver.find(&instance_filter(plan, &[(labels::STEP, step)])).await.map_err(|err| fail(format!("{err:#}")))?;
        // The container this run converged on: its spec's, running first.
        let mut candidates: Vec<_> =
            found.iter().filter(|found| hash.as_deref().is_none_or(|hash| found.label(labels::SPEC_HASH) == hash)).collect();
        candidates.sort_by_key(|found| !found.running);
        let Some(container) = candidates.first() else { return Err(fail("the step has no container".to_owned())) };
        let bytes = self.driver.read_file(&container.id, path, MAX_OUTPUT_FILE).await.map_err(|err| fail(format!("{err:#}")))?;
        let text = String::from_utf8(bytes).map_err(|_| fail("the file is not UTF-8 text".to_owned()))?;
        typed_text(output.kind, &text, output.secret).map_err(fail)
    }
}

/// `value` with `redact` applied to every string in it.
fn redact_json(value: &serde_json::Value, redact: &dyn Fn(&str) -> String) -> serde_json::Value {
    match value {
        serde_json::Value::String(text) => serde_json::Value::String(redact(text)),
        serde_json::Value::Array(items) => serde_json::Value::Array(items.iter().map(|item| redact_json(item, redact)).collect()),
        serde_json::Value::Object(entries) => {
            serde_json::Value::Object(entries.iter().map(|(key, item)| (key.clone(), redact_json(item, redact))).collect())
        }
        other => other.clone(),
    }
}
