//! Per-call authorisation: the tower layer [`crate::serve()`] puts in front of both daemons'
//! services.
//!
//! The layer reads the peer's certificate that the TLS acceptor recorded on the connection,
//! turns it into [`CertFacts`], asks the daemon's [`Policy`] whether this identity may call this
//! method, and either refuses the call with a gRPC status or passes it on with a [`Caller`] in
//! the request's extensions. Handlers read the caller from there; none parses certificates.
//!
//! A call without a client certificate (the master's `Join` is the only one a policy lets
//! through) may send at most [`UNAUTHENTICATED_BODY_LIMIT`] bytes: the body is cut off there,
//! before tonic decodes it, so an anonymous peer cannot make a daemon buffer a large message.

use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use pmesh_proto::identity::{inspect, CertFacts};

/// The most bytes a call without a client certificate may send (a join request with its CSR
/// is well under 2 KiB).
pub const UNAUTHENTICATED_BODY_LIMIT: usize = 8 * 1024;

/// The authenticated caller of a request, when it presented a mesh certificate.
#[derive(Debug, Clone)]
pub struct Caller(pub Option<CertFacts>);

/// Decides whether `caller` may call the gRPC method at `path` (`/pmesh.v1.Master/Join`).
pub trait Policy: Send + Sync + 'static {
    /// # Errors
    /// The status to answer with: `Unauthenticated` when the caller has no acceptable
    /// certificate, `PermissionDenied` when its identity may not make this call.
    fn authorize(&self, path: &str, caller: Option<&CertFacts>) -> Result<(), Status>;
}

/// Wraps a service with authorisation by `policy`.
pub struct AuthzLayer<P> {
    policy: Arc<P>,
}

impl<P> Clone for AuthzLayer<P> {
    fn clone(&self) -> Self {
        AuthzLayer { policy: self.policy.clone() }
    }
}

impl<P> AuthzLayer<P> {
    /// A layer consulting `policy` on every call.
    pub fn new(policy: Arc<P>) -> Self {
        AuthzLayer { policy }
    }
}

impl<S, P> tower::Layer<S> for AuthzLayer<P> {
    type Service = Authz<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Authz { inner, policy: self.policy.clone() }
    }
}

/// The service [`AuthzLayer`] produces.
pub struct Authz<S, P> {
    inner: S,
    policy: Arc<P>,
}

impl<S: Clone, P> Clone for Authz<S, P> {
    fn clone(&self) -> Self {
        Authz { inner: self.inner.clone(), policy: self.policy.clone() }
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, P, ResBody> tower::Service<http::Request<Body>> for Authz<S, P>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    P: Policy,
    ResBody: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let caller = match peer_facts(request.extensions()) {
            Ok(facts) => facts,
            Err(status) => return Box::pin(async move { Ok(status.into_http()) }),
        };
        if let Err(status) = self.policy.authorize(request.uri().path(), caller.as_ref()) {
            tracing::warn!(
                method = request.uri().path(),
                caller = caller.as_ref().map(|facts| facts.identity.uri()).unwrap_or_default(),
                reason = status.message(),
                "call refused"
            );
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let mut request = if caller.is_none() { request.map(limited) } else { request };
        request.extensions_mut().insert(Caller(caller));
        Box::pin(self.inner.call(request))
    }
}

/// `body`, refused with a status once it passes [`UNAUTHENTICATED_BODY_LIMIT`].
fn limited(body: Body) -> Body {
    Body::new(http_body_util::Limited::new(body, UNAUTHENTICATED_BODY_LIMIT).map_err(|err| {
        if err.is::<http_body_util::LengthLimitError>() {
            Status::resource_exhausted(format!(
                "a call without a client certificate may send at most {} KiB",
                UNAUTHENTICATED_BODY_LIMIT / 1024
            ))
        } else {
            Status::from_error(err)
        }
    }))
}

/// The facts of the peer's leaf certificate, if it presented one.
///
/// # Errors
/// `Unauthenticated` when the certificate verified against the CA but carries no usable
/// pmesh identity.
fn peer_facts(extensions: &http::Extensions) -> Result<Option<CertFacts>, Status> {
    let Some(leaf) =
        extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|info| info.peer_certs()).and_then(|certs| certs.first().cloned())
    else {
        return Ok(None);
    };
    inspect(leaf.as_ref()).map(Some).map_err(|err| Status::unauthenticated(format!("client certificate refused: {err}")))
}

/// The methods gRPC health and reflection serve, which any mesh certificate may call.
pub fn is_introspection(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}
