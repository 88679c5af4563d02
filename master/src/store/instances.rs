//! Instances: what each agent's runs built, by agent and instance name
//! (`Namespace::Instances`, key `AGENT/INSTANCE`). A record moves in the transaction that
//! persists its run's `run_started` (last run, running) and `run_finished` (state; outputs
//! when it succeeded), compared with the record as read, so it is never behind the events
//! the master kept, and a crash between the two cannot happen. Secret outputs are stored
//! without their value: the agent alone holds it.

use std::collections::BTreeMap;

use pmesh_proto::event::{Kind, RunOutput};

use super::records::{InstanceRecord, RunRecord, RunState, StoredEvent};
use super::{decode, encode, Namespace, Store, Txn};

/// The key of `instance` on `agent`.
fn key(agent: &str, instance: &str) -> String {
    format!("{agent}/{instance}")
}

impl Store {
    /// Every instance, by agent then name; only `agent`'s when given.
    ///
    /// # Errors
    /// When the database fails or a record does not decode.
    pub fn instances(&self, agent: Option<&str>) -> anyhow::Result<Vec<InstanceRecord>> {
        let records: Vec<InstanceRecord> = self.all()?.into_iter().map(|(_, record)| record).collect();
        Ok(records.into_iter().filter(|record| agent.is_none_or(|agent| record.agent == agent)).collect())
    }

    /// Marks `instance` on `agent` destroyed at `at` (Unix seconds); `false` when there is no
    /// such record.
    ///
    /// # Errors
    /// When the database fails.
    pub fn mark_destroyed(&self, agent: &str, instance: &str, at: i64) -> anyhow::Result<bool> {
        let updated = self.update::<InstanceRecord>(&key(agent, instance), |record| {
            record.destroyed_at = Some(at);
            record.updated_at = at;
        })?;
        self.flush()?;
        Ok(updated.is_some())
    }

    /// Folds the run starts and ends among `kept` (events of `agent`, about to be persisted
    /// by `txn`) into their instances' records, adding the writes and the compares on what
    /// was read to `txn`.
    pub(super) fn fold_instances(&self, agent: &str, kept: &[(u64, StoredEvent)], txn: &mut Txn) -> anyhow::Result<()> {
        let mut changed: BTreeMap<String, (Option<Vec<u8>>, Option<InstanceRecord>)> = BTreeMap::new();
        let mut runs: BTreeMap<String, Option<RunRecord>> = BTreeMap::new();
        for (_, stored) in kept {
            let event = &stored.event;
            if !matches!(event.kind, Kind::RunStarted | Kind::RunFinished) {
                continue;
            }
            if !runs.contains_key(&event.run_id) {
                runs.insert(event.run_id.clone(), self.run(&event.run_id)?);
            }
            // A run this master did not start (or no longer knows) has no instance here.
            let Some(run) = runs.get(&event.run_id).and_then(Option::as_ref) else { continue };
            let key = key(agent, &run.instance);
            if !changed.contains_key(&key) {
                let stored = self.backend.get(Namespace::Instances, key.as_bytes())?;
                let record = stored.as_deref().map(decode).transpose()?;
                changed.insert(key.clone(), (stored, record));
            }
            let (_, record) = changed.get_mut(&key).expect("read above");
            let at = event.at_unix_ms.div_euclid(1000);
            let mut next = record.take().unwrap_or_else(|| InstanceRecord {
                v: 1,
                name: run.instance.clone(),
                agent: agent.to_owned(),
                pattern: run.pattern.clone(),
                last_run: run.run_id.clone(),
                state: RunState::Running,
                outputs: Vec::new(),
                outputs_run: String::new(),
                updated_at: at,
                destroyed_at: None,
            });
            fold(&mut next, run, event.kind, &event.text, &event.outputs, at);
            *record = Some(next);
        }
        for (key, (stored, record)) in changed {
            let Some(record) = record else { continue };
            txn.compare(Namespace::Instances, key.as_bytes(), stored).put(Namespace::Instances, key.as_bytes(), encode(&record)?);
        }
        Ok(())
    }
}

/// One run start or end applied to an instance.
fn fold(record: &mut InstanceRecord, run: &RunRecord, kind: Kind, text: &str, outputs: &[RunOutput], at: i64) {
    record.pattern = run.pattern.clone();
    record.last_run = run.run_id.clone();
    record.updated_at = at;
    if kind == Kind::RunStarted {
        record.state = RunState::Running;
        record.destroyed_at = None;
        return;
    }
    record.state = match text.parse::<RunState>() {
        Ok(state) if !state.is_active() => state,
        _ => RunState::Failed,
    };
    if record.state == RunState::Succeeded {
        record.outputs = outputs.iter().cloned().map(RunOutput::withheld).collect();
        record.outputs_run = run.run_id.clone();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use pmesh_proto::event::RunEvent;

    use super::super::memory::MemoryBackend;
    use super::super::{AgentState, Backend, SledBackend};
    use super::*;

    fn stores() -> Vec<(Option<tempfile::TempDir>, Store)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let sled: Arc<dyn Backend> = Arc::new(SledBackend::open(dir.path()).expect("sled"));
        let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        [(Some(dir), sled), (None, memory)].into_iter().map(|(dir, backend)| (dir, Store::with_backend(backend).expect("store"))).collect()
    }

    fn run(store: &Store, run_id: &str) {
        let agents = BTreeMap::from([("pc-1".to_owned(), AgentState { state: RunState::Pending, error: String::new(), outputs: vec![] })]);
        let record = RunRecord {
            v: 1,
            run_id: run_id.into(),
            pattern: "dns@1.0.0".into(),
            digest: "d".into(),
            instance: "lab-dns".into(),
            created_at: 1,
            agents,
        };
        store.put_run(&record).expect("put run");
    }

    fn event(seq: u64, run_id: &str, kind: Kind, text: &str, outputs: Vec<RunOutput>) -> StoredEvent {
        let event = RunEvent { text: text.into(), outputs, ..RunEvent::new(seq, run_id, 5_000 * seq as i64, kind) };
        StoredEvent { v: 1, agent: "pc-1".into(), event }
    }

    fn outputs(address: &str) -> Vec<RunOutput> {
        vec![
            RunOutput { name: "address".into(), kind: "ip".into(), secret: false, value: Some(address.into()) },
            RunOutput { name: "key".into(), kind: "string".into(), secret: true, value: Some("s3cret-key".into()) },
        ]
    }

    #[test]
    fn an_instance_follows_its_runs_and_keeps_the_last_succeeded_outputs() {
        for (_dir, store) in stores() {
            run(&store, "r1");
            store.persist("pc-1", &[event(1, "r1", Kind::RunStarted, "", vec![])]).expect("persist");
            let started = store.instances(None).expect("instances");
            assert_eq!((started.len(), started[0].state, started[0].last_run.as_str()), (1, RunState::Running, "r1"));
            let batch = [event(2, "r1", Kind::Log, "line", vec![]), event(3, "r1", Kind::RunFinished, "succeeded", outputs("10.0.0.5"))];
            store.persist("pc-1", &batch).expect("persist");
            let record = store.instances(Some("pc-1")).expect("instances").remove(0);
            assert_eq!((record.name.as_str(), record.agent.as_str(), record.pattern.as_str()), ("lab-dns", "pc-1", "dns@1.0.0"));
            assert_eq!((record.state, record.outputs_run.as_str(), record.updated_at), (RunState::Succeeded, "r1", 15));
            assert_eq!(record.outputs[0].value, Some("10.0.0.5".into()));
            assert_eq!((record.outputs[1].secret, &record.outputs[1].value), (true, &None), "the master never stores a secret value");

            // A failed run moves the state, not the outputs.
            run(&store, "r2");
            store
                .persist("pc-1", &[event(4, "r2", Kind::RunStarted, "", vec![]), event(5, "r2", Kind::RunFinished, "failed", vec![])])
                .expect("persist");
            let record = store.instances(None).expect("instances").remove(0);
            assert_eq!((record.state, record.last_run.as_str(), record.outputs_run.as_str()), (RunState::Failed, "r2", "r1"));
            assert_eq!(record.outputs.len(), 2);
            assert!(store.instances(Some("pc-2")).expect("instances").is_empty());

            // A destroy marks it; its next run clears the mark.
            assert!(store.mark_destroyed("pc-1", "lab-dns", 30).expect("mark"));
            assert!(!store.mark_destroyed("pc-1", "no-such", 30).expect("mark"));
            assert_eq!(store.instances(None).expect("instances")[0].destroyed_at, Some(30));
            run(&store, "r3");
            store.persist("pc-1", &[event(6, "r3", Kind::RunStarted, "", vec![])]).expect("persist");
            assert_eq!(store.instances(None).expect("instances")[0].destroyed_at, None);

            // Events of a run the master does not know leave no instance; removing the agent
            // removes its instances.
            store.persist("pc-1", &[event(7, "elsewhere", Kind::RunStarted, "", vec![])]).expect("persist");
            assert_eq!(store.instances(None).expect("instances").len(), 1);
            store.remove_agent("pc-1").expect("remove");
            assert!(store.instances(None).expect("instances").is_empty());
        }
    }

    /// Records written by the v1 layout must keep decoding; this is that layout, frozen.
    #[test]
    fn reads_instance_record_v1() {
        let v1 = r#"{"v":1,"name":"lab-dns","agent":"pc-1","pattern":"dns@2.0.0","last_run":"r2","state":"failed",
            "outputs":[{"name":"address","type":"ip","value":"10.0.0.5"},{"name":"key","type":"string","secret":true}],
            "outputs_run":"r1","updated_at":17}"#;
        let record: InstanceRecord = decode(v1.as_bytes()).expect("decodes");
        assert_eq!((record.state, record.outputs_run.as_str(), record.updated_at), (RunState::Failed, "r1", 17));
        assert_eq!(record.outputs[1], RunOutput { name: "key".into(), kind: "string".into(), secret: true, value: None });
        let minimal = r#"{"v":1,"name":"n","agent":"a","pattern":"p@1.0.0","last_run":"r","state":"running","updated_at":1}"#;
        let minimal = decode::<InstanceRecord>(minimal.as_bytes()).expect("decodes");
        assert!(minimal.outputs.is_empty() && minimal.destroyed_at.is_none());
    }
}
