//! Decoding `outputs`: the type, exactly one source (`value` or `from`), placeholders that
//! name params or run facts, `from` steps that have a container, literal values that fit the
//! type, and no secret param in an output that is not secret.

use super::super::output::{self, FromFile, Output, OutputType, ValuePiece};
use super::super::placeholder;
use super::super::spec::{ParamType, StepKind};
use super::super::yaml::Node;
use super::{Decoder, Fields, Names};

const OUTPUT_FIELDS: [&str; 5] = ["type", "description", "secret", "value", "from"];
const FROM_FIELDS: [&str; 2] = ["step", "path"];

impl Decoder<'_> {
    pub(super) fn outputs(&mut self, field: Option<(&Node, &Node)>) -> Option<std::collections::BTreeMap<String, Output>> {
        self.map_of(field, Names::OutputName, Self::output)
    }

    /// An output name: an identifier, as labs refer to it (`${dns.outputs.address}`).
    pub(super) fn output_name(&mut self, key: &Node) -> Option<String> {
        let name = self.string(key)?;
        if super::super::formats::is_identifier(&name) {
            return Some(name);
        }
        self.report.error(key.mark, format!("`{name}` is not a valid output name: use letters, digits and `_`, not starting with a digit"));
        None
    }

    fn output(&mut self, name: &str, key: &Node, node: &Node) -> Option<Output> {
        let fields = self.fields(node, key.mark, &OUTPUT_FIELDS, &format!("output `{name}`"))?;
        let kind = fields.required(self, "type").and_then(|(_, node)| {
            let text = self.string(node)?;
            match OutputType::from_name(&text) {
                Some(kind) => Some(kind),
                None if text == "secret" => {
                    self.report.error(node.mark, "an output is not of type `secret`: give its type and `secret: true`");
                    None
                }
                None => self.one_of(node, &text, "output type", &OutputType::ALL),
            }
        });
        let description = match fields.get("description") {
            Some((_, node)) => self.string(node),
            None => Some(String::new()),
        };
        let secret = match fields.get("secret") {
            Some((_, node)) => self.boolean(node),
            None => Some(false),
        };
        let (value, from) = match (fields.get("value"), fields.get("from")) {
            (Some((_, value)), None) => (self.output_value(name, value, kind, secret.unwrap_or(true)).map(Some), Some(None)),
            (None, Some((from_key, from))) => (Some(None), self.output_from(from_key, from, kind).map(Some)),
            (Some(_), Some((from_key, _))) => {
                self.report.error(from_key.mark, format!("output `{name}` takes `value` or `from`, not both"));
                (None, None)
            }
            (None, None) => {
                self.report.error(key.mark, format!("output `{name}` needs `value` or `from`"));
                (None, None)
            }
        };
        Some(Output { kind: kind?, description: description?, secret: secret?, value: value?, from: from? })
    }

    /// A `value`: placeholders of params that always have a value (a list or map only as the
    /// whole value of a list or map output), `${host.address}` and `${host.name}`; a secret
    /// param only in a secret output; a literal that fits the type.
    fn output_value(&mut self, name: &str, node: &Node, kind: Option<OutputType>, secret: bool) -> Option<String> {
        if node.as_map().is_some() || node.as_seq().is_some() {
            self.report.error(node.mark, format!("expected a string, found {}", node.describe()));
            return None;
        }
        let text = self.string(node)?;
        let whole = placeholder::whole(&text);
        let mut clean = true;
        let mut literal = true;
        for piece in output::scan(&text) {
            let (param, offset) = match piece {
                ValuePiece::Literal(_) => continue,
                ValuePiece::Fact { .. } => {
                    literal = false;
                    continue;
                }
                ValuePiece::Image { name: image, offset } => {
                    literal = false;
                    if !self.scope.images.contains(&image) {
                        self.report.error(node.mark_at(offset), format!("`${{image.{image}}}`: `{image}` is not an image of the pattern"));
                        clean = false;
                    }
                    continue;
                }
                ValuePiece::Malformed { message, offset } => {
                    self.report.error(node.mark_at(offset), message);
                    clean = false;
                    continue;
                }
                ValuePiece::Param { name, offset } => (name, offset),
            };
            literal = false;
            if let Some(problem) = self.output_placeholder_problem(name, &param, whole.is_some(), kind, secret) {
                self.report.error(node.mark_at(offset), problem);
                clean = false;
            }
        }
        if let (true, true, Some(kind)) = (clean, literal, kind) {
            if let Err(problem) = output::typed_text(kind, &text, secret) {
                self.report.error(node.mark, format!("the value does not fit the output type {}: {problem}", kind.name()));
                clean = false;
            }
        }
        let whole_map = whole.as_ref().and_then(|param| self.scope.params.get(param)).is_some_and(|info| info.kind == Some(ParamType::Map));
        if clean && kind == Some(OutputType::Map) && !whole_map && !literal {
            self.report.error(node.mark, format!("output `{name}` is a map: its value must be `${{param}}` of a map param"));
            clean = false;
        }
        clean.then_some(text)
    }

    /// Why `${param}` cannot be used in output `name`'s value.
    fn output_placeholder_problem(&self, name: &str, param: &str, whole: bool, kind: Option<OutputType>, secret: bool) -> Option<String> {
        let Some(info) = self.scope.params.get(param) else {
            return Some(format!("`${{{param}}}` refers to `{param}`, which is not a param"));
        };
        let param_kind = info.kind?;
        if !info.always_set {
            return Some(format!(
                "`${{{param}}}`: param `{param}` is optional without a default, so it may have no value; give it a default or make it required"
            ));
        }
        match (param_kind, kind) {
            (ParamType::Secret, _) if !secret => {
                Some(format!("secret param `{param}` may only go into a secret output; mark output `{name}` with `secret: true`"))
            }
            (ParamType::List, Some(OutputType::List)) | (ParamType::Map, Some(OutputType::Map)) if whole => None,
            (ParamType::List | ParamType::Map, _) => Some(format!(
                "`${{{param}}}`: param `{param}` is a {}; it can only be the whole value of a {} output",
                param_kind.name(),
                param_kind.name()
            )),
            _ => None,
        }
    }

    /// `from: {step, path}`: a run or service step, an absolute path; not a map.
    fn output_from(&mut self, key: &Node, node: &Node, kind: Option<OutputType>) -> Option<FromFile> {
        let fields: Fields<'_> = self.fields(node, key.mark, &FROM_FIELDS, "from")?;
        let step = fields.required(self, "step").and_then(|(_, node)| {
            let step = self.string(node)?;
            let problem = match self.scope.steps.get(&step) {
                None => format!("`{step}` is not a step of the pattern"),
                Some(Some(StepKind::Run | StepKind::Service)) | Some(None) => return Some(step),
                Some(Some(other)) => {
                    format!("`{step}` is a {} step; `from` reads a file from the container of a run or service step", other.name())
                }
            };
            self.report.error(node.mark, problem);
            None
        });
        let path = fields.required(self, "path").and_then(|(_, node)| {
            let path = self.string(node)?;
            if path.starts_with('/') && !path.contains('\0') {
                return Some(path);
            }
            self.report.error(node.mark, format!("`from` path `{path}` must be an absolute path in the container"));
            None
        });
        if kind == Some(OutputType::Map) {
            self.report.error(key.mark, "a `from` output reads text: its type cannot be `map`");
            return None;
        }
        Some(FromFile { step: step?, path: path? })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// `patterns/schema.json` describes outputs as lint reads them.
    #[test]
    fn json_schema_matches_outputs() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/schema.json");
        let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).expect("schema.json")).expect("JSON");
        let output = &schema["$defs"]["output"];
        let mut keys: Vec<&str> = output["properties"].as_object().expect("properties").keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut fields = OUTPUT_FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(keys, fields);
        let types: Vec<&str> =
            output["properties"]["type"]["enum"].as_array().expect("enum").iter().filter_map(|item| item.as_str()).collect();
        assert_eq!(types, OutputType::ALL);
        let mut from: Vec<&str> =
            output["properties"]["from"]["properties"].as_object().expect("from").keys().map(String::as_str).collect();
        from.sort_unstable();
        let mut from_fields = FROM_FIELDS.to_vec();
        from_fields.sort_unstable();
        assert_eq!(from, from_fields);
    }

    #[test]
    fn outputs_decode_into_the_model() {
        let text = r#"apiVersion: pmesh/v1
kind: Pattern
metadata: {name: demo, version: 1.0.0, category: basic-tool}
params: {pw: {type: secret, required: true}}
images: {tool: {ref: "debian:bookworm"}}
steps: {s: {kind: run, image: tool}}
outputs:
  a: {type: port, value: 53, description: The port}
  b: {type: string, from: {step: s, path: /etc/hostname}}
  c: {type: string, secret: true, value: "${pw}"}
"#;
        let files = BTreeMap::from([("pattern.yaml".to_owned(), text.as_bytes().to_vec())]);
        let pattern = crate::pattern::parse(&files).expect("valid");
        let a = &pattern.outputs["a"];
        assert_eq!((a.kind, a.value.as_deref(), a.description.as_str(), a.secret), (OutputType::Port, Some("53"), "The port", false));
        let b = &pattern.outputs["b"];
        assert_eq!(b.from, Some(FromFile { step: "s".into(), path: "/etc/hostname".into() }));
        assert!(pattern.outputs["c"].secret);
        let json = serde_json::to_value(&pattern).expect("serialisable");
        assert_eq!(
            json["outputs"]["b"],
            serde_json::json!({"type": "string", "description": "", "from": {"step": "s", "path": "/etc/hostname"}})
        );
        let back: crate::pattern::Pattern = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, pattern);
    }
}
