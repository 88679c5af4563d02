//! `pmesh`: the master daemon and the operator's CLI.
//!
//! - [`identity`]: the mesh CA; [`store`]: sled state; [`service`] and [`policy`]: the gRPC
//!   service and who may call it; [`registry`]: the agents' heartbeat; [`depot`]: the
//!   artifact depot;
//!   [`daemon`]: `ca init` and `serve`; [`cli`]: the command line.

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
pub mod policy;
pub mod registry;
pub mod runstore;
pub mod service;
pub mod store;
