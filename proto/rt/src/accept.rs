//! The accept loop behind both daemons' gRPC servers: TLS handshakes in their own tasks,
//! bounded in time and number, so one slow or hostile client cannot hold up the others; only
//! finished handshakes reach tonic.
//!
//! A peer address is held to its share: at most [`MAX_HANDSHAKES_PER_PEER`] handshakes in
//! flight, and at most [`MAX_ANONYMOUS_PER_PEER`] open connections without a client
//! certificate (the only call those may make is a join, which takes a second), each closed
//! after [`ANONYMOUS_LIFETIME`]. Connections with a mesh certificate are not limited here:
//! who they are is known, and the policy decides what they may do.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HANDSHAKES: usize = 256;
/// Handshakes one peer address may have in flight.
pub const MAX_HANDSHAKES_PER_PEER: usize = 64;
/// Connections without a client certificate one peer address may hold open.
pub const MAX_ANONYMOUS_PER_PEER: usize = 16;
/// How long a connection without a client certificate may stay open.
pub const ANONYMOUS_LIFETIME: Duration = Duration::from_secs(30);

/// An accepted connection, holding its peer's share until it closes.
pub struct Accepted {
    stream: TlsStream<TcpStream>,
    /// For a connection without a client certificate: its share, and when it is closed.
    anonymous: Option<(Share, Pin<Box<tokio::time::Sleep>>)>,
}

impl Connected for Accepted {
    type ConnectInfo = TlsConnectInfo<TcpConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl Accepted {
    /// An anonymous connection past its lifetime fails its next read or write; hyper closes it.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.anonymous.as_mut().is_some_and(|(_, deadline)| deadline.as_mut().poll(cx).is_ready())
    }
}

fn lifetime_over() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "a connection without a client certificate outlived its time")
}

impl AsyncRead for Accepted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(lifetime_over()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(lifetime_over()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Counts per peer address, shared by the accept loop and the connections.
#[derive(Clone, Default)]
struct PeerCounts(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl PeerCounts {
    /// One more for `peer`, unless it holds `limit` already.
    fn take(&self, peer: IpAddr, limit: usize) -> Option<Share> {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(peer).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(Share { counts: self.clone(), peer })
    }
}

/// One unit of a peer's count, given back when dropped.
struct Share {
    counts: PeerCounts,
    peer: IpAddr,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

/// TLS streams accepted on `listener` until `shutdown`, as tonic's incoming stream.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> ReceiverStream<std::io::Result<Accepted>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let (pending, anonymous) = (PeerCounts::default(), PeerCounts::default());
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of descriptors, most likely: back off rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(pending_share) = pending.take(peer.ip(), MAX_HANDSHAKES_PER_PEER) else {
                tracing::info!(%peer, "connection refused: too many handshakes in flight from this address");
                continue;
            };
            let Ok(permit) = handshakes.clone().acquire_owned().await else { break };
            let (acceptor, tx, anonymous) = (acceptor.clone(), tx.clone(), anonymous.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let _pending = pending_share;
                let _ = tcp.set_nodelay(true);
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => return tracing::info!(%peer, error = %err, "TLS handshake refused"),
                    Err(_) => return tracing::info!(%peer, "TLS handshake timed out"),
                };
                let has_certificate = stream.get_ref().1.peer_certificates().is_some_and(|certs| !certs.is_empty());
                let anonymous = if has_certificate {
                    None
                } else {
                    let Some(share) = anonymous.take(peer.ip(), MAX_ANONYMOUS_PER_PEER) else {
                        return tracing::info!(%peer, "connection refused: too many connections without a certificate from this address");
                    };
                    Some((share, Box::pin(tokio::time::sleep(ANONYMOUS_LIFETIME))))
                };
                let _ = tx.send(Ok(Accepted { stream, anonymous })).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_holds_at_most_its_share_and_gets_it_back() {
        let counts = PeerCounts::default();
        let (peer, other): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let shares: Vec<Share> = (0..3).map(|_| counts.take(peer, 3).expect("within the share")).collect();
        assert!(counts.take(peer, 3).is_none(), "a fourth is refused");
        assert!(counts.take(other, 3).is_some(), "another address has its own share");
        drop(shares);
        assert!(counts.take(peer, 3).is_some(), "closed connections give their share back");
        assert!(!counts.0.lock().unwrap().contains_key(&other), "an address with nothing open is forgotten");
    }
}
