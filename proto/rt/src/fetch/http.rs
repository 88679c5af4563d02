//! HTTP(S) sources: the client (rustls with ring, verification always on, the host's trust
//! store plus an optional CA bundle) and one ranged GET, with its answer sorted into what the
//! fetcher acts on.
//!
//! Responses are read as they are: the client asks for no compression, so the bytes hashed
//! are the bytes the server stores.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use reqwest::StatusCode;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::source::{Auth, ByteStream};
use super::FetchError;

/// Builds the client: TLS verification cannot be turned off, only extended with `ca_bundle`.
pub(crate) fn client(ca_bundle: Option<&[u8]>, connect_timeout: Duration) -> Result<reqwest::Client, FetchError> {
    let extra_roots = match ca_bundle {
        Some(pem) => parse_bundle(pem)?,
        None => Vec::new(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| FetchError::Invalid(format!("configuring TLS: {error}")))?;
    // The host's trust store (as curl would use it) plus the bundle; a host without one
    // falls back to Mozilla's roots rather than trusting nothing but the bundle.
    let config = match rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots.clone(), provider) {
        // "dangerous" is rustls' name for any verifier of one's own; this one verifies fully.
        Ok(verifier) => builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth(),
        Err(error) => {
            tracing::info!(%error, "no usable system trust store; using the Mozilla roots");
            let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            for cert in extra_roots {
                roots.add(cert).map_err(|error| FetchError::Invalid(format!("the CA bundle: {error}")))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .connect_timeout(connect_timeout)
        .user_agent(concat!("pmesh/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| FetchError::Invalid(format!("building the HTTP client: {}", chain(&error))))
}

fn parse_bundle(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, FetchError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|error| FetchError::Invalid(format!("reading the CA bundle: {error}")))?;
    if certs.is_empty() {
        return Err(FetchError::Invalid("the CA bundle holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// What a ranged GET answered.
pub(crate) enum Opened {
    /// A body starting at `start`: the offset asked for, or 0 when the server sent it all.
    Body { start: u64, total: Option<u64>, validator: Option<String>, body: ByteStream },
    /// 416: the range starts at or past the end; `total` is the size the server gave.
    Unsatisfiable { total: Option<u64> },
}

/// One GET of `url` from `offset`, conditional on `validator` when resuming.
pub(crate) async fn open(
    client: &reqwest::Client,
    url: &str,
    auth: Option<&Auth>,
    origin: &str,
    offset: u64,
    validator: Option<&str>,
    stall: Duration,
) -> Result<Opened, FetchError> {
    let url = reqwest::Url::parse(url)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .ok_or_else(|| FetchError::Invalid(format!("{origin} is not an http:// or https:// URL")))?;
    let mut request = client.get(url);
    if offset > 0 {
        request = request.header(RANGE, format!("bytes={offset}-"));
        if let Some(validator) = validator {
            request = request.header(IF_RANGE, validator);
        }
    }
    request = match auth {
        Some(Auth::Bearer(token)) => request.bearer_auth(token.expose()),
        Some(Auth::Basic { user, password }) => request.basic_auth(user, Some(password.expose())),
        None => request,
    };
    let response = match tokio::time::timeout(stall, request.send()).await {
        Err(_) => return Err(FetchError::Stalled { origin: origin.to_owned(), after: stall }),
        Ok(result) => result.map_err(|error| classify(error, origin))?,
    };
    let status = response.status();
    let headers = response.headers();
    let header = |name| headers.get(name).and_then(|value: &reqwest::header::HeaderValue| value.to_str().ok());
    let (start, total) = match status {
        StatusCode::OK => (0, response.content_length()),
        StatusCode::PARTIAL_CONTENT => {
            let (start, total) = header(CONTENT_RANGE)
                .and_then(parse_content_range)
                .ok_or_else(|| FetchError::Protocol { origin: origin.to_owned(), detail: "a 206 without a usable Content-Range".into() })?;
            if start != offset {
                return Err(FetchError::Protocol {
                    origin: origin.to_owned(),
                    detail: format!("asked for bytes from {offset}, got bytes from {start}"),
                });
            }
            (start, total)
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let total = header(CONTENT_RANGE).and_then(|range| range.strip_prefix("bytes */")).and_then(|total| total.trim().parse().ok());
            return Ok(Opened::Unsatisfiable { total });
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(FetchError::Unauthorized { origin: origin.to_owned(), status: status.as_u16() })
        }
        StatusCode::NOT_FOUND | StatusCode::GONE => return Err(FetchError::NotFound { origin: origin.to_owned() }),
        _ => return Err(FetchError::Status { origin: origin.to_owned(), status: status.as_u16() }),
    };
    // If-Range takes a strong ETag or a date; a weak ETag cannot protect a resume.
    let validator = header(ETAG).filter(|etag| !etag.starts_with("W/")).or_else(|| header(LAST_MODIFIED)).map(str::to_owned);
    let body_origin = origin.to_owned();
    let body = response.bytes_stream().map_err(move |error| classify(error, &body_origin)).boxed();
    Ok(Opened::Body { start, total, validator, body })
}

/// `bytes START-END/TOTAL` → (START, TOTAL), TOTAL `None` when `*`.
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        total => Some(total.parse().ok()?),
    };
    Some((start, total))
}

/// Sorts a client error: TLS verification (permanent), everything else a network failure
/// (retried). The URL is left out: `origin` names the source without its secrets.
fn classify(error: reqwest::Error, origin: &str) -> FetchError {
    let error = error.without_url();
    if let Some(tls) = find_rustls(&error) {
        return FetchError::Tls { origin: origin.to_owned(), detail: explain_rustls(tls) };
    }
    let detail = if error.is_timeout() { format!("timed out ({})", chain(&error)) } else { chain(&error) };
    FetchError::Network { origin: origin.to_owned(), detail }
}

/// The rustls error anywhere in the chain. An `io::Error`'s `source()` skips the error it
/// wraps (and connectors nest them), so the walk steps into each one instead.
fn find_rustls<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = match error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

fn explain_rustls(error: &rustls::Error) -> String {
    use rustls::CertificateError as Cert;
    match error {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature) => {
            "the server's certificate was not issued by a CA this host trusts".into()
        }
        rustls::Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            "the server's certificate is not valid for this host name".into()
        }
        rustls::Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => "the server's certificate has expired".into(),
        rustls::Error::InvalidCertificate(Cert::NotValidYet | Cert::NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet: check both clocks".into()
        }
        other => other.to_string(),
    }
}

/// An error and its causes, `: `-separated, each said once.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(error) = current {
        let text = error.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        current = error.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        let check = |value: &str, expected| assert_eq!(parse_content_range(value), expected, "{value}");
        check("bytes 100-199/200", Some((100, Some(200))));
        check("bytes 0-0/*", Some((0, None)));
        check("bytes 5-4/10", None);
        check("bytes */10", None);
        check("items 0-1/2", None);
    }

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        let error = client(Some(b"not pem"), Duration::from_secs(1)).expect_err("refused");
        assert_eq!(error.to_string(), "the CA bundle holds no PEM certificate");
    }
}
