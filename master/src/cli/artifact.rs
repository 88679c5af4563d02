//! `pmesh artifact add|ls|rm`: the master's artifact depot from the command line.
//!
//! `add FILE` streams the file over `AddArtifact` (the master hashes it as it arrives);
//! `add URL` asks the master to import it (`ImportArtifact`) and shows the master's progress.
//! Progress is a bar on a terminal, a line every few seconds elsewhere, and nothing with
//! `-o json`. Before adding, the CLI lists the depot, so it can say when the content was
//! there already, and skips sending a file whose `--sha256` the depot holds.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pmesh_proto::identity::Identity;
use pmesh_proto::pattern::formats::{is_dns_label, is_sha256};
use pmesh_proto::v1;
use pmesh_rt::fetch::{human_bytes, Progress};
use pmesh_rt::v1::master_client::MasterClient;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tonic::Code;

use super::client::{self, exit, CliError, Connection};
use super::output::{ago, table, Format};
use super::ArtifactCommand;
use crate::credentials::{self, Credentials};

/// Bytes per upload message.
const UPLOAD_CHUNK: usize = 1 << 20;
/// Upload messages read ahead of the network.
const UPLOAD_QUEUE: usize = 4;
/// An upload's deadline: this, plus its size at [`SLOWEST_RATE`].
const UPLOAD_BASE_TIMEOUT: Duration = Duration::from_secs(600);
/// The slowest upload rate, in bytes per second, the deadline allows for.
const SLOWEST_RATE: u64 = 1 << 20;
/// How often progress is printed when it is not drawn as a bar.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// The stable JSON shape of an artifact (`pmesh artifact ls -o json`).
#[derive(Debug, Serialize)]
pub struct ArtifactView {
    /// Lowercase hex, in full.
    pub sha256: String,
    /// In bytes.
    pub size: u64,
    /// The names it was added under, sorted.
    pub names: Vec<String>,
    /// The registered patterns (`NAME@VERSION`) that declare it.
    pub needed_by: Vec<String>,
    pub added_at_unix: i64,
}

impl From<v1::ArtifactSummary> for ArtifactView {
    fn from(artifact: v1::ArtifactSummary) -> Self {
        ArtifactView {
            sha256: artifact.sha256,
            size: artifact.size,
            names: artifact.names,
            needed_by: artifact.needed_by,
            added_at_unix: artifact.added_at_unix,
        }
    }
}

/// Runs an `artifact` verb.
///
/// # Errors
/// A [`CliError`]: [`exit::USAGE`] for a bad name, sha256 or file, and for the master's
/// refusals that change nothing (a mismatch, an artifact patterns still need);
/// [`exit::FAILED`] for an unknown artifact or a failed import; the connection's codes.
pub async fn run(command: ArtifactCommand, credentials: Option<&Path>, data_dir: &Path, format: Format) -> Result<(), CliError> {
    match command {
        ArtifactCommand::Add { source, sha256, name } => add(&source, sha256, name, credentials, data_dir, format).await,
        ArtifactCommand::Ls => list(&client::connect(credentials, data_dir)?, format).await,
        ArtifactCommand::Rm { artifact, force } => remove(&client::connect(credentials, data_dir)?, &artifact, force, format).await,
    }
}

/// A valid artifact name made from a file name or a URL's last segment: lowercase, every run
/// of other characters turned into one `-`, at most 63 characters. `None` when nothing is left.
pub fn default_name(text: &str) -> Option<String> {
    let mut name = String::new();
    for character in text.chars().flat_map(char::to_lowercase) {
        if character.is_ascii_lowercase() || character.is_ascii_digit() {
            name.push(character);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    name.truncate(63);
    let name = name.trim_end_matches('-').to_owned();
    is_dns_label(&name).then_some(name)
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// The part of `source` a default name is made from: the file name, or the URL's last path
/// segment.
fn name_source(source: &str) -> String {
    if is_url(source) {
        let path = source.split(['?', '#']).next().unwrap_or_default();
        path.rsplit('/').next().unwrap_or_default().to_owned()
    } else {
        Path::new(source).file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// `source` as errors show it: a URL without its password and query string.
fn shown(source: &str) -> String {
    if is_url(source) {
        pmesh_rt::fetch::Source::http(source).describe()
    } else {
        source.to_owned()
    }
}

async fn add(
    source: &str,
    sha256: Option<String>,
    name: Option<String>,
    credentials: Option<&Path>,
    data_dir: &Path,
    format: Format,
) -> Result<(), CliError> {
    let name = match name {
        Some(name) if is_dns_label(&name) => name,
        Some(name) => {
            return Err(CliError::new(
                exit::USAGE,
                format!("--name {name:?}: use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'"),
            ))
        }
        None => default_name(&name_source(source)).ok_or_else(|| {
            CliError::new(exit::USAGE, format!("cannot make an artifact name from {}; give one with --name", shown(source)))
        })?,
    };
    let sha256 = match sha256.map(|sha256| sha256.trim().to_ascii_lowercase()) {
        Some(sha256) if !is_sha256(&sha256) => {
            return Err(CliError::new(exit::USAGE, format!("--sha256 {sha256:?}: 64 hex digits expected")))
        }
        sha256 => sha256,
    };
    if !is_url(source) {
        let path = Path::new(source);
        match std::fs::metadata(path) {
            Err(err) => return Err(CliError::new(exit::USAGE, format!("cannot read {}: {err}", path.display()))),
            Ok(metadata) if !metadata.is_file() => return Err(CliError::new(exit::USAGE, format!("{} is not a file", path.display()))),
            Ok(metadata) if metadata.len() == 0 => {
                return Err(CliError::new(exit::USAGE, format!("{} is empty; an empty file is not an artifact", path.display())))
            }
            Ok(_) => {}
        }
    }
    let connection = client::connect(credentials, data_dir)?;
    let before: BTreeMap<String, Vec<String>> =
        fetch_list(&connection).await?.into_iter().map(|artifact| (artifact.sha256, artifact.names)).collect();
    let progress = Meter::new(format);
    let added = if is_url(source) {
        import(&connection, source, &name, sha256, &progress).await
    } else {
        let known = sha256.as_ref().is_some_and(|sha256| before.contains_key(sha256));
        upload(&connection, Path::new(source), &name, sha256, known, credentials, data_dir, &progress).await
    };
    progress.finish();
    let added = added?;
    let existed = before.get(&added.sha256);
    let created = existed.is_none();
    match format {
        Format::Json => {
            let mut json = serde_json::to_value(ArtifactView::from(added)).map_err(anyhow::Error::from)?;
            json["created"] = serde_json::Value::Bool(created);
            println!("{json}");
        }
        Format::Text => {
            let what = format!("{} sha256 {} ({})", added.names.join(","), added.sha256, human_bytes(added.size));
            match existed {
                None => println!("added {what}"),
                Some(names) if names.contains(&name) => println!("already in the depot, nothing changed: {what}"),
                Some(_) => println!("already in the depot; added the name {name}: {what}"),
            }
        }
    }
    Ok(())
}

/// A channel to the master for one upload: the usual connection's deadline covers a whole
/// call, and an upload's call lasts as long as its bytes take.
fn upload_client(
    explicit: Option<&Path>,
    data_dir: &Path,
    deadline: Duration,
) -> Result<(MasterClient<tonic::transport::Channel>, pmesh_rt::net::Dialled), CliError> {
    let path = credentials::locate(explicit, data_dir);
    let credentials = Credentials::load(&path).map_err(|err| CliError::new(exit::USAGE, format!("{err:#}")))?;
    let tls = Arc::new(credentials.client_config()?);
    let dialled = pmesh_rt::net::dial(&credentials.master, &Identity::master(), tls, deadline)?;
    Ok((MasterClient::new(dialled.channel.clone()), dialled))
}

#[allow(clippy::too_many_arguments)]
async fn upload(
    connection: &Connection,
    path: &Path,
    name: &str,
    sha256: Option<String>,
    known: bool,
    credentials: Option<&Path>,
    data_dir: &Path,
    progress: &Meter,
) -> Result<v1::ArtifactSummary, CliError> {
    let unreadable = |err: std::io::Error| CliError::new(exit::USAGE, format!("cannot read {}: {err}", path.display()));
    let mut file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let size = file.metadata().await.map_err(unreadable)?.len();
    let deadline = UPLOAD_BASE_TIMEOUT + Duration::from_secs(size / SLOWEST_RATE);
    let (mut client, dialled) = upload_client(credentials, data_dir, deadline)?;
    let (tx, rx) = mpsc::channel(UPLOAD_QUEUE);
    let header = v1::AddArtifactHeader { name: name.to_owned(), sha256: sha256.unwrap_or_default(), size };
    tx.send(v1::AddArtifactChunk { header: Some(header), data: Vec::new() })
        .await
        .map_err(|_| anyhow::anyhow!("the upload queue closed"))?;
    // Content the depot holds (by its digest) is named by the header alone.
    let reader = if known {
        drop(tx);
        None
    } else {
        let progress = progress.clone();
        let display = path.display().to_string();
        progress.start("uploading", Some(size));
        Some(tokio::spawn(async move {
            let mut sent = 0u64;
            loop {
                let mut data = Vec::with_capacity(UPLOAD_CHUNK);
                while data.len() < UPLOAD_CHUNK {
                    match file.read_buf(&mut data).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(err) => return Err(format!("reading {display}: {err}")),
                    }
                }
                if data.is_empty() {
                    progress.set_message("verifying on the master");
                    return Ok(());
                }
                sent += data.len() as u64;
                if tx.send(v1::AddArtifactChunk { header: None, data }).await.is_err() {
                    return Ok(()); // The call ended; its status says why.
                }
                progress.update(sent, Some(size), None);
            }
        }))
    };
    let result = client.add_artifact(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
    if let Some(reader) = reader {
        // A refusal can end the call while the file is still being read: stop reading then.
        // A reader that failed ended the upload itself, and its error says why.
        if result.is_err() && !reader.is_finished() {
            reader.abort();
        } else {
            match reader.await {
                Ok(Ok(())) => {}
                Ok(Err(message)) => return Err(CliError::new(exit::FAILED, format!("{message}; the master kept nothing"))),
                Err(join) => return Err(CliError::new(exit::FAILED, format!("the upload's reader failed: {join}"))),
            }
        }
    }
    result
        .map(tonic::Response::into_inner)
        .map_err(|status| client::failure(&format!("master {}", connection.master), status.clone(), dialled.explain(&status)))
}

async fn import(
    connection: &Connection,
    url: &str,
    name: &str,
    sha256: Option<String>,
    progress: &Meter,
) -> Result<v1::ArtifactSummary, CliError> {
    let request = v1::ImportArtifactRequest { url: url.to_owned(), name: name.to_owned(), sha256: sha256.unwrap_or_default(), size: 0 };
    let mut stream = connection.client.clone().import_artifact(request).await.map_err(|status| connection.failed(status))?.into_inner();
    progress.start("importing", None);
    loop {
        match stream.message().await {
            Ok(Some(message)) => match message.result {
                Some(result) => return Ok(result),
                None => progress.update(
                    message.done_bytes,
                    (message.total_bytes > 0).then_some(message.total_bytes),
                    Some(message.rate_bytes_per_second),
                ),
            },
            Ok(None) => {
                return Err(CliError::new(
                    exit::FAILED,
                    format!("the master ended the import of {} without a result; see its log", shown(url)),
                ))
            }
            Err(status) => return Err(import_failed(connection, url, status)),
        }
    }
}

/// An import's failure as the master reported it: about the URL, not about the call.
fn import_failed(connection: &Connection, url: &str, status: tonic::Status) -> CliError {
    let code = match status.code() {
        Code::InvalidArgument => exit::USAGE,
        Code::PermissionDenied => exit::REFUSED,
        Code::NotFound | Code::AlreadyExists => exit::FAILED,
        _ => return connection.failed(status),
    };
    CliError::new(code, format!("importing {} failed: {}", shown(url), status.message()))
}

async fn fetch_list(connection: &Connection) -> Result<Vec<v1::ArtifactSummary>, CliError> {
    let listed = connection.client.clone().list_artifacts(v1::ListArtifactsRequest {}).await.map_err(|status| connection.failed(status))?;
    Ok(listed.into_inner().artifacts)
}

async fn list(connection: &Connection, format: Format) -> Result<(), CliError> {
    let views: Vec<ArtifactView> = fetch_list(connection).await?.into_iter().map(ArtifactView::from).collect();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&views).map_err(anyhow::Error::from)?),
        Format::Text if views.is_empty() => println!("the depot is empty; add an artifact with `pmesh artifact add FILE|URL`"),
        Format::Text => {
            let dash = |items: &[String]| if items.is_empty() { "-".to_owned() } else { items.join(",") };
            let rows: Vec<Vec<String>> = views
                .iter()
                .map(|view| {
                    vec![
                        dash(&view.names),
                        view.sha256.chars().take(12).collect(),
                        human_bytes(view.size),
                        dash(&view.needed_by),
                        ago(Some(view.added_at_unix)),
                    ]
                })
                .collect();
            println!("{}", table(&["NAME(S)", "SHA256", "SIZE", "NEEDED BY", "ADDED"], &rows));
        }
    }
    Ok(())
}

async fn remove(connection: &Connection, artifact: &str, force: bool, format: Format) -> Result<(), CliError> {
    let request = v1::RemoveArtifactRequest { artifact: artifact.to_owned(), force };
    let removed = connection.client.clone().remove_artifact(request).await.map_err(|status| connection.failed(status))?.into_inner();
    match format {
        Format::Json => println!("{}", serde_json::json!({ "sha256": removed.sha256, "removed": removed.removed })),
        Format::Text => println!("removed artifact {} ({artifact})", removed.sha256),
    }
    Ok(())
}

/// Where progress goes: a bar on a terminal, a line every [`LINE_EVERY`] elsewhere, nowhere
/// with `-o json`. Cheap to clone; clones share the bar and the clock.
#[derive(Clone)]
enum Meter {
    Bar(ProgressBar),
    Lines(Arc<std::sync::Mutex<Lines>>),
    Quiet,
}

struct Lines {
    verb: &'static str,
    started: Instant,
    last: Instant,
}

impl Meter {
    fn new(format: Format) -> Meter {
        let terminal = std::io::stdout().is_terminal() && std::env::var("TERM").map_or(true, |term| term != "dumb");
        match format {
            Format::Json => Meter::Quiet,
            Format::Text if terminal => Meter::Bar(ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout())),
            Format::Text => {
                Meter::Lines(Arc::new(std::sync::Mutex::new(Lines { verb: "", started: Instant::now(), last: Instant::now() })))
            }
        }
    }

    fn start(&self, verb: &'static str, total: Option<u64>) {
        match self {
            Meter::Bar(bar) => {
                bar.set_message(verb);
                self.set_total(total);
                bar.enable_steady_tick(Duration::from_millis(120));
            }
            Meter::Lines(lines) => {
                let mut lines = lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                lines.verb = verb;
                (lines.started, lines.last) = (Instant::now(), Instant::now());
            }
            Meter::Quiet => {}
        }
    }

    fn set_total(&self, total: Option<u64>) {
        let Meter::Bar(bar) = self else { return };
        let template = match total {
            Some(_) => "{spinner:.cyan} {msg} [{bar:30.cyan/blue}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            None => "{spinner:.cyan} {msg} {binary_bytes} {binary_bytes_per_sec}",
        };
        bar.set_style(ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> "));
        bar.set_length(total.unwrap_or(0));
    }

    fn set_message(&self, message: &'static str) {
        if let Meter::Bar(bar) = self {
            bar.set_message(message);
        }
    }

    /// `done` of `total` bytes, at `rate` bytes per second when the other side measured it.
    fn update(&self, done: u64, total: Option<u64>, rate: Option<f64>) {
        match self {
            Meter::Bar(bar) => {
                if bar.length().filter(|length| *length > 0) != total {
                    self.set_total(total);
                }
                bar.set_position(done);
            }
            Meter::Lines(lines) => {
                let mut lines = lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if lines.last.elapsed() < LINE_EVERY {
                    return;
                }
                lines.last = Instant::now();
                // The master measures an import's rate; an upload's is measured here.
                let rate = rate.unwrap_or_else(|| done as f64 / lines.started.elapsed().as_secs_f64().max(0.001));
                let eta = total.filter(|_| rate > 0.0).map(|total| Duration::from_secs_f64(total.saturating_sub(done) as f64 / rate));
                println!("{} {}", lines.verb, Progress { done, total, rate, eta });
            }
            Meter::Quiet => {}
        }
    }

    fn finish(&self) {
        if let Meter::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_labels_made_from_the_file_or_url() {
        let check = |source: &str, expected: Option<&str>| assert_eq!(default_name(&name_source(source)).as_deref(), expected, "{source}");
        check("/isos/VMware-vCenter-Server-Appliance-8.0.3.ova", Some("vmware-vcenter-server-appliance-8-0-3-ova"));
        check("https://depot.lab/a/b/OVFTool_4.6.bundle?token=s3cr3t#x", Some("ovftool-4-6-bundle"));
        check("https://depot.lab/dir/", None);
        check("./__", None);
        check(&format!("{}.iso", "x".repeat(70)), Some("x".repeat(63).as_str()));
        check(&format!("{}-{}", "y".repeat(62), "zz"), Some("y".repeat(62).as_str()));
    }

    #[test]
    fn urls_are_shown_without_their_secrets() {
        assert_eq!(shown("https://u:pw@depot.lab/a.iso?token=s3cr3t"), "https://u:redacted@depot.lab/a.iso?redacted");
        assert_eq!(shown("./a.iso"), "./a.iso");
    }
}
