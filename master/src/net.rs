//! Sockets: the TLS accept loop behind the gRPC server, and dialling a mesh peer.
//!
//! Handshakes run in their own tasks, bounded in time and number, so one slow or hostile
//! client cannot hold up the others; only finished handshakes reach tonic.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::TokioIo;
use pmesh_proto::identity::Identity;
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HANDSHAKES: usize = 256;

/// TLS streams accepted on `listener` until `shutdown`, as tonic's incoming stream.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = handshakes.clone().acquire_owned().await else { break };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _ = tcp.set_nodelay(true);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(err)) => tracing::info!(%peer, error = %err, "TLS handshake refused"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A lazily connecting channel to the mesh peer `server` at `address` (`host:port`).
///
/// # Errors
/// When `address` or the identity's DNS name is malformed.
pub fn channel(
    address: &str,
    server: &Identity,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> anyhow::Result<Channel> {
    let server_name = ServerName::try_from(server.dns_name()).context("identity DNS name")?;
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .with_context(|| format!("invalid address {address:?}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let address = address.to_owned();
    let connector = tower::service_fn(move |_uri| {
        let connector = TlsConnector::from(tls.clone());
        let server_name = server_name.clone();
        let address = address.clone();
        async move {
            let tcp = TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            let stream = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}
