//! The model of a pattern's `outputs` (a leaf: `spec` and `output` use it, it uses neither).
//! What an output is once lint accepted it; `output` renders values, `decode::outputs` reads
//! and lints the YAML.

use serde::{Deserialize, Serialize};

/// One output of a pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// The type of the value.
    #[serde(rename = "type")]
    pub kind: OutputType,
    /// What the output is, shown with it.
    #[serde(default)]
    pub description: String,
    /// Whether the value is redacted in every display and event (`<secret>`), shown only by
    /// `pmesh instances show --reveal`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// A string of placeholders; exactly one of `value` and `from` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A file in a step's container; exactly one of `value` and `from` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<FromFile>,
}

/// A file read from a step's container after the run (`from: {step, path}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromFile {
    /// A `run` or `service` step of the pattern.
    pub step: String,
    /// An absolute path in that step's container.
    pub path: String,
}

/// The type of an output's value: the param types a lab could feed it into, plus `url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputType {
    String,
    Integer,
    Boolean,
    Ip,
    Cidr,
    Hostname,
    Port,
    /// `scheme://…` with no white space.
    Url,
    List,
    Map,
}

impl OutputType {
    /// Every type, as written in YAML.
    pub const ALL: [&'static str; 10] = ["string", "integer", "boolean", "ip", "cidr", "hostname", "port", "url", "list", "map"];

    /// The type named `name` in YAML.
    pub fn from_name(name: &str) -> Option<OutputType> {
        let index = Self::ALL.iter().position(|known| *known == name)?;
        Some(
            [
                OutputType::String,
                OutputType::Integer,
                OutputType::Boolean,
                OutputType::Ip,
                OutputType::Cidr,
                OutputType::Hostname,
                OutputType::Port,
                OutputType::Url,
                OutputType::List,
                OutputType::Map,
            ][index],
        )
    }

    /// The name of the type in YAML.
    pub fn name(self) -> &'static str {
        Self::ALL[self as usize]
    }
}
