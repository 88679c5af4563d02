//! The probes of `wait` steps (what a readiness check asks, and its defaults) and
//! [`PortValue`], the port they and port mappings take.

use serde::{Deserialize, Serialize};

/// A readiness check. `tcp`, `http` and `dns` run from the agent host; `exec` runs inside a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum Probe {
    /// A TCP connection is accepted.
    Tcp {
        /// Host name or address.
        host: String,
        /// The port.
        port: PortValue,
    },
    /// An HTTP GET answers with the expected status.
    Http {
        /// The URL.
        url: String,
        /// The expected status code.
        #[serde(default = "default_http_status")]
        status: u16,
        /// How an `https://` URL's server is trusted; lint requires it for literal
        /// `https://` URLs and refuses it for `http://` ones.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trust: Option<Trust>,
        /// Basic auth, the password from a secret param.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auth: Option<BasicAuth>,
        /// A condition on a field of the JSON body.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        json: Option<JsonCondition>,
    },
    /// A DNS query gets an answer with at least one record.
    Dns {
        /// The server to ask.
        #[serde(default = "default_dns_server")]
        server: String,
        /// The server's port.
        #[serde(default = "default_dns_port")]
        port: PortValue,
        /// The name to look up.
        name: String,
        /// The record type, such as `A` or `SOA`.
        #[serde(default = "default_record_type", rename = "type")]
        record_type: String,
    },
    /// A command exits 0 inside a running service.
    Exec {
        /// The name of a `service` step.
        service: String,
        /// The command and its arguments.
        command: Vec<String>,
    },
}

/// How an HTTPS probe trusts the server's certificate. Exactly one; there is no "trust
/// anything" option, since a probe that accepts any certificate proves nothing about which
/// appliance answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Trust {
    /// PEM text of the CA certificates that must sign the server's chain (the host name is
    /// checked too), usually `${param}`.
    Ca(String),
    /// A PEM file of CA certificates on the agent host.
    CaFile(String),
    /// The SHA-256 of the server's certificate (DER), as hex, colons allowed: that exact
    /// certificate and no other (self-signed appliances).
    Thumbprint(String),
}

/// HTTP basic auth for a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name (placeholders allowed).
    pub username: String,
    /// `${name}` of a secret param: the password never sits in the pattern.
    pub password: String,
}

/// The probe succeeds only when the JSON body's field at `path` equals `equals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonCondition {
    /// Dot-separated keys (`mgmt_cluster_status.status`); a numeric key indexes an array.
    pub path: String,
    /// The expected value: a JSON string equal to it, or a number or boolean written so.
    pub equals: String,
}

fn default_http_status() -> u16 {
    200
}
fn default_dns_server() -> String {
    "127.0.0.1".to_owned()
}
fn default_dns_port() -> PortValue {
    PortValue::Number(53)
}
fn default_record_type() -> String {
    "A".to_owned()
}

/// The DNS record types a `dns` probe may ask for.
pub const DNS_RECORD_TYPES: [&str; 9] = ["A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT"];

/// A port given as a number or as a `${param}` placeholder naming a port or integer param.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortValue {
    /// A fixed port.
    Number(u16),
    /// `${name}`: the value of a param.
    Param(String),
}
