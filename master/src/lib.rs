//! `pmesh`: the master daemon and the operator's CLI.
//!
//! - [`identity`]: the mesh CA; [`store`]: all persisted state, behind one backend interface;
//!   [`service`] and [`policy`]: the gRPC service and who may call it; [`registry`]: the
//!   agents' heartbeat and their connections; [`dispatch`]: patterns, runs and events;
//!   [`depot`]: the artifact depot; [`daemon`]: `ca init` and `serve`; [`cli`]: the command
//!   line.

pub mod bootstrap;
pub mod bundles;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod depot;
pub mod dispatch;
pub mod error;
pub mod identity;
pub mod labs;
pub mod policy;
pub mod registry;
pub mod service;
pub mod store;
pub mod suggest;
