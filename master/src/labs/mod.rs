//! Labs on the master: a lab file checked against the registry, recorded in the store
//! (`Namespace::Labs`) and brought up by a driver task per lab ([`drive`]); its plan, status,
//! list and teardown.
//!
//! The driver is the only writer of a lab's record while the lab is active; `lab up` on an
//! active lab is refused, and `lab down` stops the driver before it destroys anything. At
//! start the master resumes every active lab's driver: what the record says is running is
//! followed, what is pending is started, what finished stays finished.

mod drive;
mod plan;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use pmesh_proto::lab::{self, Lab};
use pmesh_proto::v1;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Dispatcher;
use crate::error::{now_unix, ApiError};
use crate::store::{ComponentRecord, ComponentState, LabRecord, LabState, Store};

pub use status::lab_status;

/// The master's labs.
pub struct Labs {
    store: Store,
    dispatcher: Arc<Dispatcher>,
    /// The drivers running, by lab name: a generation (so a driver that ends removes only
    /// itself) and its stop token.
    drivers: Mutex<HashMap<String, (u64, CancellationToken)>>,
    generation: std::sync::atomic::AtomicU64,
    shutdown: CancellationToken,
}

/// A lab file parsed and checked against the registry, or every problem in it.
fn checked(dispatcher: &Dispatcher, file: &str, text: &str) -> Result<Lab, ApiError> {
    let file = if file.is_empty() { "lab.yaml" } else { file };
    let lab = lab::parse(file, text).map_err(|problems| invalid(&problems))?;
    let registry = dispatcher.registry()?;
    let problems = lab::check(&lab, &registry);
    if !problems.is_empty() {
        return Err(invalid(&problems));
    }
    Ok(lab)
}

fn invalid(problems: &[lab::Diagnostic]) -> ApiError {
    ApiError::Invalid(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
}

impl Labs {
    /// The labs over `store`, running components through `dispatcher`; drivers stop on
    /// `shutdown`.
    pub fn new(store: Store, dispatcher: Arc<Dispatcher>, shutdown: CancellationToken) -> Arc<Labs> {
        Arc::new(Labs { store, dispatcher, drivers: Mutex::new(HashMap::new()), generation: Default::default(), shutdown })
    }

    /// Every problem of a lab file, the registry's included.
    ///
    /// # Errors
    /// When the store fails.
    pub fn lint(&self, request: &v1::LabFileRequest) -> Result<v1::LintLabResponse, ApiError> {
        match checked(&self.dispatcher, &request.file, &request.text) {
            Ok(_) => Ok(v1::LintLabResponse { diagnostics: vec![] }),
            Err(ApiError::Invalid(problems)) => Ok(v1::LintLabResponse { diagnostics: problems.lines().map(str::to_owned).collect() }),
            Err(err) => Err(err),
        }
    }

    /// Records the lab and starts its driver; the status as recorded.
    ///
    /// # Errors
    /// [`ApiError::Invalid`] listing every problem (nothing recorded); [`ApiError::Failed`]
    /// while the lab is still coming up.
    pub fn up(self: &Arc<Self>, request: &v1::LabFileRequest) -> Result<v1::LabStatus, ApiError> {
        let lab = checked(&self.dispatcher, &request.file, &request.text)?;
        let previous = self.store.lab(&lab.name)?;
        let driving = self.drivers.lock().expect("drivers lock").contains_key(&lab.name);
        if driving && previous.as_ref().is_some_and(|record| record.state == LabState::Active) {
            return Err(ApiError::Failed(format!("lab {} is still coming up; follow it with `pmesh lab status {}`", lab.name, lab.name)));
        }
        let registry = self.dispatcher.registry()?;
        let now = now_unix();
        let mut components = BTreeMap::new();
        for component in &lab.components {
            let resolved = lab::Catalog::pattern(&registry, &component.pattern, component.version.as_ref()).map_err(ApiError::Invalid)?;
            let earlier = previous.as_ref().and_then(|record| record.components.get(&component.name));
            // A selector's earlier choice stays while it still matches, so the instance stays put.
            let agent = match (&component.placement, earlier) {
                (lab::Placement::Selector(labels), Some(earlier)) if registry.carries(&earlier.agent, labels) => earlier.agent.clone(),
                _ => registry
                    .place(&component.placement)
                    .ok_or_else(|| ApiError::Invalid(format!("component {}: no agent to run on", component.name)))?,
            };
            let replicas = earlier.filter(|earlier| earlier.agent == agent).map(|earlier| earlier.replicas.clone()).unwrap_or_default();
            components.insert(
                component.name.clone(),
                ComponentRecord {
                    pattern: resolved.reference,
                    agent,
                    state: ComponentState::Pending,
                    replicas,
                    error: String::new(),
                    started_at: 0,
                    finished_at: 0,
                    unchanged: false,
                },
            );
        }
        // Components dropped from the file keep their record, so `lab down` still removes
        // what they built.
        for (name, earlier) in previous.iter().flat_map(|record| record.components.iter()) {
            if !components.contains_key(name) && earlier.state != ComponentState::Destroyed {
                let mut kept = earlier.clone();
                kept.state = if kept.state.is_final() { kept.state } else { ComponentState::Failed };
                kept.error = "no longer in the lab file; `pmesh lab down` destroys it".to_owned();
                components.insert(name.clone(), kept);
            }
        }
        let record = LabRecord {
            v: 1,
            name: lab.name.clone(),
            file: lab.file.clone(),
            text: request.text.clone(),
            state: LabState::Active,
            created_at: previous.as_ref().map_or(now, |record| record.created_at),
            updated_at: now,
            components,
        };
        self.store.put_lab(&record)?;
        tracing::info!(lab = %lab.name, components = lab.components.len(), "lab coming up");
        self.spawn(lab.name);
        Ok(lab_status(&record))
    }

    /// Starts the driver of every active lab (at the master's start).
    ///
    /// # Errors
    /// When the store fails.
    pub fn resume(self: &Arc<Self>) -> anyhow::Result<usize> {
        let active: Vec<LabRecord> = self.store.labs()?.into_iter().filter(|record| record.state == LabState::Active).collect();
        for record in &active {
            tracing::info!(lab = %record.name, "resuming a lab after a restart");
            self.spawn(record.name.clone());
        }
        Ok(active.len())
    }

    fn spawn(self: &Arc<Self>, name: String) {
        let token = self.shutdown.child_token();
        let generation = self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some((_, earlier)) = self.drivers.lock().expect("drivers lock").insert(name.clone(), (generation, token.clone())) {
            // A driver that was finishing: the new one owns the record now.
            earlier.cancel();
        }
        let labs = self.clone();
        tokio::spawn(async move {
            if let Err(err) = labs.drive(&name, &token).await {
                tracing::error!(lab = %name, error = format!("{err:#}"), "the lab's driver stopped");
            }
            let mut drivers = labs.drivers.lock().expect("drivers lock");
            if drivers.get(&name).is_some_and(|(running, _)| *running == generation) {
                drivers.remove(&name);
            }
        });
    }

    /// The lab called `name`.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] when there is none.
    pub fn status(&self, name: &str) -> Result<v1::LabStatus, ApiError> {
        let record = self.store.lab(name)?.ok_or_else(|| ApiError::NotFound(format!("no lab {name:?}")))?;
        Ok(lab_status(&record))
    }

    /// Every lab.
    ///
    /// # Errors
    /// When the store fails.
    pub fn list(&self) -> Result<v1::ListLabsResponse, ApiError> {
        Ok(v1::ListLabsResponse { labs: self.store.labs()?.iter().map(lab_status).collect() })
    }

    /// Stops the lab's driver, then destroys every component's instances, dependents first.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an unknown lab; the first component that cannot be
    /// destroyed stops the teardown (what depends on it is destroyed already), named.
    pub async fn down(&self, name: &str) -> Result<v1::LabDownResponse, ApiError> {
        if self.store.lab(name)?.is_none() {
            return Err(ApiError::NotFound(format!("no lab {name:?}")));
        }
        if let Some((_, token)) = self.drivers.lock().expect("drivers lock").remove(name) {
            token.cancel();
        }
        // Read after the driver was told to stop: what it started is in the record.
        let mut record = self.store.lab(name)?.ok_or_else(|| ApiError::NotFound(format!("no lab {name:?}")))?;
        let lab = lab::parse(&record.file, &record.text).map_err(|problems| invalid(&problems))?;
        // Dependents first; components dropped from the file (nothing in it depends on them
        // any more) before those.
        let mut order: Vec<String> = lab.order().iter().rev().map(|component| component.name.clone()).collect();
        let dropped: Vec<String> = record.components.keys().filter(|name| !order.contains(name)).cloned().collect();
        order.splice(0..0, dropped);
        let mut done = Vec::new();
        for component_name in order {
            let Some(state) = record.components.get_mut(&component_name) else { continue };
            let mut destroyed = Vec::new();
            let mut error = String::new();
            for replica in state.replicas.iter().filter(|replica| !replica.run_id.is_empty()) {
                match self.dispatcher.destroy_instance(&replica.instance, &state.agent).await {
                    Ok(items) => destroyed.extend(items),
                    Err(ApiError::NotFound(_)) => {}
                    Err(err) => {
                        error = err.to_string();
                        break;
                    }
                }
            }
            if !error.is_empty() {
                state.error = error.clone();
                record.updated_at = now_unix();
                self.store.put_lab(&record)?;
                done.push(v1::LabDownComponent { name: component_name.clone(), destroyed, error: error.clone() });
                return Err(ApiError::Failed(format!("lab {name}: component {component_name} could not be destroyed: {error}")));
            }
            state.state = ComponentState::Destroyed;
            for replica in &mut state.replicas {
                replica.state = ComponentState::Destroyed;
            }
            done.push(v1::LabDownComponent { name: component_name.clone(), destroyed, error: String::new() });
        }
        record.state = LabState::Down;
        record.updated_at = now_unix();
        self.store.put_lab(&record)?;
        tracing::info!(lab = %name, "lab destroyed");
        Ok(v1::LabDownResponse { components: done })
    }
}
