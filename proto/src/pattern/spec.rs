//! The typed model of `pattern.yaml`: what a pattern is once lint has accepted it.
//!
//! Built from YAML in one place (`decode`), which checks everything that can be checked before a
//! run, so code holding a [`Pattern`] can rely on it: every reference resolves, the step graph
//! has no cycle, names, versions, checksums, durations and regexes are well formed.
//!
//! The serde form is the normalised YAML shape (`url` becomes `urls`, memory is in bytes,
//! durations are humantime strings); it is what `pmesh pattern show -o json` prints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::output_spec::{FromFile, Output, OutputType};
use super::param_value::ParamValue;

/// The only `apiVersion` this build understands.
pub const API_VERSION: &str = "pmesh/v1";
/// The only `kind`.
pub const KIND: &str = "Pattern";

/// A pattern: a versioned, parameterised recipe of containers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pattern {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always [`KIND`].
    pub kind: String,
    /// Name, version, description and category.
    pub metadata: Metadata,
    /// The inputs of the pattern, by name.
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    /// Binaries the steps need, downloaded and checksummed before the first step, by name.
    #[serde(default)]
    pub artifacts: BTreeMap<String, Artifact>,
    /// Container images the steps run, by name.
    #[serde(default)]
    pub images: BTreeMap<String, Image>,
    /// Files of the pattern put in the instance's work directory, rendered when templates.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// The steps, by name; they form a DAG through `needs`.
    pub steps: BTreeMap<String, Step>,
    /// What a successful run reports, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, Output>,
}

/// Who the pattern is and what it is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// A DNS label: lowercase letters, digits and `-`, at most 63 characters.
    pub name: String,
    /// The pattern's semantic version.
    pub version: semver::Version,
    /// One line saying what the pattern builds.
    #[serde(default)]
    pub description: String,
    /// What kind of pattern this is.
    pub category: Category,
}

/// The three kinds of pattern in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// A tool run once (OVFTool, govc, PowerCLI).
    BasicTool,
    /// A long-running service labs share (DNS, LDAP, NFS).
    SharedService,
    /// A workload domain built from other patterns (vCenter, NSX, VCF).
    WorkloadDomain,
}

impl Category {
    /// Every category, as written in YAML.
    pub const ALL: [&'static str; 3] = ["basic-tool", "shared-service", "workload-domain"];
}

/// The type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Any text; `validation.pattern` may constrain it.
    String,
    /// A 64-bit integer; `validation.min` and `validation.max` may bound it.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// An IPv4 or IPv6 address.
    Ip,
    /// An address and a prefix length, such as `10.0.0.0/24`.
    Cidr,
    /// A DNS name (labels of letters, digits and `-`), optionally ending with a dot.
    Hostname,
    /// A TCP or UDP port, 1 to 65535.
    Port,
    /// One of `validation.values`.
    Enum,
    /// A list of `validation.items` (string by default).
    List,
    /// A mapping from names to `validation.items` (string by default).
    Map,
    /// A string that is never logged, shown or put on a command line.
    Secret,
}

impl ParamType {
    /// Every type, as written in YAML.
    pub const ALL: [&'static str; 11] = ["string", "integer", "boolean", "ip", "cidr", "hostname", "port", "enum", "list", "map", "secret"];

    /// The types a list item or map value may have.
    pub const ITEMS: [&'static str; 7] = ["string", "integer", "boolean", "ip", "cidr", "hostname", "port"];

    /// The type named `name` in YAML.
    pub fn from_name(name: &str) -> Option<ParamType> {
        Some(match name {
            "string" => ParamType::String,
            "integer" => ParamType::Integer,
            "boolean" => ParamType::Boolean,
            "ip" => ParamType::Ip,
            "cidr" => ParamType::Cidr,
            "hostname" => ParamType::Hostname,
            "port" => ParamType::Port,
            "enum" => ParamType::Enum,
            "list" => ParamType::List,
            "map" => ParamType::Map,
            "secret" => ParamType::Secret,
            _ => return None,
        })
    }

    /// The name of the type in YAML.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
            ParamType::Ip => "ip",
            ParamType::Cidr => "cidr",
            ParamType::Hostname => "hostname",
            ParamType::Port => "port",
            ParamType::Enum => "enum",
            ParamType::List => "list",
            ParamType::Map => "map",
            ParamType::Secret => "secret",
        }
    }

    /// Whether a value of this type can be put into a string (`${name}`).
    pub fn is_scalar(self) -> bool {
        !matches!(self, ParamType::List | ParamType::Map)
    }
}

/// One input of a pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// The type values must have.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Whether a run must supply a value.
    #[serde(default)]
    pub required: bool,
    /// The value when a run supplies none; never set for secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<ParamValue>,
    /// What the parameter means, shown by `pmesh pattern show`.
    #[serde(default)]
    pub description: String,
    /// Constraints beyond the type.
    #[serde(default, skip_serializing_if = "Validation::is_empty")]
    pub validation: Validation,
}

/// Constraints on a parameter's values. Lint accepts only those that apply to the type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validation {
    /// Smallest allowed value (integer, port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// Largest allowed value (integer, port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// A regex the whole value must match (string, secret), or each item (list) or value (map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Whether the value (or each item of a list or map) may hold line breaks and tabs; other
    /// control characters are always refused, and without it these are too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multiline: bool,
    /// The allowed values (enum; required there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// The type of list items or map values (list, map); string when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<ParamType>,
    /// List items or map values that are mappings with these fields, each checked as a
    /// scalar param (the long form, as Compose's long syntax); with a `pattern`, an item may
    /// also be a string matching it (the short form).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, Param>,
}

impl Validation {
    /// Whether no constraint is set.
    pub fn is_empty(&self) -> bool {
        *self == Validation::default()
    }
}

/// A binary the pattern needs, fetched from the first URL that works and checked by sha256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Where to fetch it, in order of preference; may hold `${param}` placeholders.
    pub urls: Vec<String>,
    /// The lowercase hex sha256 of the content.
    pub sha256: String,
    /// The size in bytes.
    pub size: u64,
    /// The secret param holding a bearer token or `user:password` for the download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
}

/// Where a container image comes from: exactly one of three sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum Image {
    /// A reference pulled from a registry (`name:tag` or `name@sha256:…`).
    Ref(String),
    /// A tarball from the named artifact, loaded with `docker load`.
    Load(String),
    /// Built from a context directory inside the pattern.
    Build(Build),
}

/// An image build from the pattern's own files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// The context directory, relative to the pattern directory.
    pub context: String,
    /// The Dockerfile, relative to the context.
    #[serde(default = "default_dockerfile")]
    pub dockerfile: String,
    /// Artifacts placed in the context, each at its root under its name (the user's
    /// download of a tool, say); their sha256s are part of the image's tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
    /// Build args (`ARG`), which may hold placeholders but never a secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
}

fn default_dockerfile() -> String {
    "Dockerfile".to_owned()
}

/// A file of the pattern put in the instance's work directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// The file, relative to the pattern directory.
    pub path: String,
    /// Whether it is a minijinja template rendered with the params.
    #[serde(default)]
    pub template: bool,
    /// Its name in the instance's work directory (what mounts refer to); `path` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
}

impl FileSpec {
    /// The name the file has in the work directory.
    pub fn dest(&self) -> &str {
        self.dest.as_deref().unwrap_or(&self.path)
    }
}

pub use super::step::{
    Action, BasicAuth, Container, Exec, Healthcheck, JsonCondition, Mount, MountSource, PortMapping, PortValue, Probe, Protocol, Resources,
    Restart, Retries, Service, Step, StepKind, Trust, Wait,
};
