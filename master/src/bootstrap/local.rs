//! What bootstrap settles on this machine before the host is contacted: the SSH key, the
//! agent binary (digest, size, architecture), `--advertise`, `--name` and the master's
//! address. Every failure here is a usage error, and nothing has touched the host yet.

use std::io::Read;
use std::path::Path;

use super::preflight::elf_arch;
use super::ssh::{self, Credential};
use super::{split_host_port, Error, Options, DEFAULT_AGENT_PORT};

/// The flags, files and master address, checked.
pub(super) struct Local {
    pub(super) binary: LocalBinary,
    pub(super) agent_port: u16,
    /// The host part of `--advertise` (by default the SSH host), without brackets.
    pub(super) advertise_host: String,
    /// The master's `HOST:PORT`, as agents reach it, and its two parts.
    pub(super) master: String,
    pub(super) master_host: String,
    pub(super) master_port: u16,
}

impl Local {
    /// Checks the flags and files of `options`, and `master`, the master's address.
    ///
    /// # Errors
    /// [`Error::Usage`], saying which flag or file to fix.
    pub(super) fn check(options: &Options, master: &str) -> Result<Local, Error> {
        if let Credential::Key(path) = &options.credential {
            if !path.is_file() {
                return Err(Error::Usage(format!(
                    "the SSH key {} does not exist; pass --identity KEYFILE or --password-stdin",
                    path.display()
                )));
            }
            // A key bootstrap cannot sign with is refused before the host is contacted.
            ssh::load_key(path).map_err(|err| Error::Usage(err.to_string()))?;
        }
        let binary = LocalBinary::read(&options.agent_binary)?;
        let (agent_port, advertise_host) = match &options.advertise {
            Some(advertise) => {
                let (host, port) =
                    split_host_port(advertise).ok_or_else(|| Error::Usage(format!("--advertise {advertise:?} is not HOST:PORT")))?;
                (port, host.to_owned())
            }
            None => (DEFAULT_AGENT_PORT, options.host.clone()),
        };
        if let Some(name) = &options.name {
            pmesh_proto::identity::validate_name(name).map_err(|err| Error::Usage(format!("--name: {err}")))?;
        }
        let (master_host, master_port) = split_host_port(master)
            .ok_or_else(|| Error::Usage(format!("the master address {master:?} in the credential is not HOST:PORT")))?;
        Ok(Local { binary, agent_port, advertise_host, master: master.to_owned(), master_host: master_host.to_owned(), master_port })
    }
}

/// The agent binary to upload: its digest, size and architecture.
#[derive(Debug, Clone)]
pub struct LocalBinary {
    pub sha256: String,
    pub size: u64,
    pub arch: Option<&'static str>,
}

impl LocalBinary {
    /// Reads `path` once: sha256 (ring's, which is fast even in debug builds), size and ELF
    /// architecture.
    ///
    /// # Errors
    /// [`Error::Usage`] when the file cannot be read.
    pub fn read(path: &Path) -> Result<LocalBinary, Error> {
        let unreadable = |err: std::io::Error| {
            Error::Usage(format!("cannot read the agent binary {} ({err}); pass --agent-binary PATH", path.display()))
        };
        let mut file = std::fs::File::open(path).map_err(unreadable)?;
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buffer = vec![0u8; 1 << 20];
        let (mut size, mut header) = (0u64, Vec::new());
        loop {
            let n_read = file.read(&mut buffer).map_err(unreadable)?;
            if n_read == 0 {
                break;
            }
            if header.len() < 20 {
                header.extend_from_slice(&buffer[..n_read.min(20)]);
            }
            context.update(&buffer[..n_read]);
            size += n_read as u64;
        }
        Ok(LocalBinary { sha256: hex::encode(context.finish()), size, arch: elf_arch(&header) })
    }
}
