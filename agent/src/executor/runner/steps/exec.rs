//! Exec steps: a command inside a running service of the instance, run on every apply.

use super::super::{Attempt, Failure, Runner, TAIL_LINES};
use crate::executor::plan::{EnvVar, Plan, PlannedStep};

impl Runner {
    /// Runs `command` in the container of `service`, reporting its output.
    pub(super) async fn exec(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        service: &str,
        command: &[String],
        env: &[EnvVar],
    ) -> Result<Attempt, Failure> {
        let id = self.service_container(plan, service).await?;
        let env: Vec<String> = env.iter().map(|var| format!("{}={}", var.name, var.value.expose())).collect();
        self.exec_in(plan, step, &id, command, &env).await
    }

    /// Runs `command` in container `id`, reporting its output as the step's; it succeeds on
    /// exit 0 and fails with the output's tail otherwise.
    pub(super) async fn exec_in(
        &self,
        plan: &Plan,
        step: &PlannedStep,
        id: &str,
        command: &[String],
        env: &[String],
    ) -> Result<Attempt, Failure> {
        let (exit_code, lines) = self.driver.exec(id, command, env).await?;
        for line in &lines {
            self.report_line(plan, step, line).await;
        }
        if exit_code == 0 {
            Ok(Attempt::Succeeded(None))
        } else {
            let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].iter().map(|line| self.redactor.redact(line)).collect();
            Ok(Attempt::Failed(Failure::exited(exit_code, tail)))
        }
    }
}
