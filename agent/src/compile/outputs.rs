//! The pattern's outputs in the plan: `value` ones rendered now, from the params and the
//! run's facts (`${host.address}`, `${host.name}`); `from` ones left to the runner, which
//! reads them from the step's container once every step succeeded.

use pmesh_proto::pattern::output::render_value;
use pmesh_proto::pattern::{Params, Pattern, RunFacts};

use super::CompileError;
use crate::executor::plan::{OutputSource, PlannedOutput};

/// The plan's outputs, in name order.
///
/// # Errors
/// An output whose value cannot be rendered or does not fit its type (a secret one never
/// quoted).
pub(super) fn plan_outputs(pattern: &Pattern, params: &Params, facts: &RunFacts) -> Result<Vec<PlannedOutput>, CompileError> {
    let mut planned = Vec::with_capacity(pattern.outputs.len());
    for (name, output) in &pattern.outputs {
        let source = match (&output.value, &output.from) {
            (Some(text), _) => {
                OutputSource::Value(render_value(name, output, text, params, facts).map_err(|err| CompileError(format!("outputs: {err}")))?)
            }
            (None, Some(from)) => OutputSource::File { step: from.step.clone(), path: from.path.clone() },
            (None, None) => return Err(CompileError(format!("outputs: output `{name}` has no value"))),
        };
        planned.push(PlannedOutput { name: name.clone(), kind: output.kind, secret: output.secret, source });
    }
    Ok(planned)
}

/// The address part of an advertised `host:port` (`[v6]:port` gives `v6`).
pub fn host_of(advertise: &str) -> &str {
    let host = match advertise.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) && !host.is_empty() => host,
        _ => advertise,
    };
    host.strip_prefix('[').and_then(|inner| inner.strip_suffix(']')).unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use pmesh_proto::pattern::{self, OutputType};

    use super::*;

    const PATTERN: &str = r#"
apiVersion: pmesh/v1
kind: Pattern
metadata: {name: out, version: 1.0.0, category: shared-service}
params:
  port: {type: port, default: 5353}
  zones: {type: list, default: [lab.local, example.test]}
  password: {type: secret, required: true}
images:
  base: {ref: "debian:bookworm"}
steps:
  server: {kind: service, image: base}
outputs:
  address: {type: ip, value: "${host.address}"}
  endpoint: {type: url, value: "dns://${host.name}:${port}"}
  port: {type: port, value: "${port}"}
  zones: {type: list, value: "${zones}"}
  ca: {type: string, from: {step: server, path: /certs/ca.crt}}
  password: {type: string, secret: true, value: "${password}"}
"#;

    fn planned(values: &str) -> Result<BTreeMap<String, PlannedOutput>, CompileError> {
        let files = BTreeMap::from([("pattern.yaml".to_owned(), PATTERN.as_bytes().to_vec())]);
        let pattern = pattern::parse(&files).expect("the pattern parses");
        let supplied = pattern::values_from_yaml("values", values).expect("values");
        let params = pattern::validate_values(&pattern, &supplied).expect("valid values");
        let facts = RunFacts { host_address: host_of("[fd00::5]:7444").to_owned(), host_name: "pc-1".to_owned(), ..Default::default() };
        let outputs = plan_outputs(&pattern, &params, &facts)?;
        Ok(outputs.into_iter().map(|output| (output.name.clone(), output)).collect())
    }

    #[test]
    fn value_outputs_are_rendered_typed_and_from_outputs_left_to_the_run() {
        let outputs = planned("password: hunter22\nport: 53").expect("renders");
        let value = |name: &str| match &outputs[name].source {
            OutputSource::Value(value) => value.clone(),
            OutputSource::File { .. } => panic!("{name} is a value"),
        };
        assert_eq!(value("address"), serde_json::json!("fd00::5"));
        assert_eq!(value("endpoint"), serde_json::json!("dns://pc-1:53"));
        assert_eq!(value("port"), serde_json::json!(53));
        assert_eq!(value("zones"), serde_json::json!(["lab.local", "example.test"]));
        assert_eq!(value("password"), serde_json::json!("hunter22"));
        assert!(outputs["ca"].source == OutputSource::File { step: "server".into(), path: "/certs/ca.crt".into() }, "{:?}", outputs["ca"]);
        assert_eq!(outputs["address"].kind, OutputType::Ip);
        assert!(outputs["password"].secret);
        let shown = format!("{outputs:?}");
        assert!(!shown.contains("hunter22") && shown.contains("<secret>"), "{shown}");
    }

    #[test]
    fn advertised_addresses_lose_their_port() {
        assert_eq!(host_of("10.0.0.5:7444"), "10.0.0.5");
        assert_eq!(host_of("pc-1.lab:7444"), "pc-1.lab");
        assert_eq!(host_of("[::1]:7444"), "::1");
        assert_eq!(host_of("pc-1"), "pc-1");
    }
}
