//! The value model of params: a [`ParamValue`] as a run supplies it or a pattern declares it as
//! a default, and [`Secret`], whose value never shows in `Debug` or serde.
//!
//! Model types only: how values are read from YAML and checked against a param lives in
//! `values`, which depends on this file and on `spec`, never the reverse.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A parameter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// `true` or `false`.
    Boolean(bool),
    /// An integer (also ports).
    Integer(i64),
    /// Text (also ip, cidr, hostname and enum values).
    String(String),
    /// A list.
    List(Vec<ParamValue>),
    /// A mapping from names to values.
    Map(BTreeMap<String, ParamValue>),
    /// A secret; only ever built from a supplied value, never from a pattern file.
    #[serde(skip_deserializing)]
    Secret(Secret),
}

impl ParamValue {
    /// The value as it is put into a string (`${name}`); `None` for lists and maps.
    pub fn as_text(&self) -> Option<String> {
        match self {
            ParamValue::Boolean(value) => Some(value.to_string()),
            ParamValue::Integer(value) => Some(value.to_string()),
            ParamValue::String(value) => Some(value.clone()),
            ParamValue::Secret(secret) => Some(secret.expose().to_owned()),
            ParamValue::List(_) | ParamValue::Map(_) => None,
        }
    }

    /// The value for a template: secrets are revealed, since templates render to files.
    pub(crate) fn to_jinja(&self) -> minijinja::Value {
        match self {
            ParamValue::Boolean(value) => minijinja::Value::from(*value),
            ParamValue::Integer(value) => minijinja::Value::from(*value),
            ParamValue::String(value) => minijinja::Value::from(value.as_str()),
            ParamValue::Secret(secret) => minijinja::Value::from(secret.expose()),
            ParamValue::List(items) => minijinja::Value::from(items.iter().map(ParamValue::to_jinja).collect::<Vec<_>>()),
            ParamValue::Map(entries) => {
                minijinja::Value::from(entries.iter().map(|(key, value)| (key.clone(), value.to_jinja())).collect::<BTreeMap<_, _>>())
            }
        }
    }

    /// The value as a message names it: secrets and collections by their kind only.
    pub(crate) fn describe(&self) -> String {
        match self {
            ParamValue::Boolean(value) => format!("`{value}`"),
            ParamValue::Integer(value) => format!("`{value}`"),
            ParamValue::String(value) => format!("`{}`", super::diagnostic::excerpt(value)),
            ParamValue::Secret(_) => "a secret".to_owned(),
            ParamValue::List(_) => "a list".to_owned(),
            ParamValue::Map(_) => "a mapping".to_owned(),
        }
    }
}

/// A secret value. Its `Debug` and serde forms are `<redacted>`; [`Secret::expose`] is the one
/// way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (an env var, a rendered file).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}
