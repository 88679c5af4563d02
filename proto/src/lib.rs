//! The pmesh contract, shared by the master, the agent and the CLI.
//!
//! - [`v1`]: the generated messages of protocol v1 (`pmesh.v1`), and the descriptor set for
//!   reflection; the services are generated in pmesh-rt (`pmesh_rt::v1`), with tonic.
//! - [`identity`]: who a certificate speaks for (role and name), fingerprints.
//! - [`event`]: a run's events, one shape from the runner to the screen; [`progress`]: how far
//!   a transfer is.
//! - [`tls`]: the mesh's TLS policy (TLS 1.3 only, mesh CA only) as rustls configurations,
//!   and the translation of TLS failures into sentences an operator can act on.
//!
//! This crate does no I/O: no sockets, no files, no runtime. Callers read and write the bytes.

pub mod bundle;
pub mod event;
pub mod identity;
pub mod lab;
pub mod pattern;
pub mod progress;
pub mod tls;

/// The messages of protocol v1, generated from `proto/pmesh/v1/*.proto` at build time.
#[allow(clippy::all, missing_docs, unused_qualifications)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/pmesh.v1.rs"));

    /// The encoded `FileDescriptorSet` of protocol v1, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pmesh_descriptor.bin"));
}

/// The version of this build, reported by agents and the master.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
