//! Pattern bundles on the master's side: packing a pattern directory into a deterministic
//! archive, signing it with the mesh's ed25519 bundle key, and sending it to an agent only if
//! the agent does not hold that digest already.

use std::path::Path;

use pmesh_proto::bundle;
use pmesh_proto::v1::{HasBundleRequest, PushBundleRequest};
use pmesh_rt::v1::agent_client::AgentClient;
use tonic::transport::Channel;

use crate::identity::PkiPaths;

/// A packed, signed bundle.
#[derive(Clone)]
pub struct SignedBundle {
    /// `sha256:HEX` of the archive: the bundle's identity.
    pub digest: String,
    pub archive: Vec<u8>,
    pub signature: Vec<u8>,
}

impl std::fmt::Debug for SignedBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedBundle").field("digest", &self.digest).field("bytes", &self.archive.len()).finish()
    }
}

/// Packs the pattern directory `dir` and signs it with the key in `pki`.
///
/// # Errors
/// When the directory cannot be read, holds what a bundle may not (symlinks), or the key is
/// missing.
pub fn pack_and_sign(dir: &Path, pki: &PkiPaths) -> anyhow::Result<SignedBundle> {
    let pattern = pmesh_rt::pattern_dir::read(dir)?;
    let archive = bundle::pack(&pattern.bundle_files())?;
    let key = std::fs::read(pki.bundle_key()).map_err(|err| anyhow::anyhow!("reading {}: {err}", pki.bundle_key().display()))?;
    let signature = bundle::sign(&archive, &key)?;
    Ok(SignedBundle { digest: bundle::digest(&archive), archive, signature })
}

/// Whether the push moved the bundle or found it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    AlreadyHeld,
}

/// Sends `signed` to the agent behind `channel` unless it holds the digest already.
///
/// # Errors
/// The agent's status: `PermissionDenied` when it refuses the bundle (signature, digest).
pub async fn deliver(channel: Channel, signed: &SignedBundle) -> Result<Delivery, tonic::Status> {
    let mut agent = AgentClient::new(channel).max_encoding_message_size(64 * 1024 * 1024);
    if agent.has_bundle(HasBundleRequest { digest: signed.digest.clone() }).await?.into_inner().present {
        return Ok(Delivery::AlreadyHeld);
    }
    agent
        .push_bundle(PushBundleRequest {
            digest: signed.digest.clone(),
            bundle: signed.archive.clone(),
            signature: signed.signature.clone(),
        })
        .await?;
    Ok(Delivery::Sent)
}
