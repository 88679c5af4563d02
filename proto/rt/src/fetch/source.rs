//! Where an artifact's bytes come from: an HTTP(S) URL with optional credentials, or any
//! [`RangeSource`] (the agent's is the master's depot over gRPC).
//!
//! Credentials live in [`Secret`]s, whose `Debug` is `<redacted>`, and a source describes
//! itself without them: a URL loses its password and its query string (presigned URLs carry
//! tokens there), so descriptions are safe in errors and logs.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_core::Stream;
pub use pmesh_proto::pattern::Secret;

use super::FetchError;

/// A stream of an artifact's bytes, from the offset it was opened at.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, FetchError>> + Send>>;

/// A source that can serve an artifact from any offset: how the fetcher resumes.
///
/// Errors tell the fetcher what to do: [`FetchError::Network`] and [`FetchError::Stalled`]
/// are retried (resuming from what arrived), [`FetchError::NotFound`],
/// [`FetchError::Unauthorized`] and the like move on to the next source.
#[async_trait::async_trait]
pub trait RangeSource: Send + Sync {
    /// Names the source in errors and logs; never include a secret.
    fn describe(&self) -> String;

    /// The artifact's bytes from `offset` to its end.
    ///
    /// # Errors
    /// As the trait explains; an error from the stream itself is treated the same way.
    async fn open(&self, offset: u64) -> Result<ByteStream, FetchError>;
}

/// Credentials for an HTTP source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer TOKEN`.
    Bearer(Secret),
    /// HTTP basic authentication.
    Basic { user: String, password: Secret },
}

impl Auth {
    /// Reads a pattern's `auth` secret: `user:password` is basic authentication, anything
    /// without a colon is a bearer token.
    pub fn parse(value: &Secret) -> Auth {
        match value.expose().split_once(':') {
            Some((user, password)) => Auth::Basic { user: user.to_owned(), password: Secret::new(password) },
            None => Auth::Bearer(value.clone()),
        }
    }
}

/// One place to fetch an artifact from.
#[derive(Clone)]
pub enum Source {
    /// An `http://` or `https://` URL.
    Http { url: String, auth: Option<Auth> },
    /// Anything else that can serve ranges.
    Range(Arc<dyn RangeSource>),
}

impl Source {
    /// An HTTP(S) source without credentials.
    pub fn http(url: impl Into<String>) -> Source {
        Source::Http { url: url.into(), auth: None }
    }

    /// How the source appears in errors and logs: URLs without password or query.
    pub fn describe(&self) -> String {
        match self {
            Source::Http { url, .. } => redact_url(url),
            Source::Range(source) => source.describe(),
        }
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Http { auth, .. } => f.debug_struct("Http").field("url", &self.describe()).field("auth", auth).finish(),
            Source::Range(_) => f.debug_tuple("Range").field(&self.describe()).finish(),
        }
    }
}

/// `url` without its password and query string; a URL that does not parse is not shown at
/// all, since where its secret would be cannot be known.
pub(crate) fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return "<an unparsable URL>".into();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("redacted"));
    }
    if parsed.query().is_some() {
        parsed.set_query(Some("redacted"));
    }
    parsed.set_fragment(None);
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, expected: &str) {
        assert_eq!(redact_url(url), expected, "{url}");
    }

    #[test]
    fn urls_lose_passwords_and_queries() {
        check("https://depot.lab/vcsa.ova", "https://depot.lab/vcsa.ova");
        check("https://admin:hunter2@depot.lab/a.iso", "https://admin:redacted@depot.lab/a.iso");
        check("https://s3.lab/b/a.iso?X-Amz-Signature=abc#frag", "https://s3.lab/b/a.iso?redacted");
        check("not a url hunter2", "<an unparsable URL>");
    }

    #[test]
    fn auth_parses_basic_and_bearer_and_never_prints_secrets() {
        let basic = Auth::parse(&Secret::new("admin:hunter2"));
        assert_eq!(basic, Auth::Basic { user: "admin".into(), password: Secret::new("hunter2") });
        let bearer = Auth::parse(&Secret::new("tok3n"));
        assert_eq!(bearer, Auth::Bearer(Secret::new("tok3n")));
        let source = Source::Http { url: "https://u:hunter2@h/x?sig=tok3n".into(), auth: Some(basic) };
        let printed = format!("{source:?} {bearer:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("tok3n"), "{printed}");
    }
}
