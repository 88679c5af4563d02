//! A real HTTPS server on loopback for the probe and appliance tests: its own CA and a server
//! certificate for `127.0.0.1` and `localhost` made per server (so a test can pin its CA or
//! its thumbprint, and another server's are wrong), answering each GET with what the test's
//! responder says for the n-th request (an appliance that is "STABLE" after a few calls), and
//! recording every request that got past the handshake.
//!
//! It runs on threads, one connection at a time, each closed after one response: a probe
//! makes one request per attempt.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// A request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
}

/// A status and a body, answered with `Content-Type: application/json`.
pub type Reply = (u16, String);

type Responder = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

/// The server; it stops when dropped.
pub struct TlsServer {
    pub port: u16,
    /// The PEM of the CA that signed the server's certificate.
    pub ca_pem: String,
    /// The SHA-256 of the server's certificate, colon-separated upper-case hex.
    pub thumbprint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl TlsServer {
    /// Serves on `127.0.0.1:0`; `respond` is given the request's index (from 0) and the request.
    pub fn start(respond: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> TlsServer {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "pmesh test appliance CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("server key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        let thumbprint = Sha256::digest(cert.der()).iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(":");
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone(), ca_cert.der().clone()];
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
            .expect("server config");
        let config = Arc::new(config);

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let respond: Arc<Responder> = Arc::new(respond);
        let (thread_seen, thread_stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                // A failed handshake (a client that refused the certificate) ends the
                // connection and records nothing.
                let _ = serve(stream, &config, &thread_seen, respond.as_ref());
            }
        });
        TlsServer { port, ca_pem: ca_cert.pem(), thumbprint, seen, stop }
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// Every request that got past the handshake, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("requests").clone()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(tcp: TcpStream, config: &Arc<rustls::ServerConfig>, seen: &Mutex<Vec<Seen>>, respond: &Responder) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let connection = rustls::ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
    let mut reader = BufReader::new(rustls::StreamOwned::new(connection, tcp));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            }
        }
    }
    let request = Seen { path, authorization };
    let index = {
        let mut all = seen.lock().expect("requests");
        all.push(request.clone());
        all.len() - 1
    };
    let (status, body) = respond(index, &request);
    let mut stream = reader.into_inner();
    let head =
        format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()?;
    stream.conn.send_close_notify();
    stream.flush()
}

/// The `Authorization` header a client sends for `username` and `password`.
pub fn basic(username: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{username}:{password}").into_bytes();
    let mut encoded = String::new();
    for chunk in input.chunks(3) {
        let bytes = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let triple = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for position in 0..4 {
            if position <= chunk.len() {
                encoded.push(ALPHABET[(triple >> (18 - 6 * position) & 63) as usize] as char);
            } else {
                encoded.push('=');
            }
        }
    }
    format!("Basic {encoded}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_auth_is_rfc_7617() {
        // The example of RFC 7617, section 2.
        assert_eq!(super::basic("Aladdin", "open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(super::basic("a", "b"), "Basic YTpi");
    }
}
