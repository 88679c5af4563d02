//! Destroying an instance: its teardown hooks, then everything carrying its labels.

use super::{instance_filter, Attempt, Runner};
use crate::executor::contract::labels;
use crate::executor::plan::{Action, Plan};

impl Runner {
    /// Removes everything of `instance`: runs the teardown steps, then removes its containers,
    /// networks and volumes, found by label. Returns the names removed.
    ///
    /// # Errors
    /// When Docker refuses a removal.
    pub async fn destroy(&self, plan: &Plan) -> anyhow::Result<Vec<String>> {
        for step in &plan.teardown {
            if let Action::Run(spec) = &step.action {
                // A failed hook does not keep the instance alive: removal goes on.
                match self.run_container(plan, step, spec, "teardown").await {
                    Ok(Attempt::Failed(failure)) | Err(failure) => {
                        tracing::warn!(step = %step.name, reason = %self.redactor.redact(&failure.reason), "a teardown hook failed");
                    }
                    Ok(_) => {}
                }
            }
        }
        let filter = instance_filter(plan, &[(labels::MANAGED, "true")]);
        let mut removed = Vec::new();
        for container in self.driver.find(&filter).await? {
            self.driver.remove(&container.id).await?;
            removed.push(container.name);
        }
        removed.extend(self.driver.remove_networks_and_volumes(&filter).await?);
        Ok(removed)
    }
}
