//! `pmesh-agent`: the pattern controller.
//!
//! - [`join`]: enrolment by token and CSR; [`renew`]: certificate rotation;
//! - [`cli`]: the command line, one file per verb, behind the thin `main.rs`;
//! - [`daemon`] and [`service`]: the mTLS server and its policy (only the master may call);
//!   [`error`]: the service's errors and their one translation into a gRPC status;
//! - [`facts`] and [`docker`]: what the agent reports about its host;
//! - [`state`]: the identity on disk; [`config`]: settings; [`security`]: what a pattern may ask
//!   of the host (capabilities);
//! - [`runs`], [`compile`], [`executor`], [`journal`]: runs the master starts, and their events;
//! - [`artifacts`]: the artifact cache, fetched from the master's depot or a pattern's URLs;
//! - [`sim`]: many real identities in one process, for soak and scale tests.

pub mod artifacts;
pub mod bundles;
pub mod cli;
pub mod compile;
pub mod config;
pub mod daemon;
pub mod docker;
pub mod error;
pub mod executor;
pub mod exit;
pub mod facts;
pub mod join;
pub mod journal;
pub mod keys;
pub mod local;
pub mod ports;
pub mod renew;
pub mod runs;
pub mod security;
pub mod service;
pub mod sim;
pub mod state;
