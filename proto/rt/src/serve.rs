//! The one gRPC server both daemons run: mesh TLS on a bound listener, the daemon's policy in
//! front of every call, its service beside gRPC health and reflection, and a shutdown bounded
//! by a grace period.
//!
//! systemd hears READY once the server is about to accept (the caller has loaded its state and
//! bound the socket by then) and STOPPING once it has stopped.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;

use crate::authz::{AuthzLayer, Policy};

/// How often an idle connection is pinged, so a peer that vanished is noticed.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Serves `service` (with health and reflection) on `listener` until `shutdown`, then waits
/// at most `grace` for calls in flight.
///
/// Every call passes `policy` first (see [`crate::authz`]); `tls` decides which clients get
/// past the handshake.
///
/// # Errors
/// When the reflection service cannot be built or the server fails.
pub async fn serve<S, P>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    policy: Arc<P>,
    service: S,
    shutdown: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    P: Policy,
{
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<S>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pmesh_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    let incoming = crate::accept::incoming(listener, tls, shutdown.clone());
    crate::process::notify_ready();
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE))
        .layer(AuthzLayer::new(policy))
        .add_service(service)
        .add_service(health_service)
        .add_service(reflection)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    // tonic waits for every call in flight once `shutdown` fires; a stuck call (a stream
    // nobody reads) must not hold the daemon past its grace period.
    let result = tokio::select! {
        result = server => result.context("the gRPC server failed"),
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("in-flight calls outlived the shutdown grace period");
            Ok(())
        }
    };
    crate::process::notify_stopping();
    result
}
