//! Wait-step probes: TCP connect, HTTP status, DNS answer; HTTPS, auth and JSON conditions in
//! [`https`]. (The exec probe runs through the driver, in the runner.) Each attempt is bounded
//! by a timeout; the runner retries until the step's deadline.

pub mod https;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

async fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))
}

/// Succeeds when a TCP connection to `host:port` opens.
pub async fn tcp(host: &str, port: u16) -> anyhow::Result<()> {
    let address = resolve(host, port).await?;
    tokio::time::timeout(ATTEMPT_TIMEOUT, tokio::net::TcpStream::connect(address))
        .await
        .with_context(|| format!("no TCP answer from {address}"))?
        .with_context(|| format!("connecting to {address}"))?;
    Ok(())
}

/// Succeeds when `GET url` answers `status`. Plain `http://` only.
pub async fn http(url: &str, status: u16) -> anyhow::Result<()> {
    let rest = url.strip_prefix("http://").with_context(|| format!("{url}: the http probe supports http:// URLs"))?;
    let (authority, path) = rest.split_once('/').map(|(authority, path)| (authority, format!("/{path}"))).unwrap_or((rest, "/".into()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().with_context(|| format!("{url}: bad port"))?),
        None => (authority, 80),
    };
    let address = resolve(host, port).await?;
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: pmesh-agent\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = vec![0u8; 64];
        let n_read = stream.read(&mut head).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..n_read]).into_owned())
    };
    let head = tokio::time::timeout(ATTEMPT_TIMEOUT, exchange).await.with_context(|| format!("no HTTP answer from {url}"))??;
    let got: u16 =
        head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).with_context(|| format!("{url}: not an HTTP answer"))?;
    if got != status {
        bail!("{url} answered {got}, expected {status}");
    }
    Ok(())
}

/// Succeeds when `server:port` answers a query for `name`/`record_type` with NOERROR and at
/// least one answer record.
pub async fn dns(server: &str, port: u16, name: &str, record_type: &str) -> anyhow::Result<()> {
    let record_type: RecordType = record_type.to_ascii_uppercase().parse().with_context(|| format!("unknown record type {record_type}"))?;
    let address = resolve(server, port).await?;
    let mut query = Message::new();
    query
        .set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(false)
        .add_query(Query::query(Name::from_ascii(name).with_context(|| format!("bad DNS name {name}"))?, record_type));
    let packet = query.to_vec().context("encoding the DNS query")?;
    let bind: SocketAddr = if address.is_ipv4() { "0.0.0.0:0".parse()? } else { "[::]:0".parse()? };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    socket.send_to(&packet, address).await?;
    let mut buffer = vec![0u8; 4096];
    let (n_read, _) = tokio::time::timeout(ATTEMPT_TIMEOUT, socket.recv_from(&mut buffer))
        .await
        .with_context(|| format!("no DNS answer from {address}"))??;
    let answer = Message::from_vec(&buffer[..n_read]).context("decoding the DNS answer")?;
    if answer.response_code() != ResponseCode::NoError {
        bail!("{address} answered {} for {name} {record_type}", answer.response_code());
    }
    if answer.answers().is_empty() {
        bail!("{address} has no {record_type} record for {name}");
    }
    Ok(())
}
