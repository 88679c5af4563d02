//! A small HTTP/1.1 file server for the fetch tests, over plain TCP or TLS on 127.0.0.1:0.
//!
//! It serves one generated file at any path (but `/missing`), honours `Range: bytes=N-` and
//! `If-Range`, records every request, counts the body bytes it sent, and can be told to
//! misbehave: per request from a queue of one-shot faults, else with a standing fault.
//! One request per connection (`Connection: close`), so a cut connection is the response's.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The strong ETag of the served file.
pub const ETAG: &str = "\"v1\"";

/// How to misbehave on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection once the file's byte `at` is reached.
    CutAt(u64),
    /// Stop sending at byte `at` and hold the connection until the client gives up.
    StallAt(u64),
    /// Answer this status with an empty body.
    Status(u16),
    /// Serve the file with one byte changed.
    WrongBytes,
    /// Answer a ranged request with the whole file (200), as servers without ranges do.
    IgnoreRange,
}

/// What a request asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub authorization: bool,
}

pub struct Server {
    pub addr: SocketAddr,
    scheme: &'static str,
    state: Arc<State>,
}

struct State {
    body: Vec<u8>,
    bearer: Option<String>,
    requests: Mutex<Vec<Request>>,
    faults: Mutex<VecDeque<Fault>>,
    standing: Mutex<Option<Fault>>,
    served: AtomicU64,
}

/// `len` deterministic pseudo-random bytes (xorshift).
pub fn generate(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A CA and a certificate for 127.0.0.1 and localhost signed by it.
pub struct TestPki {
    pub ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl TestPki {
    pub fn new() -> TestPki {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "fetch test CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("server key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        TestPki { ca_pem: ca_cert.pem(), chain: vec![cert.der().clone(), ca_cert.der().clone()], key_der: key.serialize_der() }
    }

    fn acceptor(&self) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)
            .expect("server config");
        TlsAcceptor::from(Arc::new(config))
    }
}

impl Server {
    /// Serves `body` over plain HTTP; `bearer` makes it require that token.
    pub async fn start(body: Vec<u8>, bearer: Option<&str>) -> Server {
        Server::bind(body, bearer, None).await
    }

    /// Serves `body` over HTTPS with `pki`'s certificate.
    pub async fn start_tls(body: Vec<u8>, pki: &TestPki) -> Server {
        Server::bind(body, None, Some(pki.acceptor())).await
    }

    async fn bind(body: Vec<u8>, bearer: Option<&str>, tls: Option<TlsAcceptor>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(State {
            body,
            bearer: bearer.map(str::to_owned),
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
            standing: Mutex::new(None),
            served: AtomicU64::new(0),
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let accept_state = state.clone();
        // The task ends with the test's runtime.
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let state = accept_state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(stream, &state).await;
                            }
                        }
                        None => serve(tcp, &state).await,
                    }
                });
            }
        });
        Server { addr, scheme, state }
    }

    /// The file's URL (any path serves it but `/missing`).
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// Misbehaves once, on the next request without a fault queued before it.
    pub fn fault_once(&self, fault: Fault) {
        self.state.faults.lock().expect("faults").push_back(fault);
    }

    /// Misbehaves on every request without a one-shot fault.
    pub fn fault_always(&self, fault: Fault) {
        *self.state.standing.lock().expect("standing") = Some(fault);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().expect("requests").clone()
    }

    /// Body bytes sent, over every response.
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::SeqCst)
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, state: &State) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let mut lines = head.split("\r\n");
    let path = lines.next().and_then(|line| line.split(' ').nth(1)).unwrap_or("/").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let header = |name: &str| headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    let authorization = header("authorization");
    state.requests.lock().expect("requests").push(Request {
        path: path.clone(),
        range: header("range"),
        if_range: header("if-range"),
        authorization: authorization.is_some(),
    });
    let fault = state.faults.lock().expect("faults").pop_front().or_else(|| state.standing.lock().expect("standing").clone());

    if let Some(token) = &state.bearer {
        if authorization.as_deref() != Some(format!("Bearer {token}").as_str()) {
            return respond_empty(&mut stream, 401, "").await;
        }
    }
    if let Some(Fault::Status(status)) = fault {
        return respond_empty(&mut stream, status, "").await;
    }
    if path == "/missing" {
        return respond_empty(&mut stream, 404, "").await;
    }
    let len = state.body.len() as u64;
    let range_start = header("range")
        .and_then(|range| range.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<u64>().ok())
        .filter(|_| fault != Some(Fault::IgnoreRange))
        .filter(|_| header("if-range").is_none_or(|validator| validator == ETAG));
    let (status_line, start) = match range_start {
        Some(start) if start >= len => {
            return respond_empty(&mut stream, 416, &format!("Content-Range: bytes */{len}\r\n")).await;
        }
        Some(start) => (format!("206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}", len - 1), start),
        None => ("200 OK".to_owned(), 0),
    };
    let head = format!(
        "HTTP/1.1 {status_line}\r\nContent-Length: {}\r\nETag: {ETAG}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
        len - start
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut body = state.body.clone();
    if fault == Some(Fault::WrongBytes) {
        body[state.body.len() / 2] ^= 0xff;
    }
    let stop = match fault {
        Some(Fault::CutAt(at) | Fault::StallAt(at)) => at.clamp(start, len),
        _ => len,
    };
    for chunk in body[start as usize..stop as usize].chunks(64 * 1024) {
        if stream.write_all(chunk).await.is_err() {
            return;
        }
        state.served.fetch_add(chunk.len() as u64, Ordering::SeqCst);
    }
    let _ = stream.flush().await;
    if let Some(Fault::StallAt(_)) = fault {
        // Hold the connection, sending nothing, until the client hangs up.
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    }
    // CutAt: dropping the stream closes it mid-body (for TLS, without close_notify).
}

async fn respond_empty<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, extra_headers: &str) {
    let head = format!("HTTP/1.1 {status} Status\r\n{extra_headers}Content-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}
