//! A real HTTP/1.1 server on loopback serving one file, for the artifact tests: `Range` with a
//! strong ETag (so an import without a digest may resume under `If-Range`), a record of every
//! request, and the failures a download must survive or report: a response cut off mid-body,
//! a slow body, a missing file. Every connection is closed after one response.
//!
//! Also the tests' generated artifact, whose size and sha256 the test patterns declare.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The generated artifact's size and sha256; `tests/patterns/needs-artifact` and
/// `tests/patterns/fetch` declare both.
pub const SIZE: usize = 3 * 1024 * 1024 + 12_345;
pub const SHA256: &str = "356374714820e29161545cdca7941d42af1543ef98998f385ca05b3d745e81b2";
/// The path the server serves the file at; anything else is a 404.
pub const PATH: &str = "/files/Generated_Image.bin";
const ETAG: &str = "\"generated-v1\"";

/// Deterministic bytes that do not repeat with a short period.
pub fn generated() -> Vec<u8> {
    (0..SIZE as u64).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8).collect()
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
}

impl Seen {
    /// The start of a `Range: bytes=N-` request.
    pub fn range_start(&self) -> Option<u64> {
        self.range.as_deref()?.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok()
    }
}

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// The first response breaks off after this many bytes of body.
    pub cut_first_at: Option<usize>,
    /// The body is sent at about this many bytes per second (in 64 KiB pieces).
    pub bytes_per_second: Option<usize>,
}

/// The running server; it stops with the test process.
pub struct FileServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<Seen>>>,
}

impl FileServer {
    /// Serves `content` at [`PATH`].
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub fn start(content: Arc<Vec<u8>>, behaviour: Behaviour) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the HTTP server");
        let port = listener.local_addr().expect("its address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let cut = Arc::new(AtomicBool::new(behaviour.cut_first_at.is_none()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (content, seen, cut) = (content.clone(), seen.clone(), cut.clone());
                std::thread::spawn(move || {
                    // A client that goes away mid-body is part of several tests.
                    let _ = respond(stream, &content, &seen, &cut, behaviour);
                });
            }
        });
        FileServer { port, requests }
    }

    /// The URL of the file.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{PATH}", self.port)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.requests.lock().expect("not poisoned").clone()
    }
}

fn respond(mut stream: TcpStream, content: &[u8], seen: &Mutex<Vec<Seen>>, cut: &AtomicBool, behaviour: Behaviour) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let (mut range, mut if_range) = (None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(value.trim().to_owned()),
                "if-range" => if_range = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    let request = Seen { path: path.clone(), range };
    let start = match request.range_start() {
        Some(start) if if_range.as_deref().is_none_or(|validator| validator == ETAG) => start as usize,
        _ => 0,
    };
    seen.lock().expect("not poisoned").push(request);
    if path != PATH {
        return stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
    let len = content.len();
    let head = if start > 0 {
        format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\nContent-Length: {}\r\nETag: {ETAG}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n", len - 1, len - start)
    } else {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: {ETAG}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n")
    };
    stream.write_all(head.as_bytes())?;
    let end = match behaviour.cut_first_at {
        // The first response breaks off mid-body, as a dropped connection would.
        Some(at) if !cut.swap(true, Ordering::SeqCst) => at.max(start),
        _ => len,
    };
    match behaviour.bytes_per_second {
        None => stream.write_all(&content[start..end])?,
        Some(rate) => {
            const PIECE: usize = 64 * 1024;
            for piece in content[start..end].chunks(PIECE) {
                stream.write_all(piece)?;
                // Pacing the body is the behaviour under test, not a wait for a condition.
                std::thread::sleep(Duration::from_secs_f64(PIECE as f64 / rate as f64));
            }
        }
    }
    stream.flush()?;
    stream.shutdown(Shutdown::Both)
}
