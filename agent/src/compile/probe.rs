//! Compiling an `http` probe's HTTPS parts: the pin (a CA or a thumbprint) checked against
//! the URL once its placeholders are filled, and basic auth whose password comes from a
//! secret param and stays a [`pattern::Secret`] in the plan.

use pmesh_proto::pattern::spec::{BasicAuth, Trust as SpecTrust};
use pmesh_proto::pattern::{self, ParamValue};

use super::{CompileError, Placeholders};
use crate::executor::plan::Trust;

/// The trust of a probe of `url` (substituted): required for `https://`, refused for `http://`.
pub(super) fn trust(
    placeholders: &Placeholders<'_>,
    url: &str,
    spec: Option<&SpecTrust>,
    place: &str,
) -> Result<Option<Trust>, CompileError> {
    let https = url.starts_with("https://");
    let trust =
        match spec {
            None if https => {
                return Err(CompileError(format!(
                    "{place}: {url} is https:// and the probe pins nothing: give `thumbprint`, `ca` or `ca_file`"
                )))
            }
            None => return Ok(None),
            Some(_) if !https => return Err(CompileError(format!("{place}: {url} is not https://, so a pin means nothing"))),
            Some(SpecTrust::Ca(pem)) => {
                let pem = placeholders.text(pem, place)?;
                if !pem.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(CompileError(format!("{place}: `ca` holds no PEM certificate")));
                }
                Trust::Ca(pem)
            }
            Some(SpecTrust::CaFile(path)) => Trust::CaFile(placeholders.text(path, place)?.into()),
            Some(SpecTrust::Thumbprint(text)) => {
                let text = placeholders.text(text, place)?;
                Trust::Thumbprint(parse_thumbprint(&text).ok_or_else(|| {
                    CompileError(format!("{place}: `{text}` is not a SHA-256 thumbprint (64 hex digits, colons allowed)"))
                })?)
            }
        };
    Ok(Some(trust))
}

/// 64 hex digits, with or without colons between the pairs.
pub(crate) fn parse_thumbprint(text: &str) -> Option<[u8; 32]> {
    let digits: String = text.trim().chars().filter(|character| *character != ':').collect();
    let bytes = hex::decode(digits).ok()?;
    bytes.try_into().ok()
}

/// The user name (placeholders filled) and the secret param's value.
pub(super) fn basic_auth(
    placeholders: &Placeholders<'_>,
    auth: &BasicAuth,
    place: &str,
) -> Result<(String, pattern::Secret), CompileError> {
    let username = placeholders.text(&auth.username, place)?;
    let name = auth.password.strip_prefix("${").and_then(|rest| rest.strip_suffix('}')).unwrap_or(&auth.password);
    match placeholders.params.get(name) {
        Some(ParamValue::Secret(secret)) => Ok((username, secret.clone())),
        _ => Err(CompileError(format!("{place}: `auth.password` must be a secret param with a value"))),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_thumbprint;

    #[test]
    fn thumbprints_parse_with_or_without_colons() {
        let bytes: Vec<u8> = (0u8..32).collect();
        let plain = hex::encode(&bytes);
        let colons: Vec<String> = bytes.iter().map(|byte| format!("{byte:02X}")).collect();
        assert_eq!(parse_thumbprint(&plain).map(Vec::from), Some(bytes.clone()));
        assert_eq!(parse_thumbprint(&colons.join(":")).map(Vec::from), Some(bytes));
        assert_eq!(parse_thumbprint(&plain[..62]), None);
        assert_eq!(parse_thumbprint("not hex"), None);
    }
}
