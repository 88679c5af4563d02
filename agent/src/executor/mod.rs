//! The executor, split the way Nomad splits a client:
//! - [`plan`]: what a step is, resolved and concrete;
//! - [`contract`]: what the runner needs from a container engine (`crate::docker` implements
//!   it with bollard);
//! - [`runner`]: walks the steps as a DAG, converges, reports [`events`];
//! - [`probe`]: the wait steps' probes;
//! - [`preview`]: what an apply would do, found out without doing it (`--plan`);
//! - `fake` (tests only): an in-memory driver and artifact store the runner's unit tests
//!   script, in the manner of Nomad's `drivers/mock`.

pub mod contract;
pub mod events;
#[cfg(test)]
pub(crate) mod fake;
pub mod plan;
pub mod preview;
pub mod probe;
pub mod runner;
