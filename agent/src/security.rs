//! `[security]` in `agent.toml`: what a pattern may ask of this host beyond an ordinary
//! container. Today that is Linux capabilities (`allow_capabilities`, empty by default); a run
//! whose steps ask for one not allowed is refused at plan and at start, before anything is
//! written or created, by [`SecurityConfig::refusals`]. `--privileged` is never used.

use pmesh_proto::pattern::formats;
use pmesh_proto::pattern::spec::Action;
use pmesh_proto::pattern::Pattern;
use serde::{Deserialize, Serialize};

use pmesh_rt::config::InvalidValue;

/// The `[security]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Linux capabilities (`SYS_ADMIN`, no `CAP_` prefix) a pattern's steps may add.
    pub allow_capabilities: Vec<String>,
}

impl SecurityConfig {
    /// Checks every name: a known capability, not `ALL`, listed once.
    ///
    /// # Errors
    /// The first bad name, under `security.allow_capabilities`, and why.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        for (index, name) in self.allow_capabilities.iter().enumerate() {
            let problem = formats::capability_problem(name)
                .or_else(|| self.allow_capabilities[..index].contains(name).then(|| format!("`{name}` is listed twice")));
            if let Some(reason) = problem {
                return Err(InvalidValue { key: "security.allow_capabilities".to_owned(), reason });
            }
        }
        Ok(())
    }

    /// One line for each capability a step of `pattern` asks for that this agent does not
    /// allow, in step order; empty when the pattern may run here.
    pub fn refusals(&self, pattern: &Pattern) -> Vec<String> {
        let mut refusals = Vec::new();
        for (step, definition) in &pattern.steps {
            for capability in requested(&definition.action) {
                if !self.allow_capabilities.contains(capability) {
                    refusals.push(format!(
                        "step \"{step}\" needs capability {capability}, which this agent does not allow; \
                         add it to [security] allow_capabilities in agent.toml"
                    ));
                }
            }
        }
        refusals
    }
}

/// The capabilities a step asks for (only `run` and `service` steps may).
pub fn requested(action: &Action) -> &[String] {
    match action {
        Action::Run(container) | Action::Teardown(container) => &container.capabilities,
        Action::Service(service) => &service.container.capabilities,
        Action::Exec(_) | Action::Wait(_) => &[],
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn nfs_like() -> Pattern {
        let yaml = "apiVersion: pmesh/v1\nkind: Pattern\nmetadata: {name: nfs, version: 1.0.0, category: shared-service}\n\
                    images: {tool: {ref: \"debian:bookworm\"}}\nsteps:\n  \
                    ganesha: {kind: service, image: tool, capabilities: [DAC_READ_SEARCH, SYS_ADMIN]}\n  \
                    plain: {kind: run, image: tool}\n";
        let files = BTreeMap::from([("pattern.yaml".to_owned(), yaml.as_bytes().to_vec())]);
        pmesh_proto::pattern::parse(&files).expect("the pattern parses")
    }

    fn allowing(names: &[&str]) -> SecurityConfig {
        SecurityConfig { allow_capabilities: names.iter().map(|name| name.to_string()).collect() }
    }

    #[test]
    fn a_capability_not_allowed_is_refused_by_name_step_and_key() {
        let pattern = nfs_like();
        assert_eq!(
            allowing(&[]).refusals(&pattern),
            [
                "step \"ganesha\" needs capability DAC_READ_SEARCH, which this agent does not allow; add it to [security] allow_capabilities in agent.toml",
                "step \"ganesha\" needs capability SYS_ADMIN, which this agent does not allow; add it to [security] allow_capabilities in agent.toml",
            ]
        );
        assert_eq!(
            allowing(&["DAC_READ_SEARCH", "NET_ADMIN"]).refusals(&pattern),
            ["step \"ganesha\" needs capability SYS_ADMIN, which this agent does not allow; add it to [security] allow_capabilities in agent.toml"]
        );
        assert!(allowing(&["SYS_ADMIN", "DAC_READ_SEARCH"]).refusals(&pattern).is_empty());
    }

    #[test]
    fn allowed_names_are_checked() {
        assert_eq!(allowing(&[]).validate(), Ok(()));
        assert_eq!(allowing(&["SYS_ADMIN", "NET_ADMIN"]).validate(), Ok(()));
        let reason = |names: &[&str]| allowing(names).validate().unwrap_err().to_string();
        assert_eq!(
            reason(&["CAP_SYS_ADMIN"]),
            "`security.allow_capabilities`: write the capability as `SYS_ADMIN`: upper case, without the `CAP_` prefix"
        );
        assert_eq!(reason(&["ALL"]), "`security.allow_capabilities`: `ALL` is not allowed: list each capability by name");
        assert!(reason(&["SYS_WIZARD"]).starts_with("`security.allow_capabilities`: `SYS_WIZARD` is not a Linux capability"));
        assert_eq!(reason(&["BPF", "BPF"]), "`security.allow_capabilities`: `BPF` is listed twice");
    }
}
