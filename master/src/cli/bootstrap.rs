//! `pmesh bootstrap [USER@]HOST`: the flags, the password from stdin, the master reached with
//! the operator's credential, and bootstrap's errors as the CLI's exit codes.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::args::BootstrapArgs;
use pmesh_proto::pattern::Secret;
use pmesh_proto::v1;

use super::client::{self, exit, CliError, Connection};
use crate::bootstrap::known_hosts::{parse_fingerprint, HostKeyPolicy};
use crate::bootstrap::ssh::Credential;
use crate::bootstrap::{self, AgentSeen, Error, Options, Ticket};

/// How long a bootstrap's join token stays valid: enough for the steps before enrolment.
const TOKEN_TTL_SECONDS: u64 = 600;

/// Runs `pmesh bootstrap`.
///
/// # Errors
/// A [`CliError`]: 2 for usage and preflight problems, 4 when the host, the master or the
/// agent cannot be reached, 5 when a host key or login is refused, 1 when a step failed.
pub async fn run(args: BootstrapArgs, credentials: Option<&Path>, data_dir: &Path) -> Result<(), CliError> {
    let options = options(args, data_dir)?;
    let connection = client::connect(credentials, data_dir)?;
    let mut master = CliMaster { connection };
    let mut stdout = std::io::stdout();
    bootstrap::run(options, &mut master, &mut stdout).await.map(|_| ()).map_err(|err| {
        let code = match &err {
            Error::Usage(_) | Error::Preflight(_) => exit::USAGE,
            Error::Unreachable(_) => exit::UNREACHABLE,
            Error::Refused(_) => exit::REFUSED,
            Error::Failed(_) => exit::FAILED,
        };
        CliError::new(code, err.to_string())
    })
}

fn options(args: BootstrapArgs, data_dir: &Path) -> Result<Options, CliError> {
    let usage = |message: String| CliError::new(exit::USAGE, message);
    let (user, host) = match args.target.split_once('@') {
        Some((user, host)) => (user.to_owned(), host.to_owned()),
        None => ("root".to_owned(), args.target.clone()),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    if user.is_empty() || host.is_empty() {
        return Err(usage(format!("{:?} is not [USER@]HOST", args.target)));
    }
    let credential = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|err| usage(format!("reading the password from stdin: {err}")))?;
        let password = line.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            return Err(usage("--password-stdin: stdin held no password".into()));
        }
        Credential::Password(Secret::new(password))
    } else {
        Credential::Key(match args.identity {
            Some(path) => path,
            None => default_identity().ok_or_else(|| {
                usage("no SSH key found in ~/.ssh (id_ed25519, id_ecdsa): pass --identity KEYFILE or --password-stdin".into())
            })?,
        })
    };
    let host_key = match (args.host_key, args.accept_new_host_key) {
        (Some(fingerprint), _) => HostKeyPolicy::Pinned(parse_fingerprint(&fingerprint).map_err(usage)?),
        (None, true) => HostKeyPolicy::AcceptNew,
        (None, false) => HostKeyPolicy::Known,
    };
    let agent_binary = match args.agent_binary {
        Some(path) => path,
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("pmesh-agent")))
            .ok_or_else(|| usage("cannot tell where pmesh runs from: pass --agent-binary PATH".into()))?,
    };
    Ok(Options {
        user,
        host,
        port: args.port,
        credential,
        host_key,
        known_hosts: data_dir.join("known_hosts"),
        name: args.name,
        labels: args.labels.into_iter().collect(),
        advertise: args.advertise,
        dry_run: args.dry_run,
        upgrade: args.upgrade,
        agent_binary,
    })
}

fn default_identity() -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var_os("HOME")?);
    ["id_ed25519", "id_ecdsa"].into_iter().map(|name| home.join(".ssh").join(name)).find(|path| path.exists())
}

/// The master through the operator's credential.
struct CliMaster {
    connection: Connection,
}

impl CliMaster {
    fn failed(&self, status: tonic::Status) -> Error {
        let err = self.connection.failed(status);
        match err.code {
            exit::UNREACHABLE => Error::Unreachable(err.message),
            exit::REFUSED => Error::Refused(err.message),
            exit::USAGE => Error::Usage(err.message),
            _ => Error::Failed(err.message),
        }
    }
}

impl bootstrap::Master for CliMaster {
    fn address(&self) -> &str {
        &self.connection.master
    }

    async fn agent(&mut self, name: &str) -> Result<Option<AgentSeen>, Error> {
        let request = v1::GetAgentRequest { name: name.to_owned() };
        match self.connection.client.get_agent(request).await {
            Ok(response) => {
                let agent = response.into_inner();
                Ok(Some(AgentSeen { up: agent.state() == v1::AgentState::Up, address: agent.address, last_error: agent.last_error }))
            }
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(self.failed(status)),
        }
    }

    async fn create_token(&mut self, name: &str, labels: &BTreeMap<String, String>) -> Result<Ticket, Error> {
        let request = v1::CreateTokenRequest {
            ttl_seconds: TOKEN_TTL_SECONDS,
            name: name.to_owned(),
            labels: labels.clone().into_iter().collect(),
            force: false,
        };
        let token = self.connection.client.create_token(request).await.map_err(|status| self.failed(status))?.into_inner();
        Ok(Ticket { token: Secret::new(token.token), ca_fingerprint: token.ca_fingerprint, master: token.master_address })
    }
}
