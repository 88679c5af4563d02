//! Dialling a mesh peer with the mesh's TLS (the accept side is [`crate::accept`]).
//!
//! Under TLS 1.3 a server refuses a client certificate *after* the client's handshake has
//! finished, so the refusal (an alert) arrives on the connection, and hyper would report the
//! call as merely "connection closed". So the dialler waits for the server's first bytes (the
//! HTTP/2 server preface, which a server sends unprompted) before handing the connection to
//! hyper: a refusal then fails the connect with the TLS alert in its error chain, and the
//! bytes read are replayed to hyper. Connections also record any later TLS error in a
//! [`TlsFailure`].

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::TokioIo;
use pmesh_proto::identity::Identity;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

/// The last TLS error seen on a dialled channel's connections.
#[derive(Debug, Clone, Default)]
pub struct TlsFailure(Arc<Mutex<Option<rustls::Error>>>);

impl TlsFailure {
    /// The recorded error, if a connection died of one.
    pub fn get(&self) -> Option<rustls::Error> {
        self.0.lock().map(|slot| slot.clone()).unwrap_or(None)
    }

    fn record(&self, err: &std::io::Error) {
        if let Some(tls) = err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            if let Ok(mut slot) = self.0.lock() {
                *slot = Some(tls.clone());
            }
        }
    }
}

/// A channel to a mesh peer, and where its connections record TLS failures.
#[derive(Debug, Clone)]
pub struct Dialled {
    pub channel: Channel,
    pub tls_failure: TlsFailure,
    /// When the certificate this side presents is valid (unix seconds), to explain a refusal.
    presented: Option<(i64, i64)>,
}

impl Dialled {
    /// Notes the validity of the certificate this side presents, so that a peer's
    /// `certificate_expired` alert can be told apart from "not valid yet" and a wrong clock.
    pub fn presenting(mut self, not_before: i64, not_after: i64) -> Dialled {
        self.presented = Some((not_before, not_after));
        self
    }

    /// One sentence for a failed call on this channel, if the failure is recognised.
    pub fn explain(&self, status: &tonic::Status) -> Option<pmesh_proto::tls::Explanation> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_secs() as i64).unwrap_or(0);
        let own = self.presented.map(|(not_before, not_after)| pmesh_proto::tls::OwnValidity { not_before, not_after, now });
        pmesh_proto::tls::explain_with_own(status, self.tls_failure.get().as_ref(), own)
    }
}

/// A lazily connecting channel to the mesh peer `server` at `address` (`host:port`); each
/// connection verifies that the peer holds `server`'s identity.
///
/// # Errors
/// When `address` or the identity's DNS name is malformed.
pub fn dial(address: &str, server: &Identity, tls: Arc<rustls::ClientConfig>, timeout: Duration) -> anyhow::Result<Dialled> {
    let server_name = ServerName::try_from(server.dns_name()).context("identity DNS name")?;
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .with_context(|| format!("invalid address {address:?}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let address = address.to_owned();
    let tls_failure = TlsFailure::default();
    let recorder = tls_failure.clone();
    let connector = tower::service_fn(move |_uri| {
        let connector = TlsConnector::from(tls.clone());
        let server_name = server_name.clone();
        let address = address.clone();
        let failure = recorder.clone();
        async move {
            let tcp = TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            let mut stream = connector.connect(server_name, tcp).await.inspect_err(|err| failure.record(err))?;
            let mut first = vec![0u8; 16 * 1024];
            let n_read = stream.read(&mut first).await.inspect_err(|err| failure.record(err))?;
            if n_read == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the peer closed the connection right after the TLS handshake",
                ));
            }
            first.truncate(n_read);
            Ok::<_, std::io::Error>(TokioIo::new(Recording { inner: stream, replay: first, failure }))
        }
    });
    Ok(Dialled { channel: endpoint.connect_with_connector_lazy(connector), tls_failure, presented: None })
}

/// A client TLS stream that first replays the bytes read while checking acceptance, and
/// records the TLS error it fails with.
struct Recording<S> {
    inner: S,
    replay: Vec<u8>,
    failure: TlsFailure,
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !this.replay.is_empty() {
            let n_copied = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n_copied]);
            this.replay.drain(..n_copied);
            return Poll::Ready(Ok(()));
        }
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Err(err)) = &result {
            this.failure.record(err);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Err(err)) = &result {
            this.failure.record(err);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
