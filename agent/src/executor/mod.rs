//! The executor, split the way Nomad splits a client:
//! - [`plan`]: what a step is, resolved and concrete;
//! - [`contract`]: what the runner needs from a container engine (`crate::docker` implements
//!   it with bollard);
//! - [`runner`]: walks the steps as a DAG, converges, reports [`events`];
//! - [`probe`]: the wait steps' probes.

pub mod contract;
pub mod events;
pub mod plan;
pub mod probe;
pub mod runner;
