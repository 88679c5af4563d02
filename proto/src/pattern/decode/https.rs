//! Decoding an `http` probe: its URL and status, and for HTTPS the trust it pins (`ca`,
//! `ca_file` or `thumbprint`), basic `auth` with the password from a secret param, and a
//! `json` condition on a field of the body.

use super::super::spec::{BasicAuth, JsonCondition, ParamType, Probe, Trust};
use super::super::yaml::Node;
use super::{Decoder, Fields};

/// The fields of an `http` probe.
pub(crate) const HTTP_PROBE_FIELDS: [&str; 7] = ["url", "status", "ca", "ca_file", "thumbprint", "auth", "json"];
const TRUST_FIELDS: [&str; 3] = ["ca", "ca_file", "thumbprint"];
const AUTH_FIELDS: [&str; 2] = ["username", "password"];
const JSON_FIELDS: [&str; 2] = ["path", "equals"];

/// Whether `text` is a SHA-256 thumbprint: 64 hex digits, optionally in colon-separated pairs.
pub(crate) fn is_thumbprint(text: &str) -> bool {
    let digits: String = text.chars().filter(|character| *character != ':').collect();
    let pairs_ok = !text.contains(':') || text.split(':').all(|pair| pair.len() == 2);
    digits.len() == 64 && pairs_ok && digits.chars().all(|character| character.is_ascii_hexdigit())
}

impl Decoder<'_> {
    pub(super) fn http_probe(&mut self, probe_node: &Node, fields: &Fields<'_>) -> Option<Probe> {
        let url_node = fields.required(self, "url").map(|(_, node)| node);
        let url = url_node.and_then(|node| self.url(node));
        let status = match fields.get("status") {
            Some((_, node)) => self.integer(node, 100, 599).map(|status| status as u16),
            None => Some(200),
        };
        let trust = self.trust(probe_node, fields, url.as_deref());
        let auth = match fields.get("auth") {
            Some((key, node)) => self.basic_auth(key, node).map(Some),
            None => Some(None),
        };
        let json = match fields.get("json") {
            Some((key, node)) => self.json_condition(key, node).map(Some),
            None => Some(None),
        };
        Some(Probe::Http { url: url?, status: status?, trust: trust?, auth: auth?, json: json? })
    }

    /// `None` when reported; `Some(None)` for a plain `http://` URL (or one a param decides).
    fn trust(&mut self, probe_node: &Node, fields: &Fields<'_>, url: Option<&str>) -> Option<Option<Trust>> {
        let present: Vec<(&Node, &Node)> = TRUST_FIELDS.iter().filter_map(|field| fields.get(field)).collect();
        let (key, node) = match present.as_slice() {
            [] => {
                if url.is_some_and(|url| url.starts_with("https://")) {
                    self.report.error(
                        probe_node.mark,
                        "an https:// probe pins the server: give `thumbprint` (SHA-256 of its certificate), `ca` (PEM) or `ca_file`",
                    );
                    return None;
                }
                return Some(None);
            }
            [one] => *one,
            [_, (second, _), ..] => {
                self.report.error(second.mark, "a probe takes one of `ca`, `ca_file` or `thumbprint`, not several");
                return None;
            }
        };
        if url.is_some_and(|url| url.starts_with("http://")) {
            let field = key.as_str().unwrap_or_default();
            self.report.error(key.mark, format!("`{field}` is for https:// URLs; this probe's URL is http://"));
            return None;
        }
        let text = self.text(node, false)?;
        let literal = !text.contains("${");
        match key.as_str().unwrap_or_default() {
            "ca" => {
                if literal && !text.contains("-----BEGIN CERTIFICATE-----") {
                    self.report.error(node.mark, "`ca` is PEM text with at least one `-----BEGIN CERTIFICATE-----` block");
                    return None;
                }
                Some(Some(Trust::Ca(text)))
            }
            "ca_file" => {
                if literal && !text.starts_with('/') {
                    self.report.error(node.mark, format!("`{text}`: `ca_file` is an absolute path on the agent host"));
                    return None;
                }
                Some(Some(Trust::CaFile(text)))
            }
            _ => {
                if literal && !is_thumbprint(&text) {
                    self.report.error(node.mark, format!("`{text}` is not a SHA-256 thumbprint (64 hex digits, colons allowed)"));
                    return None;
                }
                Some(Some(Trust::Thumbprint(text)))
            }
        }
    }

    fn basic_auth(&mut self, key: &Node, node: &Node) -> Option<BasicAuth> {
        let fields = self.fields(node, key.mark, &AUTH_FIELDS, "auth")?;
        let username = fields.required(self, "username").and_then(|(_, node)| self.text(node, false));
        let password = fields.required(self, "password").and_then(|(_, node)| {
            let text = self.string(node)?;
            let name = text.strip_prefix("${").and_then(|rest| rest.strip_suffix('}'));
            let Some(name) = name.filter(|name| !name.contains(['{', '}', '$'])) else {
                self.report.error(node.mark, "`password` is `${name}` of a secret param, so the password never sits in the pattern");
                return None;
            };
            match self.scope.params.get(name).map(|info| info.kind) {
                None => {
                    self.report.error(node.mark, format!("`${{{name}}}` refers to `{name}`, which is not a param"));
                    None
                }
                Some(Some(kind)) if kind != ParamType::Secret => {
                    self.report.error(node.mark, format!("`password` param `{name}` must be of type secret, not {}", kind.name()));
                    None
                }
                Some(_) => Some(text),
            }
        });
        Some(BasicAuth { username: username?, password: password? })
    }

    fn json_condition(&mut self, key: &Node, node: &Node) -> Option<JsonCondition> {
        let fields = self.fields(node, key.mark, &JSON_FIELDS, "json")?;
        let path = fields.required(self, "path").and_then(|(_, node)| {
            let text = self.text(node, false)?;
            if text.split('.').any(str::is_empty) {
                self.report.error(node.mark, format!("`{text}` is not a path of keys separated by `.`"));
                return None;
            }
            Some(text)
        });
        let equals = fields.required(self, "equals").and_then(|(_, node)| self.text(node, false));
        Some(JsonCondition { path: path?, equals: equals? })
    }
}

#[cfg(test)]
mod tests {
    use super::is_thumbprint;

    #[test]
    fn thumbprints() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert!(is_thumbprint(&hex));
        assert!(is_thumbprint(&colons));
        assert!(!is_thumbprint(&hex[..62]));
        assert!(!is_thumbprint(&"zz".repeat(32)));
        assert!(!is_thumbprint(&format!("{}:{}", &hex[..3], &hex[3..])));
    }
}
