//! The SSH client `pmesh bootstrap` drives a host with; the only module that speaks russh.
//!
//! The interface is narrow on purpose: connect (the caller decides whether the presented host
//! key is trusted), authenticate with a key file or a password, run a command with bytes on
//! its stdin, and upload a file (SFTP, else `cat` on stdin). No pty is ever requested, so a
//! host that wants a password changed answers with an error instead of a prompt we would hang
//! at. Every network wait has a timeout.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pmesh_proto::pattern::Secret;
use russh::client::{self, KeyboardInteractiveAuthResponse};
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, MethodKind};
use tokio::io::AsyncWriteExt;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// A server's host key as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// `ALGORITHM BASE64`, the form known-hosts files hold.
    pub openssh: String,
    /// `SHA256:BASE64`, the form `ssh-keygen -lf` prints.
    pub fingerprint: String,
}

impl HostKey {
    fn from_public(key: &PublicKey) -> HostKey {
        let line = key.to_openssh().unwrap_or_default();
        let openssh = line.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        HostKey { openssh, fingerprint: key.fingerprint(HashAlg::Sha256).to_string() }
    }
}

/// How the operator logs in.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An unencrypted private key file, ed25519 or ECDSA ([`load_key`] says why not RSA).
    Key(PathBuf),
    /// A password, read from stdin by the CLI.
    Password(Secret),
}

/// Loads the private key in `path`, if bootstrap can log in with it: an unencrypted ed25519 or
/// ECDSA key. RSA is refused by name: this build of russh has its `rsa` feature off, so it
/// cannot sign with RSA keys.
///
/// # Errors
/// [`SshError::KeyFile`], saying what is wrong and what to do: the file is unreadable, not a
/// private key, protected by a passphrase, or holds a key type bootstrap cannot use.
pub fn load_key(path: &Path) -> Result<PrivateKey, SshError> {
    let unsupported = |kind: &str| {
        SshError::KeyFile(format!(
            "{} holds an SSH key of type {kind}, which bootstrap cannot log in with: it supports ed25519 and ECDSA keys. \
             Make one with `ssh-keygen -t ed25519 -f KEYFILE`, add KEYFILE.pub to the user's ~/.ssh/authorized_keys on the host, \
             and pass --identity KEYFILE",
            path.display()
        ))
    };
    let key = russh::keys::load_secret_key(path, None).map_err(|err| match err {
        russh::keys::Error::KeyIsEncrypted => SshError::KeyFile(format!(
            "{} is protected by a passphrase, and bootstrap never prompts: use a key without one",
            path.display()
        )),
        russh::keys::Error::UnsupportedKeyType { key_type_string, .. } => unsupported(&key_type_string),
        other => SshError::KeyFile(format!("cannot use {} as an SSH key (ed25519 and ECDSA keys are supported): {other}", path.display())),
    })?;
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } => Ok(key),
        Algorithm::Rsa { .. } => Err(unsupported("RSA")),
        Algorithm::Dsa => Err(unsupported("DSA")),
        other => Err(unsupported(other.as_str())),
    }
}

/// What a command left behind.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// The exit status; `None` when the server sent none (killed by a signal, or closed).
    pub code: Option<u32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// How a file reached the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMethod {
    Sftp,
    /// `cat > FILE` with the bytes on stdin, when the server offers no SFTP subsystem.
    Exec,
}

/// Why SSH failed, split the way callers decide: unreachable, refused, or broken.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// No TCP connection or no SSH handshake.
    #[error("cannot reach {address}: {reason}")]
    Unreachable { address: String, reason: String },
    /// The caller's host-key check said no; the key is what the server presented.
    #[error("the host key {} was refused", .0.fingerprint)]
    HostKeyRefused(HostKey),
    /// The server refused the credential.
    #[error("{0}")]
    AuthRefused(String),
    /// The account's password has expired and must be changed interactively.
    #[error("the password has expired and must be changed")]
    PasswordExpired,
    /// The key file cannot be used.
    #[error("{0}")]
    KeyFile(String),
    /// Anything else on an established connection (closed, timed out, protocol error).
    #[error("{0}")]
    Session(String),
}

fn session_error(what: &str) -> impl Fn(russh::Error) -> SshError + '_ {
    move |err| SshError::Session(format!("{what}: {err}"))
}

type HostKeyCheck = Box<dyn Fn(&HostKey) -> bool + Send + Sync>;

struct Client {
    check: HostKeyCheck,
    presented: Arc<Mutex<Option<(HostKey, bool)>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        // Host certificates are not offered by our algorithm list; refuse one if it comes.
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_key else { return Ok(false) };
        let host_key = HostKey::from_public(key);
        let trusted = (self.check)(&host_key);
        if let Ok(mut presented) = self.presented.lock() {
            *presented = Some((host_key, trusted));
        }
        Ok(trusted)
    }
}

/// An authenticated (after [`Session::authenticate`]) SSH connection.
pub struct Session {
    handle: client::Handle<Client>,
    address: String,
}

impl Session {
    /// Connects to `host:port` and checks the host key with `check`.
    ///
    /// # Errors
    /// [`SshError::Unreachable`] without a connection or handshake; [`SshError::HostKeyRefused`]
    /// when `check` said no.
    pub async fn connect(
        host: &str,
        port: u16,
        check: impl Fn(&HostKey) -> bool + Send + Sync + 'static,
    ) -> Result<(Session, HostKey), SshError> {
        let address = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let config =
            Arc::new(client::Config { keepalive_interval: Some(Duration::from_secs(15)), keepalive_max: 4, ..client::Config::default() });
        let presented = Arc::new(Mutex::new(None));
        let handler = Client { check: Box::new(check), presented: presented.clone() };
        let unreachable = |reason: String| SshError::Unreachable { address: address.clone(), reason };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(unreachable(err.to_string())),
            Err(_) => return Err(unreachable(format!("no TCP connection within {CONNECT_TIMEOUT:?}"))),
        };
        let _ = stream.set_nodelay(true);
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, client::connect_stream(config, stream, handler)).await;
        let seen = presented.lock().ok().and_then(|presented| presented.clone());
        match (connected, seen) {
            (Ok(Ok(handle)), Some((host_key, true))) => Ok((Session { handle, address }, host_key)),
            (_, Some((host_key, false))) => Err(SshError::HostKeyRefused(host_key)),
            (Ok(Ok(_)), _) => Err(unreachable("the server presented no host key".into())),
            (Ok(Err(err)), _) => Err(unreachable(err.to_string())),
            (Err(_), _) => Err(unreachable(format!("no SSH handshake within {CONNECT_TIMEOUT:?}"))),
        }
    }

    /// Logs in as `user`.
    ///
    /// # Errors
    /// [`SshError::KeyFile`] for an unusable key file, [`SshError::AuthRefused`] when the
    /// server says no, [`SshError::PasswordExpired`] when it asks for a new password.
    pub async fn authenticate(&mut self, user: &str, credential: &Credential) -> Result<(), SshError> {
        let attempt = async {
            match credential {
                Credential::Key(path) => self.authenticate_key(user, path).await,
                Credential::Password(password) => self.authenticate_password(user, password).await,
            }
        };
        tokio::time::timeout(AUTH_TIMEOUT, attempt)
            .await
            .map_err(|_| SshError::Session(format!("{} did not answer the login within {AUTH_TIMEOUT:?}", self.address)))?
    }

    async fn authenticate_key(&mut self, user: &str, path: &Path) -> Result<(), SshError> {
        let key = load_key(path)?;
        let fingerprint = key.public_key().fingerprint(HashAlg::Sha256);
        let hash = self.handle.best_supported_rsa_hash().await.map_err(session_error("negotiating the signature"))?.flatten();
        let result = self
            .handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(session_error("logging in"))?;
        if result.success() {
            return Ok(());
        }
        Err(SshError::AuthRefused(format!("{} refused the key {} ({fingerprint}) for user {user}", self.address, path.display())))
    }

    async fn authenticate_password(&mut self, user: &str, password: &Secret) -> Result<(), SshError> {
        let refused = || SshError::AuthRefused(format!("{} refused the password of user {user}", self.address));
        let result = self.handle.authenticate_password(user, password.expose()).await.map_err(session_error("logging in"))?;
        let remaining = match result {
            client::AuthResult::Success => return Ok(()),
            client::AuthResult::Failure { remaining_methods, .. } => remaining_methods,
        };
        if !remaining.contains(&MethodKind::KeyboardInteractive) {
            return Err(refused());
        }
        // Servers that only offer keyboard-interactive (PAM) ask for the password as a prompt.
        // We answer one password prompt; any further prompt is PAM asking for a new password.
        let mut answered = false;
        let mut reply = self.handle.authenticate_keyboard_interactive_start(user, None).await.map_err(session_error("logging in"))?;
        loop {
            match reply {
                KeyboardInteractiveAuthResponse::Success => return Ok(()),
                KeyboardInteractiveAuthResponse::Failure { .. } => return Err(refused()),
                KeyboardInteractiveAuthResponse::InfoRequest { name, instructions, prompts } => {
                    let text = format!("{name} {instructions} {}", prompts.iter().map(|p| p.prompt.as_str()).collect::<Vec<_>>().join(" "))
                        .to_ascii_lowercase();
                    if text.contains("expired") || text.contains("change") || text.contains("new password") {
                        return Err(SshError::PasswordExpired);
                    }
                    let responses = if prompts.is_empty() {
                        Vec::new()
                    } else if !answered && prompts.len() == 1 && prompts[0].prompt.to_ascii_lowercase().contains("password") {
                        answered = true;
                        vec![password.expose().to_owned()]
                    } else {
                        return Err(refused());
                    };
                    reply = self.handle.authenticate_keyboard_interactive_respond(responses).await.map_err(session_error("logging in"))?;
                }
            }
        }
    }

    /// Runs `command` through the login shell with `stdin` as its input, and waits for it.
    ///
    /// # Errors
    /// [`SshError::Session`] when the channel fails or `timeout` passes.
    pub async fn exec(&self, command: &str, stdin: &[u8], timeout: Duration) -> Result<Output, SshError> {
        let run = async {
            let mut channel = self.handle.channel_open_session().await.map_err(session_error("opening a channel"))?;
            channel.exec(true, command).await.map_err(session_error("starting a command"))?;
            if !stdin.is_empty() {
                channel.data(stdin).await.map_err(session_error("sending input"))?;
            }
            channel.eof().await.map_err(session_error("sending input"))?;
            let mut output = Output::default();
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            while let Some(message) = channel.wait().await {
                match message {
                    ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => output.code = Some(exit_status),
                    ChannelMsg::Failure => return Err(SshError::Session("the server refused to run a command".into())),
                    _ => {}
                }
            }
            output.stdout = String::from_utf8_lossy(&stdout).into_owned();
            output.stderr = String::from_utf8_lossy(&stderr).into_owned();
            Ok(output)
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| SshError::Session(format!("a command on {} did not finish within {timeout:?}", self.address)))?
    }

    /// Copies the local file `local` to `remote` (a path the login user may write), by SFTP
    /// when the server offers it, else by `cat` with the bytes on stdin.
    ///
    /// # Errors
    /// [`SshError::Session`] when neither way works or `timeout` passes.
    pub async fn upload(&self, local: &Path, remote: &str, timeout: Duration) -> Result<UploadMethod, SshError> {
        let copy = async {
            match self.upload_sftp(local, remote).await {
                Ok(()) => Ok(UploadMethod::Sftp),
                Err(SftpFailure::Unavailable) => self.upload_exec(local, remote).await.map(|()| UploadMethod::Exec),
                Err(SftpFailure::Failed(reason)) => Err(SshError::Session(format!("uploading {} by SFTP: {reason}", local.display()))),
            }
        };
        tokio::time::timeout(timeout, copy)
            .await
            .map_err(|_| SshError::Session(format!("the upload to {} did not finish within {timeout:?}", self.address)))?
    }

    async fn upload_sftp(&self, local: &Path, remote: &str) -> Result<(), SftpFailure> {
        let mut channel = self.handle.channel_open_session().await.map_err(|err| SftpFailure::Failed(err.to_string()))?;
        channel.request_subsystem(true, "sftp").await.map_err(|_| SftpFailure::Unavailable)?;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => break,
                Some(ChannelMsg::Failure) | Some(ChannelMsg::Close) | None => return Err(SftpFailure::Unavailable),
                Some(_) => {}
            }
        }
        let sftp = russh_sftp::client::SftpSession::new(channel.into_stream()).await.map_err(|err| SftpFailure::Failed(err.to_string()))?;
        let failed = |err: &dyn std::fmt::Display| SftpFailure::Failed(err.to_string());
        let mut source = tokio::fs::File::open(local).await.map_err(|err| failed(&err))?;
        let mut target = sftp.create(remote).await.map_err(|err| failed(&err))?;
        tokio::io::copy(&mut source, &mut target).await.map_err(|err| failed(&err))?;
        target.shutdown().await.map_err(|err| failed(&err))?;
        sftp.close().await.map_err(|err| failed(&err))?;
        Ok(())
    }

    async fn upload_exec(&self, local: &Path, remote: &str) -> Result<(), SshError> {
        let failed = |err: &dyn std::fmt::Display| SshError::Session(format!("uploading {}: {err}", local.display()));
        let mut channel = self.handle.channel_open_session().await.map_err(|err| failed(&err))?;
        channel.exec(true, format!("cat > {}", super::shell::quote(remote))).await.map_err(|err| failed(&err))?;
        let source = tokio::fs::File::open(local).await.map_err(|err| failed(&err))?;
        channel.data(source).await.map_err(|err| failed(&err))?;
        channel.eof().await.map_err(|err| failed(&err))?;
        let mut code = None;
        while let Some(message) = channel.wait().await {
            if let ChannelMsg::ExitStatus { exit_status } = message {
                code = Some(exit_status);
            }
        }
        match code {
            Some(0) => Ok(()),
            other => Err(failed(&format!("`cat` on the host exited with {other:?}"))),
        }
    }

    /// Says goodbye to the server.
    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

enum SftpFailure {
    Unavailable,
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Makes a key with `ssh-keygen ARGS` and loads it; the error's text, or "ok".
    fn load(args: &[&str]) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("key");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-f"])
            .arg(&path)
            .args(args)
            .output()
            .expect("ssh-keygen is missing: install openssh-client");
        assert!(made.status.success(), "ssh-keygen {args:?}: {}", String::from_utf8_lossy(&made.stderr));
        match load_key(&path) {
            Ok(_) => "ok".into(),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn ed25519_and_ecdsa_keys_load_and_rsa_keys_are_refused_by_name() {
        for args in [&["-t", "ed25519", "-N", ""][..], &["-t", "ecdsa", "-N", ""], &["-t", "ecdsa", "-b", "384", "-N", ""]] {
            assert_eq!(load(args), "ok", "{args:?}");
        }
        // OpenSSH's own format, and the PEM (PKCS#1) one older tools write.
        for args in [&["-t", "rsa", "-b", "2048", "-N", ""][..], &["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", ""]] {
            let error = load(args);
            assert!(error.contains("holds an SSH key of type RSA") && error.contains("ssh-keygen -t ed25519"), "{args:?}: {error}");
        }
        let error = load(&["-t", "ed25519", "-N", "a passphrase"]);
        assert!(error.contains("protected by a passphrase"), "{error}");
    }
}
