//! `pmesh-agent simulate`: many real agent identities in one process, so that a real master
//! can be measured against hundreds or thousands of agents on one machine (the soak, the scale
//! benchmark).
//!
//! Each identity is a whole agent but for the process: its own data directory (`DIR/NAME`),
//! enrolled through the real [`crate::join`] (its own key and CSR, one one-time token each, a
//! certificate signed by the master's CA), its own mTLS listener on a loopback port it
//! advertises, and the real daemon ([`crate::daemon::run`]: the Agent service and its policy,
//! the journal, renewal) serving it. The runtime, the configuration and the process are
//! shared. An identity already enrolled under `DIR` is served again without a token, on the
//! port it advertised.
//!
//! The simulation ends after `--for`, on SIGTERM or SIGINT, or when any identity's server
//! fails (then with that error): one dead identity must not pass for a live one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use pmesh_proto::identity::validate_name;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::exit::{self, CliError};
use crate::join::JoinOptions;
use crate::state::{self, Paths};

/// Joins in flight at once: the master holds at most 16 connections without a client
/// certificate per address (`pmesh_rt::accept`), and every join is one.
const JOIN_CONCURRENCY: usize = 8;

/// The most identities one process serves (each holds a listener, a journal and its files).
pub const MAX_COUNT: usize = 20_000;

/// What `simulate` was given.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub count: usize,
    /// The master's HOST:PORT.
    pub master: String,
    /// One token a line: a bare token, or a line of `pmesh token create -o json`.
    pub token_file: Option<PathBuf>,
    /// The CA fingerprint for bare tokens.
    pub ca_fingerprint: Option<String>,
    /// Identities live in `data_dir/NAME`.
    pub data_dir: PathBuf,
    /// Names are `PREFIX-00001` and on.
    pub prefix: String,
    /// Stop after this long (else only on a signal).
    pub duration: Option<Duration>,
    pub config: AgentConfig,
}

/// A join token and the CA fingerprint it comes with.
#[derive(Debug, Clone, PartialEq)]
struct Token {
    token: String,
    ca_fingerprint: String,
}

/// One identity to serve: its name, data directory and bound listener.
struct Identity {
    name: String,
    dir: PathBuf,
    listener: TcpListener,
}

/// The identities' names, `PREFIX-00001` to `PREFIX-COUNT`.
///
/// # Errors
/// A usage error when the count is out of range or the prefix makes invalid names.
pub fn names(prefix: &str, count: usize) -> Result<Vec<String>, CliError> {
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(CliError::new(exit::USAGE, format!("--count {count}: between 1 and {MAX_COUNT}")));
    }
    let names: Vec<String> = (1..=count).map(|index| format!("{prefix}-{index:05}")).collect();
    for name in [&names[0], &names[count - 1]] {
        validate_name(name).map_err(|err| CliError::new(exit::USAGE, format!("--prefix {prefix:?}: {err}")))?;
    }
    Ok(names)
}

/// Parses a token file: one token a line, bare (then `fingerprint` applies) or as
/// `pmesh token create -o json` prints it. Blank lines are skipped.
fn parse_tokens(text: &str, fingerprint: Option<&str>, file: &Path) -> Result<Vec<Token>, CliError> {
    let usage = |line: usize, why: &str| CliError::new(exit::USAGE, format!("{}:{line}: {why}", file.display()));
    let mut tokens = Vec::new();
    for (index, line) in text.lines().enumerate().map(|(index, line)| (index + 1, line.trim())) {
        if line.is_empty() {
            continue;
        }
        let token = if line.starts_with('{') {
            let json: serde_json::Value = serde_json::from_str(line).map_err(|err| usage(index, &format!("not a JSON token: {err}")))?;
            let field = |key: &str| json[key].as_str().map(str::to_owned).ok_or_else(|| usage(index, &format!("no \"{key}\" string")));
            Token { token: field("token")?, ca_fingerprint: field("ca_fingerprint")? }
        } else {
            let ca_fingerprint = fingerprint.ok_or_else(|| usage(index, "a bare token needs --ca-fingerprint"))?;
            Token { token: line.to_owned(), ca_fingerprint: ca_fingerprint.to_owned() }
        };
        tokens.push(token);
    }
    Ok(tokens)
}

/// Serves `options.count` identities until `shutdown`, `options.duration` or a failure.
///
/// # Errors
/// A usage error (count, names, too few tokens: nothing is joined then), a join's refusal
/// naming the identity, or the first identity whose server failed.
pub async fn simulate(options: SimOptions, shutdown: CancellationToken) -> Result<(), CliError> {
    let names = names(&options.prefix, options.count)?;
    let (enrolled, new): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|name| state::is_enrolled(&Paths::new(&options.data_dir.join(name))));
    let tokens = tokens_for(&options, new.len())?;

    let mut identities = Vec::with_capacity(options.count);
    for name in enrolled {
        identities.push(rebind(&options.data_dir, name).await?);
    }
    let joined = new.len();
    let joins = futures_util::stream::iter(new.into_iter().zip(tokens))
        .map(|(name, token)| enrol(&options, name, token))
        .buffer_unordered(JOIN_CONCURRENCY)
        .try_collect::<Vec<_>>();
    tokio::select! {
        done = joins => identities.extend(done?),
        _ = shutdown.cancelled() => return Err(CliError::new(exit::CANCELLED, "stopped while enrolling")),
    }

    if let Some(duration) = options.duration {
        let timer = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            timer.cancel();
        });
    }
    let mut servers = tokio::task::JoinSet::new();
    for Identity { name, dir, listener } in identities {
        let (config, shutdown) = (options.config.clone(), shutdown.clone());
        servers
            .spawn(async move { crate::daemon::run(listener, &dir, config, shutdown).await.with_context(|| format!("identity {name}")) });
    }
    println!(
        "simulating {} agents ({joined} joined now) for master {}; until {}",
        options.count,
        options.master,
        options.duration.map(|duration| format!("{} or SIGTERM", humantime::format_duration(duration))).unwrap_or_else(|| "SIGTERM".into())
    );
    let mut failure = None;
    while let Some(outcome) = servers.join_next().await {
        let outcome = outcome.map_err(anyhow::Error::from).and_then(|served| served);
        if let Err(err) = outcome {
            shutdown.cancel();
            failure.get_or_insert(err);
        }
    }
    failure.map_or(Ok(()), |err| Err(CliError::from(err)))
}

/// The tokens for `needed` new identities, checked before any join.
fn tokens_for(options: &SimOptions, needed: usize) -> Result<Vec<Token>, CliError> {
    if needed == 0 {
        return Ok(Vec::new());
    }
    let Some(file) = &options.token_file else {
        return Err(CliError::new(exit::USAGE, format!("{needed} identities are not enrolled yet: pass --token-file")));
    };
    let text = std::fs::read_to_string(file).map_err(|err| CliError::new(exit::USAGE, format!("reading {}: {err}", file.display())))?;
    let tokens = parse_tokens(&text, options.ca_fingerprint.as_deref(), file)?;
    if tokens.len() < needed {
        let have = tokens.len();
        return Err(CliError::new(exit::USAGE, format!("{} holds {have} tokens; {needed} identities need one each", file.display())));
    }
    Ok(tokens.into_iter().take(needed).collect())
}

/// An enrolled identity's listener, on the address it advertised.
async fn rebind(data_dir: &Path, name: String) -> Result<Identity, CliError> {
    let dir = data_dir.join(&name);
    let enrolment = state::load_enrolment(&Paths::new(&dir))?;
    let address: SocketAddr = enrolment
        .advertise
        .parse()
        .map_err(|_| CliError::new(exit::USAGE, format!("{name}: advertise address {:?} is not IP:PORT", enrolment.advertise)))?;
    let listener = TcpListener::bind(address).await.with_context(|| format!("{name}: binding {address}"))?;
    Ok(Identity { name, dir, listener })
}

/// Binds a loopback port for `name`, then joins advertising it.
async fn enrol(options: &SimOptions, name: String, token: Token) -> Result<Identity, CliError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding a loopback port")?;
    let advertise = listener.local_addr().context("the bound address")?.to_string();
    let dir = options.data_dir.join(&name);
    let join = JoinOptions {
        master: options.master.clone(),
        token: token.token,
        ca_fingerprint: token.ca_fingerprint,
        name: Some(name.clone()),
        advertise: Some(advertise),
        force: false,
    };
    crate::join::join(join, &dir).await.map_err(|err| CliError::new(err.code, format!("joining {name}: {}", err.message)))?;
    Ok(Identity { name, dir, listener })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lines_bare_or_json() {
        let file = Path::new("tokens");
        let text = "\nabc\n{\"token\":\"def\",\"ca_fingerprint\":\"sha256:00\",\"master\":\"x\"}\n";
        let tokens = parse_tokens(text, Some("sha256:ff"), file).unwrap();
        assert_eq!(
            tokens,
            [
                Token { token: "abc".into(), ca_fingerprint: "sha256:ff".into() },
                Token { token: "def".into(), ca_fingerprint: "sha256:00".into() }
            ]
        );
        let bare = parse_tokens("abc\n", None, file).unwrap_err();
        assert_eq!((bare.code, bare.message.as_str()), (exit::USAGE, "tokens:1: a bare token needs --ca-fingerprint"));
        let broken = parse_tokens("x\n{\"token\":1}\n", Some("sha256:ff"), file).unwrap_err();
        assert!(broken.message.starts_with("tokens:2: no \"token\" string"), "{}", broken.message);
    }

    #[test]
    fn names_are_numbered_and_checked() {
        assert_eq!(names("sim", 2).unwrap(), ["sim-00001", "sim-00002"]);
        assert_eq!(names("sim", 0).unwrap_err().code, exit::USAGE);
        assert_eq!(names("sim", MAX_COUNT + 1).unwrap_err().code, exit::USAGE);
        assert_eq!(names("Bad_Prefix", 1).unwrap_err().code, exit::USAGE);
    }
}
