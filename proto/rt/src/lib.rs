//! The host-facing code both daemons share, kept out of `pmesh-proto` so the contract stays
//! free of I/O, and out of `master` and `agent` so neither depends on the other. Every
//! transport edge is here: proto's generated code is built without tonic's transport, and
//! `tests/tests/deps.rs` checks that its dependency tree has no HTTP stack and no runtime.
//!
//! - [`mod@serve`]: the one gRPC server both daemons run, behind [`authz`], the per-call
//!   policy;
//! - [`accept`]: the TLS accept loop behind a gRPC server, with each peer address held to its
//!   share of handshakes and anonymous connections;
//! - [`net`]: dialling a mesh peer, with the TLS failure a call died of kept for the error
//!   message;
//! - [`cli`]: both binaries' `main`, exit codes (one mapping from a failed call's status) and
//!   the CLI's one-sentence error;
//! - [`mod@config`]: the range checks both daemons' configurations share;
//! - [`files`]: atomic writes, private files created 0600;
//! - [`disk`]: free space, and whether an error is a full disk;
//! - [`durable`]: group commit, one flush shared by every task waiting for one;
//! - [`fetch`]: artifacts by checksum: resumable, verified downloads into a cache with leases;
//! - [`pattern_dir`]: a pattern directory read from disk;
//! - [`logging`]: the tracing subscriber, journald-aware;
//! - [`process`]: signals and sd_notify readiness around a daemon's future.

pub mod accept;
pub mod authz;
pub mod cli;
pub mod config;
pub mod disk;
pub mod docs;
pub mod durable;
pub mod fetch;
pub mod files;
pub mod logging;
pub mod net;
pub mod pattern_dir;
pub mod process;
pub mod serve;

pub use serve::serve;

/// The services of protocol v1 (`Master`, `Agent`): clients and servers generated over
/// `pmesh_proto::v1`'s messages, here because they need tonic.
#[allow(clippy::all, missing_docs, unused_qualifications)]
pub mod v1 {
    tonic::include_proto!("pmesh.v1");
}
