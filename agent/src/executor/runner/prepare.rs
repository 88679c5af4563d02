//! A run's second phase: the instance's networks and the plan's images, before any step.

use super::{network_name, Failure, Runner};
use crate::executor::events::EventKind;
use crate::executor::plan::{Action, ImageSource, Plan};

impl Runner {
    /// Creates the instance's networks (when a step has a container) and makes every image
    /// available, reporting how each was obtained.
    pub(super) async fn prepare(&self, plan: &Plan) -> Result<(), Failure> {
        // A plan without containers (only waits, say) touches nothing in Docker: Docker's
        // pool of network address ranges is small, and one network per instance adds up.
        let has_containers = plan.steps.iter().chain(&plan.teardown).any(|step| matches!(step.action, Action::Run(_) | Action::Service(_)));
        if has_containers {
            self.driver.ensure_network(&network_name(&plan.scope()), &Self::owner(plan, "", "", "network")).await?;
            for network in &plan.networks {
                self.driver.ensure_network(network, &Self::owner(plan, "", "", "network")).await?;
            }
        }
        for image in &plan.images {
            let action = self.driver.ensure_image(image).await?;
            let reference = match image {
                ImageSource::Pull { reference, .. } => reference.clone(),
                ImageSource::Load { tag, .. } | ImageSource::Build { tag, .. } => tag.clone(),
            };
            self.emit(&plan.run_id, EventKind::ImageReady { reference, action }).await;
        }
        Ok(())
    }
}
