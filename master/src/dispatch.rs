//! Dispatch: patterns registered with the master, runs started on agents, and every agent's
//! event journal consumed, stored and fanned out to watchers.
//!
//! - A run is validated against its pattern on the master before anything is sent (the
//!   pattern parsed once per bundle digest, in [`patterns`]); the bundle goes to each target
//!   only if the agent lacks its digest; starts fan out concurrently, bounded by a semaphore.
//!   Agents are reached through the registry's shared [`Connections`].
//! - One consumer per agent follows the agent's journal from the last sequence number the
//!   master persisted, so a restarted master or a healed partition resumes exactly where it
//!   stopped. Events are persisted (with the cursor, atomically) before they are broadcast;
//!   the agent is told what it may drop only after a flush.

pub mod catalog;
mod instances;
pub mod patterns;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use pmesh_proto::event::Kind;
use pmesh_proto::v1;
use pmesh_rt::net::Dialled;
use pmesh_rt::v1::agent_client::AgentClient;
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::bundles::{deliver, SignedBundle};
use crate::error::{now_unix, ApiError};
use crate::identity::PkiPaths;
use crate::registry::Connections;
use crate::store::{AgentRecord, AgentState, PatternRecord, RunRecord, RunState, Store, StoredEvent};
use crate::suggest::{did_you_mean, unknown_pattern};
use patterns::PatternCache;

const MAX_CONCURRENT_STARTS: usize = 32;
/// The longest an agent call may take, and the bound the master's connections are dialled
/// with.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Events persisted between flushes and acknowledgements.
const ACK_EVERY: usize = 4096;
/// At most this many events of one agent go into one transaction.
const MAX_BATCH: usize = 1024;

/// The dispatcher, shared by the service and the background consumers.
pub struct Dispatcher {
    store: Store,
    pki: PkiPaths,
    connections: Arc<Connections>,
    patterns: PatternCache,
    live: broadcast::Sender<(u64, StoredEvent)>,
}

impl Dispatcher {
    /// A dispatcher over the master's store, reaching agents through `connections`.
    pub fn new(store: Store, pki: PkiPaths, connections: Arc<Connections>) -> Dispatcher {
        let (live, _) = broadcast::channel(4096);
        Dispatcher { store, pki, connections, patterns: PatternCache::new(patterns::CAPACITY), live }
    }

    fn channel(&self, agent: &AgentRecord) -> anyhow::Result<Dialled> {
        self.connections.get(agent)
    }

    fn explain(dialled: &Dialled, status: &tonic::Status) -> String {
        dialled.explain(status).map(|explained| explained.message).unwrap_or_else(|| status.message().to_owned())
    }

    /// Registers a pattern bundle: checks it opens and parses, signs it, stores it.
    ///
    /// # Errors
    /// [`ApiError::Invalid`] listing every problem of the pattern.
    pub fn push_pattern(&self, archive: Vec<u8>) -> Result<v1::PushPatternResponse, ApiError> {
        let pattern = patterns::parse(&archive)?;
        let key = std::fs::read(self.pki.bundle_key()).map_err(|err| anyhow::anyhow!("reading the bundle key: {err}"))?;
        let signature = pmesh_proto::bundle::sign(&archive, &key).map_err(|err| anyhow::anyhow!("{err}"))?;
        let digest = pmesh_proto::bundle::digest(&archive);
        let record = PatternRecord {
            v: 1,
            name: pattern.metadata.name.clone(),
            version: pattern.metadata.version.to_string(),
            digest: digest.clone(),
            description: pattern.metadata.description.clone(),
            category: serde_json::to_value(pattern.metadata.category)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_default(),
            pushed_at: now_unix(),
        };
        let created = self.store.put_pattern(&record, &archive, &signature).map_err(|err| ApiError::AlreadyExists(format!("{err:#}")))?;
        // Parsed already: a run start of this digest need not parse it again.
        self.patterns.insert(&digest, Arc::new(pattern));
        tracing::info!(pattern = %record.name, version = %record.version, %digest, created, "pattern registered");
        Ok(v1::PushPatternResponse { name: record.name, version: record.version, digest, created })
    }

    fn targets(&self, request: &v1::MasterStartRunRequest) -> Result<Vec<AgentRecord>, ApiError> {
        let ways = usize::from(!request.on.is_empty()) + usize::from(!request.selector.is_empty()) + usize::from(request.all);
        if ways != 1 {
            return Err(ApiError::Invalid("choose agents with exactly one of --on, --selector or --all".into()));
        }
        let agents = self.store.agents()?;
        if !request.on.is_empty() {
            let mut chosen = Vec::new();
            for name in &request.on {
                let agent = agents.iter().find(|agent| &agent.name == name).ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "no agent named {name:?}{}",
                        did_you_mean(name, agents.iter().map(|agent| agent.name.as_str()))
                    ))
                })?;
                chosen.push(agent.clone());
            }
            return Ok(chosen);
        }
        let chosen: Vec<AgentRecord> =
            agents.into_iter().filter(|agent| request.selector.iter().all(|(key, value)| agent.labels.get(key) == Some(value))).collect();
        if chosen.is_empty() {
            return Err(ApiError::Invalid("no agent matches the selection".into()));
        }
        Ok(chosen)
    }

    /// The registered pattern `reference` names, its signed bundle, and its parse (cached).
    fn registered(&self, reference: &str) -> Result<(PatternRecord, SignedBundle, Arc<pmesh_proto::pattern::Pattern>), ApiError> {
        let Some(pattern) = self.store.find_pattern(reference)? else {
            let registered = self.store.patterns()?;
            return Err(ApiError::NotFound(unknown_pattern(
                reference,
                registered.iter().map(|known| (known.name.as_str(), known.version.as_str())),
            )));
        };
        let (archive, signature) =
            self.store.bundle(&pattern.digest)?.ok_or_else(|| anyhow::anyhow!("the bundle of {} is missing", pattern.digest))?;
        let parsed = self.patterns.get_or_parse(&pattern.digest, &archive).map_err(|err| {
            ApiError::Internal(anyhow::anyhow!("the registered pattern {}@{} no longer parses: {err}", pattern.name, pattern.version))
        })?;
        let signed = SignedBundle { digest: pattern.digest.clone(), archive, signature };
        Ok((pattern, signed, parsed))
    }

    /// Validates and starts a run on its targets.
    ///
    /// # Errors
    /// [`ApiError::Invalid`] listing every problem (unknown pattern, no target, invalid
    /// values) before anything is sent.
    pub async fn start(self: &Arc<Self>, request: v1::MasterStartRunRequest) -> Result<v1::MasterStartRunResponse, ApiError> {
        if !request.run_id.is_empty() {
            if let Some(existing) = self.store.run(&request.run_id)? {
                let targets = existing.agents.keys().map(|agent| v1::TargetResult { agent: agent.clone(), ..Default::default() }).collect();
                return Ok(v1::MasterStartRunResponse { run_id: existing.run_id, targets });
            }
        }
        let (pattern, signed, parsed) = self.registered(&request.pattern)?;
        let values_text = if request.values_json.trim().is_empty() { "{}" } else { request.values_json.as_str() };
        let params = patterns::values(&parsed, values_text)?;
        patterns::render_templates(&signed.archive, &parsed, &params)?;
        let targets = self.targets(&request)?;
        let instance = if request.instance.is_empty() { pattern.name.clone() } else { request.instance.clone() };
        pmesh_proto::identity::validate_name(&instance).map_err(|err| ApiError::Invalid(format!("instance: {err}")))?;
        if request.plan_only {
            return Ok(self.plan(targets, signed, instance, values_text.to_owned()).await);
        }

        let run_id =
            if request.run_id.is_empty() { format!("r{}-{:04x}", now_unix(), rand::random::<u16>()) } else { request.run_id.clone() };
        let run = RunRecord {
            v: 1,
            run_id: run_id.clone(),
            pattern: format!("{}@{}", pattern.name, pattern.version),
            digest: pattern.digest.clone(),
            instance: instance.clone(),
            created_at: now_unix(),
            agents: targets
                .iter()
                .map(|agent| (agent.name.clone(), AgentState { state: RunState::Pending, error: String::new(), outputs: Vec::new() }))
                .collect(),
        };
        self.store.put_run(&run)?;
        let limit = Arc::new(Semaphore::new(MAX_CONCURRENT_STARTS));
        let mut starts = tokio::task::JoinSet::new();
        for agent in targets {
            let this = self.clone();
            let signed = signed.clone();
            let limit = limit.clone();
            let (run_id, instance, values) = (run_id.clone(), instance.clone(), values_text.to_owned());
            let timeout_seconds = request.timeout_seconds;
            starts.spawn(async move {
                let _permit = limit.acquire().await;
                let result = this.start_on(&agent, &signed, &run_id, &instance, &values, timeout_seconds).await;
                (agent.name, result)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = starts.join_next().await {
            let Ok((agent, result)) = joined else { continue };
            let (state, error) = match &result {
                Ok(()) => (RunState::Running, String::new()),
                Err(refusal) => (refusal.state, refusal.error.clone()),
            };
            // An event consumed meanwhile may have moved the state on already: only a state
            // still pending is set, in the same compare-and-swap that reads it.
            self.store.update_run(&run_id, |run| {
                if let Some(known) = run.agents.get_mut(&agent).filter(|known| known.state == RunState::Pending) {
                    *known = AgentState { state, error: error.clone(), outputs: Vec::new() };
                }
            })?;
            let invalid = matches!(&result, Err(refusal) if refusal.invalid);
            results.push(v1::TargetResult { agent, started: result.is_ok(), error, plan: vec![], invalid });
        }
        results.sort_by(|left, right| left.agent.cmp(&right.agent));
        tracing::info!(run = %run_id, pattern = %run.pattern, targets = results.len(), "run started");
        Ok(v1::MasterStartRunResponse { run_id, targets: results })
    }

    /// Asks each target what the run would do there, concurrently and bounded; records,
    /// pushes and starts nothing.
    async fn plan(
        self: &Arc<Self>,
        targets: Vec<AgentRecord>,
        signed: SignedBundle,
        instance: String,
        values: String,
    ) -> v1::MasterStartRunResponse {
        let limit = Arc::new(Semaphore::new(MAX_CONCURRENT_STARTS));
        let mut plans = tokio::task::JoinSet::new();
        for agent in targets {
            let (this, signed, limit) = (self.clone(), signed.clone(), limit.clone());
            let request = v1::PlanRunRequest {
                bundle: signed.archive.clone(),
                signature: signed.signature.clone(),
                digest: signed.digest.clone(),
                instance: instance.clone(),
                values_json: values.clone(),
            };
            plans.spawn(async move {
                let _permit = limit.acquire().await;
                let result = match this.channel(&agent) {
                    Ok(dialled) => AgentClient::new(dialled.channel.clone())
                        .plan_run(request)
                        .await
                        .map(|response| response.into_inner().actions)
                        .map_err(|status| (Self::explain(&dialled, &status), status.code() == tonic::Code::InvalidArgument)),
                    Err(err) => Err((format!("{err:#}"), false)),
                };
                (agent.name, result)
            });
        }
        let mut targets = Vec::new();
        while let Some(joined) = plans.join_next().await {
            let Ok((agent, result)) = joined else { continue };
            targets.push(match result {
                Ok(plan) => v1::TargetResult { agent, started: false, error: String::new(), plan, invalid: false },
                Err((error, invalid)) => v1::TargetResult { agent, started: false, error, plan: vec![], invalid },
            });
        }
        targets.sort_by(|left, right| left.agent.cmp(&right.agent));
        v1::MasterStartRunResponse { run_id: String::new(), targets }
    }

    async fn start_on(
        &self,
        agent: &AgentRecord,
        signed: &SignedBundle,
        run_id: &str,
        instance: &str,
        values: &str,
        timeout_seconds: u64,
    ) -> Result<(), StartRefusal> {
        let dialled =
            self.channel(agent).map_err(|err| StartRefusal { state: RunState::Unreachable, error: format!("{err:#}"), invalid: false })?;
        // Only a call that did not get through makes the agent unreachable; an agent that
        // answered with an error (a refused bundle, a disk that failed) failed the run.
        let unreachable = |status: tonic::Status| {
            let state = if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) {
                RunState::Unreachable
            } else {
                RunState::Failed
            };
            let invalid = status.code() == tonic::Code::InvalidArgument;
            StartRefusal { state, error: Self::explain(&dialled, &status), invalid }
        };
        deliver(dialled.channel.clone(), signed).await.map_err(unreachable)?;
        AgentClient::new(dialled.channel.clone())
            .start_run(v1::StartRunRequest {
                run_id: run_id.to_owned(),
                bundle_digest: signed.digest.clone(),
                instance: instance.to_owned(),
                values_json: values.to_owned(),
                timeout_seconds,
            })
            .await
            .map_err(unreachable)?;
        Ok(())
    }

    /// Cancels a run on every agent still running it.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an unknown run.
    pub async fn cancel(&self, run_id: &str) -> Result<Vec<String>, ApiError> {
        let run = self.store.run(run_id)?.ok_or_else(|| ApiError::NotFound(format!("no run {run_id:?}")))?;
        let mut cancelled = Vec::new();
        for (name, state) in &run.agents {
            if !state.state.is_active() {
                continue;
            }
            let Some(agent) = self.store.agent(name)? else { continue };
            let Ok(dialled) = self.channel(&agent) else { continue };
            if let Ok(response) =
                AgentClient::new(dialled.channel.clone()).cancel_run(v1::CancelRunRequest { run_id: run_id.to_owned() }).await
            {
                if response.into_inner().cancelled {
                    cancelled.push(name.clone());
                }
            }
        }
        Ok(cancelled)
    }

    /// Keeps one journal consumer per registered agent until `shutdown`.
    pub async fn supervise(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut consumers: HashMap<String, CancellationToken> = HashMap::new();
        let mut ticker = tokio::time::interval(interval.min(Duration::from_secs(2)));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let Ok(agents) = self.store.agents() else { continue };
            let names: HashSet<String> = agents.iter().map(|agent| agent.name.clone()).collect();
            consumers.retain(|name, token| {
                let keep = names.contains(name);
                if !keep {
                    token.cancel();
                }
                keep
            });
            for agent in agents {
                if consumers.contains_key(&agent.name) {
                    continue;
                }
                let token = shutdown.child_token();
                consumers.insert(agent.name.clone(), token.clone());
                tokio::spawn(self.clone().consume(agent.name.clone(), token));
            }
        }
    }

    /// Follows one agent's journal, reconnecting with backoff, until `stop`.
    async fn consume(self: Arc<Self>, name: String, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let outcome = tokio::select! {
                _ = stop.cancelled() => return,
                outcome = self.follow(&name) => outcome,
            };
            match outcome {
                Ok(()) => backoff = Duration::from_millis(250),
                Err(err) => tracing::debug!(agent = %name, error = %err, "event stream interrupted; reconnecting"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn follow(&self, name: &str) -> anyhow::Result<()> {
        let agent = self.store.agent(name)?.ok_or_else(|| anyhow::anyhow!("agent {name} is gone"))?;
        let dialled = self.channel(&agent)?;
        let mut from_seq = self.store.cursor(name)? + 1;
        let stream = loop {
            // A long-lived stream: no per-call timeout.
            let mut request = tonic::Request::new(v1::WatchEventsRequest { from_seq });
            request.set_timeout(Duration::from_secs(365 * 24 * 3600));
            let response = AgentClient::new(dialled.channel.clone()).watch_events(request).await?;
            // An agent older than journal ids names none: its cursor is kept as it is.
            let journal = response.metadata().get(pmesh_proto::event::JOURNAL_ID_METADATA).and_then(|id| id.to_str().ok());
            let Some(journal) = journal else { break response.into_inner() };
            let cursor = self.store.follow_journal(name, journal)?;
            if cursor + 1 == from_seq {
                break response.into_inner();
            }
            // Another journal than the cursor was into: from its start.
            from_seq = cursor + 1;
        };
        // Whatever the stream holds already is persisted in one transaction: one commit per
        // burst rather than per event.
        let mut batches = stream.ready_chunks(MAX_BATCH);
        // The cursor as this consumer has moved it: the store refuses a batch when its cursor
        // is behind (writes lost to a full disk), and the stream starts again from there.
        let mut cursor = from_seq - 1;
        let mut unacked = 0usize;
        let mut flush_timer = tokio::time::interval(Duration::from_millis(200));
        loop {
            let next = tokio::select! {
                batch = batches.next() => batch,
                _ = flush_timer.tick(), if unacked > 0 => {
                    self.acknowledge(&dialled, name).await?;
                    unacked = 0;
                    continue;
                }
            };
            let Some(batch) = next else { return Ok(()) };
            let mut events = Vec::with_capacity(batch.len());
            let mut interrupted = None;
            for message in batch {
                match message {
                    Ok(event) => match StoredEvent::from_wire(name, event) {
                        Ok(event) => events.push(event),
                        // Skipped, not stored as something else; the cursor moves past it with
                        // the next event this master can read.
                        Err(err) => tracing::warn!(agent = %name, error = %err, "an event this master cannot read is skipped"),
                    },
                    Err(status) => {
                        interrupted = Some(status);
                        break;
                    }
                }
            }
            let kept = self.store.persist_following(name, cursor, &events)?;
            cursor = kept.last().map_or(cursor, |(_, event)| event.event.seq);
            unacked += kept.len();
            for (index, event) in kept {
                match event.event.kind {
                    Kind::RunStarted => self.store.set_agent_state(&event.event.run_id, name, RunState::Running, "", &[])?,
                    // The first failed step is why the run failed on this agent: `runs show`
                    // says so while the run goes on, and after it ends.
                    Kind::StepFailed => self
                        .store
                        .update_run(&event.event.run_id, |run| {
                            if let Some(agent) = run.agents.get_mut(name).filter(|agent| agent.error.is_empty()) {
                                agent.error = step_error(&event.event.step, &event.event.text);
                            }
                        })
                        .map(drop)?,
                    Kind::RunFinished => {
                        let (state, error) = outcome(name, &event.event.text);
                        let failed_step =
                            self.store.run(&event.event.run_id)?.and_then(|run| run.agents.get(name).map(|agent| agent.error.clone()));
                        let error = if error.is_empty() && state != RunState::Succeeded { failed_step.unwrap_or_default() } else { error };
                        self.store.set_agent_state(&event.event.run_id, name, state, &error, &event.event.outputs)?;
                    }
                    _ => {}
                }
                let _ = self.live.send((index, event));
            }
            if let Some(status) = interrupted {
                return Err(status.into());
            }
            if unacked >= ACK_EVERY {
                self.acknowledge(&dialled, name).await?;
                unacked = 0;
            }
        }
    }

    async fn acknowledge(&self, dialled: &Dialled, name: &str) -> anyhow::Result<()> {
        self.store.flush_events().await?;
        let up_to_seq = self.store.cursor(name)?;
        AgentClient::new(dialled.channel.clone()).ack_events(v1::AckEventsRequest { up_to_seq }).await?;
        Ok(())
    }

    /// A run's events from `from` on; with `follow`, live ones until every agent finished.
    ///
    /// Stored events are read first; live ones come from the broadcast the consumers feed
    /// after persisting. A gap (events persisted before this watch subscribed, or indexes
    /// broadcast out of order by two agents' consumers) or a lag is filled from the store, so
    /// the watcher sees every index once and in order.
    pub fn watch(self: &Arc<Self>, run_id: String, from: u64, follow: bool) -> mpsc::Receiver<Result<v1::AgentRunEvent, tonic::Status>> {
        let (tx, rx) = mpsc::channel(1024);
        let live = self.live.subscribe();
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(status) = this.stream_run(&run_id, from, follow, live, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        rx
    }

    async fn stream_run(
        &self,
        run_id: &str,
        from: u64,
        follow: bool,
        mut live: broadcast::Receiver<(u64, StoredEvent)>,
        tx: &mpsc::Sender<Result<v1::AgentRunEvent, tonic::Status>>,
    ) -> Result<(), tonic::Status> {
        let internal = |err: anyhow::Error| tonic::Status::internal(format!("{err:#}"));
        let mut next = from;
        let catch_up = |from: u64| self.store.run_events(run_id, from).map_err(internal);
        let finished = || self.store.run(run_id).ok().flatten().is_none_or(|run| run.overall() != RunState::Running);
        // A run can end without an event reaching this master (an agent deleted, a start that
        // failed): its record is looked at now and then, whatever else the broadcast carries.
        let mut recheck = tokio::time::interval(Duration::from_secs(1));
        loop {
            for (index, event) in catch_up(next)? {
                next = index + 1;
                if tx.send(Ok(event.into_wire(index))).await.is_err() {
                    return Ok(());
                }
            }
            if !follow || finished() {
                // Events persisted after the last read are picked up by one more pass.
                for (index, event) in catch_up(next)? {
                    if tx.send(Ok(event.into_wire(index))).await.is_err() {
                        return Ok(());
                    }
                }
                return Ok(());
            }
            // Live events, straight from the broadcast while they arrive in order.
            loop {
                let received = tokio::select! {
                    received = live.recv() => received,
                    () = tx.closed() => return Ok(()),
                    _ = recheck.tick() => break,
                };
                match received {
                    Ok((index, event)) if event.event.run_id == run_id => {
                        if index < next {
                            continue;
                        }
                        if index > next {
                            break;
                        }
                        let ends = event.event.ends_run();
                        next = index + 1;
                        if tx.send(Ok(event.into_wire(index))).await.is_err() {
                            return Ok(());
                        }
                        if ends && finished() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
    }
}

/// The state a `RunFinished` event's text names (`succeeded`, `failed`, `cancelled`). Any
/// other text, which no agent sends today, counts as a failure that names it, rather than
/// as the success an unknown string used to fall through to.
/// A failed step as an agent's error in its run: `step NAME: REASON`.
fn step_error(step: &str, reason: &str) -> String {
    format!("step {step}: {reason}")
}

fn outcome(agent: &str, text: &str) -> (RunState, String) {
    match text.parse::<RunState>() {
        Ok(state) if !state.is_active() => (state, String::new()),
        _ => {
            tracing::warn!(%agent, outcome = %text, "an agent reported a run outcome this master does not know");
            (RunState::Failed, format!("the agent reported the outcome {text:?}"))
        }
    }
}

/// The wire summary of a run.
pub fn summary(run: &RunRecord) -> v1::RunSummary {
    v1::RunSummary {
        run_id: run.run_id.clone(),
        pattern: run.pattern.clone(),
        instance: run.instance.clone(),
        created_at_unix: run.created_at,
        agents: run
            .agents
            .iter()
            .map(|(agent, state)| v1::AgentRunState {
                agent: agent.clone(),
                state: state.state.to_string(),
                error: state.error.clone(),
                outputs: state.outputs.iter().cloned().map(v1::RunOutput::from).collect(),
            })
            .collect(),
        state: run.overall().to_string(),
    }
}

/// Why a run did not start on one agent: its state there, the agent's explanation, and whether
/// the agent refused the run as invalid (nothing was created there).
struct StartRefusal {
    state: RunState,
    error: String,
    invalid: bool,
}
