//! The store's invariants, written against the [`Backend`] interface and run on every backend
//! (sled, and the in-memory one; an etcd backend adds one line to `for_each_backend!`), then
//! the frozen v1 record layouts and the sled-specific migration of older databases.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pmesh_proto::event::{Kind, RunEvent};

use super::memory::MemoryBackend;
use super::runs::event_key;
use super::*;

/// A backend to test, and what must outlive it.
struct Fixture {
    _dir: Option<tempfile::TempDir>,
    backend: Arc<dyn Backend>,
}

impl Fixture {
    fn store(&self) -> Store {
        Store::with_backend(self.backend.clone()).expect("open the store")
    }
}

fn on_sled() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Arc::new(SledBackend::open(dir.path()).expect("sled"));
    Fixture { _dir: Some(dir), backend }
}

fn in_memory() -> Fixture {
    Fixture { _dir: None, backend: Arc::new(MemoryBackend::default()) }
}

macro_rules! for_each_backend {
    ($($test:ident),* $(,)?) => {
        mod on_sled {
            $(#[test] fn $test() { super::$test(super::on_sled()) })*
        }
        mod in_memory {
            $(#[test] fn $test() { super::$test(super::in_memory()) })*
        }
    };
}

for_each_backend!(
    a_token_is_used_once,
    a_token_is_used_once_under_a_race,
    pattern_versions_are_immutable,
    a_failed_compare_writes_nothing,
    events_are_kept_once_in_persist_order,
    events_of_one_run_from_racing_agents_are_numbered_once,
    a_newer_schema_is_refused,
    revocation_by_identity_and_unknown_serials,
    an_update_does_not_bring_a_removed_agent_back,
    a_removed_agent_leaves_no_cursor,
    a_cursor_into_another_journal_starts_again,
);

fn token(expires_at: i64) -> TokenRecord {
    TokenRecord { v: 1, created_at: 0, expires_at, name: None, labels: BTreeMap::new(), force: false, used_at: None, used_by: None }
}

fn a_token_is_used_once(fixture: Fixture) {
    let store = fixture.store();
    store.put_token("a", &token(100)).unwrap();
    store.put_token("b", &token(10)).unwrap();
    assert!(store.consume_token("a", "pc-1", 50).is_ok());
    let reuse = store.consume_token("a", "pc-2", 51).unwrap_err();
    assert_eq!(reuse.downcast_ref(), Some(&TokenError::Used { by: "pc-1".into() }));
    let expired = store.consume_token("b", "pc-3", 50).unwrap_err();
    assert_eq!(expired.downcast_ref(), Some(&TokenError::Expired));
    let unknown = store.consume_token("c", "pc-3", 50).unwrap_err();
    assert_eq!(unknown.downcast_ref(), Some(&TokenError::Unknown));
    assert_eq!(store.purge_tokens(11).unwrap(), 1, "the token expired at 10 is purged");
    assert!(store.token("b").unwrap().is_none());
}

/// Joins racing on one token (threads here; masters with etcd): exactly one wins.
fn a_token_is_used_once_under_a_race(fixture: Fixture) {
    let store = fixture.store();
    store.put_token("t", &token(100)).unwrap();
    let winners: Vec<String> = std::thread::scope(|scope| {
        let joins: Vec<_> = (0..8)
            .map(|n_agent| {
                let store = store.clone();
                scope.spawn(move || store.consume_token("t", &format!("pc-{n_agent}"), 1).ok().and_then(|record| record.used_by))
            })
            .collect();
        joins.into_iter().filter_map(|join| join.join().expect("a join thread")).collect()
    });
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(store.token("t").unwrap().unwrap().used_by.as_ref(), winners.first());
}

fn pattern(version: &str, digest: &str) -> PatternRecord {
    PatternRecord {
        v: 1,
        name: "dns".into(),
        version: version.into(),
        digest: digest.into(),
        description: String::new(),
        category: "shared-service".into(),
        pushed_at: 0,
    }
}

fn pattern_versions_are_immutable(fixture: Fixture) {
    let store = fixture.store();
    assert!(store.put_pattern(&pattern("1.0.0", "d1"), b"a", b"s").unwrap());
    assert!(!store.put_pattern(&pattern("1.0.0", "d1"), b"a", b"s").unwrap());
    assert!(store.put_pattern(&pattern("1.0.0", "d2"), b"b", b"s").is_err());
    assert_eq!(store.bundle("d2").unwrap(), None, "a refused version stores no bundle");
    assert_eq!(store.find_pattern("dns@1.0.0").unwrap().unwrap().digest, "d1");
    assert!(store.put_pattern(&pattern("1.10.0", "d3"), b"c", b"s").unwrap());
    assert!(store.put_pattern(&pattern("1.9.0", "d4"), b"d", b"s").unwrap());
    assert_eq!(store.find_pattern("dns").unwrap().unwrap().version, "1.10.0");
    assert_eq!(store.find_pattern("dns@1.9.0").unwrap().unwrap().digest, "d4");
    assert_eq!(store.bundle("d4").unwrap(), Some((b"d".to_vec(), b"s".to_vec())));
}

/// What makes events and the cursor move together: a transaction whose compare fails writes
/// nothing, in any namespace.
fn a_failed_compare_writes_nothing(fixture: Fixture) {
    let backend = fixture.backend;
    backend.put(Namespace::Cursors, b"a", &1u64.to_be_bytes()).unwrap();
    let mut txn = Txn::default();
    txn.compare(Namespace::RunCounters, "r1", None)
        .compare(Namespace::Cursors, "a", Some(0u64.to_be_bytes().to_vec()))
        .put(Namespace::RunEventSegments, event_key("r1", 0), "segment")
        .put(Namespace::Cursors, "a", 2u64.to_be_bytes());
    assert!(!backend.commit(&txn).unwrap());
    assert_eq!(backend.get(Namespace::RunEventSegments, &event_key("r1", 0)).unwrap(), None);
    assert_eq!(backend.get(Namespace::Cursors, b"a").unwrap(), Some(1u64.to_be_bytes().to_vec()));
    txn.compares[1].expected = Some(1u64.to_be_bytes().to_vec());
    assert!(backend.commit(&txn).unwrap());
    assert_eq!(backend.get(Namespace::RunEventSegments, &event_key("r1", 0)).unwrap(), Some(b"segment".to_vec()));
    assert_eq!(backend.get(Namespace::Cursors, b"a").unwrap(), Some(2u64.to_be_bytes().to_vec()));
}

fn event(agent: &str, seq: u64) -> StoredEvent {
    let event = RunEvent { step: "s".into(), text: format!("{agent}-{seq}"), ..RunEvent::new(seq, "r1", 0, Kind::Log) };
    StoredEvent { v: 1, agent: agent.into(), event }
}

fn texts(kept: Vec<(u64, StoredEvent)>) -> Vec<(u64, String)> {
    kept.into_iter().map(|(index, event)| (index, event.event.text)).collect()
}

fn events_are_kept_once_in_persist_order(fixture: Fixture) {
    let store = fixture.store();
    assert_eq!(texts(store.persist("a", &[event("a", 1)]).unwrap()), [(0, "a-1".to_owned())]);
    assert_eq!(texts(store.persist("b", &[event("b", 1)]).unwrap()), [(1, "b-1".to_owned())]);
    assert_eq!(
        texts(store.persist("a", &[event("a", 1), event("a", 2), event("a", 3)]).unwrap()),
        [(2, "a-2".to_owned()), (3, "a-3".to_owned())],
        "a replayed event is not stored twice"
    );
    assert!(store.persist("a", &[event("a", 2)]).unwrap().is_empty(), "a batch the cursor is past keeps nothing");
    assert_eq!(store.cursor("a").unwrap(), 3);
    let kept: Vec<String> = store.run_events("r1", 1).unwrap().into_iter().map(|(_, event)| event.event.text).collect();
    assert_eq!(kept, ["b-1", "a-2", "a-3"]);
    let indexes: Vec<u64> = store.run_events("r1", 3).unwrap().into_iter().map(|(index, _)| index).collect();
    assert_eq!(indexes, [3], "a read from inside a segment starts at its index");
}

/// Consumers of several agents persist events of one run at once: every event gets one
/// index, the indexes have no gap, and each agent's cursor ends at its last event.
fn events_of_one_run_from_racing_agents_are_numbered_once(fixture: Fixture) {
    let store = fixture.store();
    let (n_agents, n_batches, batch_len) = (4u64, 25u64, 3u64);
    std::thread::scope(|scope| {
        for agent_idx in 0..n_agents {
            let store = store.clone();
            scope.spawn(move || {
                let agent = format!("pc-{agent_idx}");
                for batch_idx in 0..n_batches {
                    let batch: Vec<StoredEvent> = (1..=batch_len).map(|offset| event(&agent, batch_idx * batch_len + offset)).collect();
                    assert_eq!(store.persist(&agent, &batch).expect("persist").len() as u64, batch_len);
                }
            });
        }
    });
    let stored = store.run_events("r1", 0).unwrap();
    let total = n_agents * n_batches * batch_len;
    assert_eq!(stored.iter().map(|(index, _)| *index).collect::<Vec<_>>(), (0..total).collect::<Vec<_>>());
    let distinct: BTreeSet<&str> = stored.iter().map(|(_, event)| event.event.text.as_str()).collect();
    assert_eq!(distinct.len() as u64, total, "no event is stored twice");
    for agent_idx in 0..n_agents {
        assert_eq!(store.cursor(&format!("pc-{agent_idx}")).unwrap(), n_batches * batch_len);
    }
}

fn a_newer_schema_is_refused(fixture: Fixture) {
    fixture.store();
    assert_eq!(fixture.backend.get(Namespace::Meta, b"schema_version").unwrap(), Some(SCHEMA_VERSION.to_string().into_bytes()));
    fixture.backend.put(Namespace::Meta, b"schema_version", b"99").unwrap();
    let err = Store::with_backend(fixture.backend.clone()).err().expect("refused");
    assert!(err.to_string().contains("newer"), "{err}");
}

fn revocation_by_identity_and_unknown_serials(fixture: Fixture) {
    let store = fixture.store();
    store.record_issued("01", "pmesh://admin/bob", 1000).unwrap();
    store.record_issued("02", "pmesh://admin/bob", 1000).unwrap();
    store.record_issued("03", "pmesh://admin/ann", 1000).unwrap();
    assert!(!store.is_revoked("01").unwrap());
    assert!(store.is_revoked("ff").unwrap(), "unknown serials are refused");
    let mut revoked = store.revoke_identity("pmesh://admin/bob", 10).unwrap();
    revoked.sort();
    assert_eq!(revoked, ["01", "02"]);
    assert!(store.is_revoked("02").unwrap());
    assert!(!store.is_revoked("03").unwrap());
    assert_eq!(store.issued_to("pmesh://admin/bob").unwrap()[0].1.revoked_at, Some(10));
}

fn agent(name: &str) -> AgentRecord {
    AgentRecord {
        v: 1,
        name: name.into(),
        address: "127.0.0.1:1".into(),
        labels: BTreeMap::new(),
        enrolled_at: 0,
        cert_serial: "01".into(),
        cert_not_after: 0,
        health: Health::Unknown,
        last_seen: None,
        last_error: None,
        facts: None,
    }
}

fn an_update_does_not_bring_a_removed_agent_back(fixture: Fixture) {
    let store = fixture.store();
    store.put_agent(&agent("pc-1")).unwrap();
    store.update_agent("pc-1", |record| record.health = Health::Up).unwrap();
    assert_eq!(store.agent("pc-1").unwrap().unwrap().health, Health::Up);
    assert_eq!(store.remove_agent("pc-1").unwrap().map(|record| record.name), Some("pc-1".to_owned()));
    store.update_agent("pc-1", |record| record.health = Health::Down).unwrap();
    assert!(store.agents().unwrap().is_empty());
}

/// An agent removed and enrolled again starts a new journal at 1: nothing of it may be
/// skipped as a replay of the old one.
fn a_removed_agent_leaves_no_cursor(fixture: Fixture) {
    let store = fixture.store();
    store.put_agent(&agent("pc-1")).unwrap();
    store.persist("pc-1", &[event("pc-1", 1), event("pc-1", 2)]).unwrap();
    assert_eq!(store.cursor("pc-1").unwrap(), 2);
    store.remove_agent("pc-1").unwrap();
    assert_eq!(store.cursor("pc-1").unwrap(), 0);
    store.put_agent(&agent("pc-1")).unwrap();
    assert_eq!(store.persist("pc-1", &[event("pc-1", 1)]).unwrap().len(), 1, "the new journal's first event is kept");
}

/// An old cursor adopts the first journal id it is given; the same id keeps it, another one
/// (the host installed again) starts it again, and events persisted after that keep the id.
fn a_cursor_into_another_journal_starts_again(fixture: Fixture) {
    let store = fixture.store();
    store.persist("pc-1", &[event("pc-1", 1), event("pc-1", 2), event("pc-1", 3)]).unwrap();
    assert_eq!(store.follow_journal("pc-1", "aaaa").unwrap(), 3, "adopted, not reset");
    assert_eq!(store.follow_journal("pc-1", "aaaa").unwrap(), 3);
    store.persist("pc-1", &[event("pc-1", 4)]).unwrap();
    assert_eq!(store.follow_journal("pc-1", "aaaa").unwrap(), 4, "persisting keeps the journal's id");
    assert_eq!(store.follow_journal("pc-1", "bbbb").unwrap(), 0, "another journal starts from its start");
    assert_eq!(store.persist("pc-1", &[event("pc-1", 1)]).unwrap().len(), 1, "the new journal's first event is kept");
    assert_eq!(store.cursor("pc-1").unwrap(), 1);
    assert_eq!(store.follow_journal("pc-1", "bbbb").unwrap(), 1);
}

/// Records written by schema v1 must keep decoding; this is the v1 layout, frozen.
#[test]
fn reads_schema_v1_records() {
    let agent = r#"{"v":1,"name":"pc-1","address":"10.0.0.5:7444","labels":{"site":"lab"},
        "enrolled_at":1,"cert_serial":"0a","cert_not_after":2,"health":"up","last_seen":3,
        "last_error":null,"facts":{"hostname":"pc-1","os_id":"photon","os_version":"5.0",
        "kernel":"6.1","arch":"x86_64","cpus":2,"memory_bytes":1,"disk_free_bytes":1,
        "data_dir":"/var/lib/pmesh-agent","docker_reachable":true,"docker_version":"24.0.9",
        "docker_error":"","agent_version":"0.1.0"}}"#;
    let record: AgentRecord = decode(agent.as_bytes()).unwrap();
    assert_eq!(record.health, Health::Up);
    assert_eq!(record.facts.unwrap().os_id, "photon");
    let token = r#"{"v":1,"created_at":1,"expires_at":2,"name":null,"labels":{},"force":false,
        "used_at":null,"used_by":null}"#;
    assert!(decode::<TokenRecord>(token.as_bytes()).is_ok());
    let issued = r#"{"v":1,"identity":"pmesh://agent/pc-1","not_after":2,"revoked_at":null}"#;
    assert!(decode::<IssuedRecord>(issued.as_bytes()).is_ok());
}

/// A run written with the states as strings reads as the enum, and writes the same strings.
#[test]
fn reads_run_record_v1() {
    let v1 = r#"{"v":1,"run_id":"r1","pattern":"dns@1.0.0","digest":"d","instance":"dns","created_at":1,
        "agents":{"pc-1":{"state":"succeeded","error":""},"pc-2":{"state":"unreachable","error":"refused"},
        "pc-3":{"state":"pending"}}}"#;
    let run: RunRecord = decode(v1.as_bytes()).unwrap();
    assert_eq!(run.agents["pc-2"], AgentState { state: RunState::Unreachable, error: "refused".into(), outputs: vec![] });
    assert_eq!(run.agents["pc-3"].state, RunState::Pending);
    assert_eq!(run.overall(), RunState::Running);
    let written = String::from_utf8(encode(&run).unwrap()).unwrap();
    assert!(written.contains(r#""pc-1":{"state":"succeeded","error":""}"#), "{written}");
}

#[test]
fn a_run_is_running_until_every_agent_finished_then_its_worst_outcome() {
    let check = |states: &[RunState], expected: RunState| {
        let agents = states
            .iter()
            .enumerate()
            .map(|(agent_idx, state)| (format!("pc-{agent_idx}"), AgentState { state: *state, error: String::new(), outputs: vec![] }))
            .collect();
        let run = RunRecord {
            v: 1,
            run_id: "r".into(),
            pattern: String::new(),
            digest: String::new(),
            instance: String::new(),
            created_at: 0,
            agents,
        };
        assert_eq!(run.overall(), expected, "{states:?}");
    };
    use RunState::*;
    check(&[Succeeded, Pending], Running);
    check(&[Failed, Running], Running);
    check(&[Succeeded, Cancelled, Failed, Unreachable], Unreachable);
    check(&[Succeeded, Cancelled, Failed], Failed);
    check(&[Succeeded, Cancelled], Cancelled);
    check(&[Succeeded, Succeeded], Succeeded);
    for state in [Pending, Running, Succeeded, Failed, Cancelled, Unreachable] {
        assert_eq!(state.as_str().parse::<RunState>(), Ok(state));
        assert_eq!(serde_json::to_string(&state).unwrap(), format!("\"{state}\""));
    }
    assert_eq!("timed out".parse::<RunState>(), Err(UnknownRunState("timed out".into())));
}

/// Records written by the v1 layout must keep decoding; this is that layout, frozen.
#[test]
fn reads_artifact_record_v1() {
    let v1 = r#"{"v":1,"sha256":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "size":11811160064,"names":["vcsa-ova","vcsa-8-0-3"],"added_at":1700000000}"#;
    let record: ArtifactRecord = decode(v1.as_bytes()).expect("decodes");
    assert_eq!(record.size, 11_811_160_064);
    assert_eq!(record.names.iter().map(String::as_str).collect::<Vec<_>>(), ["vcsa-8-0-3", "vcsa-ova"]);
    assert_eq!(record.added_at, 1_700_000_000);
}

/// A database as sled wrote it before the store had a backend opens, and a newer one is
/// refused (the raw layout: tree `meta`, key `schema_version`).
#[test]
fn refuses_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("meta").unwrap().insert("schema_version", "99").unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("newer"), "{err}");
}

/// A store written one event per key (before segments) reads the same after an upgrade,
/// and its runs' numbering continues.
#[test]
fn per_event_records_are_migrated_into_segments() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let legacy = db.open_tree("run_events").unwrap();
        let counters = db.open_tree("run_counters").unwrap();
        for (index, seq) in [(0u64, 1u64), (1, 2)] {
            legacy.insert(event_key("r1", index), serde_json::to_vec(&event("a", seq)).unwrap()).unwrap();
        }
        counters.insert("r1", &2u64.to_be_bytes()).unwrap();
        db.open_tree("cursors").unwrap().insert("a", &2u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(texts(store.run_events("r1", 0).unwrap()), [(0, "a-1".to_owned()), (1, "a-2".to_owned())]);
    assert_eq!(store.persist("a", &[event("a", 3)]).unwrap()[0].0, 2);
    drop(store);
    let db = sled::open(dir.path()).unwrap();
    assert!(db.open_tree("run_events").unwrap().is_empty());
}

/// A database written by the master before the store had a backend (raw sled trees, keys and
/// JSON as they were) reads the same through the store: the layout did not change.
#[test]
fn a_database_in_the_previous_layout_opens_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = r#"{"v":1,"sha256":"ab","size":3,"names":["tool"],"added_at":5}"#;
    {
        let db = sled::open(dir.path()).unwrap();
        let tree = |name: &str| db.open_tree(name).unwrap();
        tree("meta").insert("schema_version", "1").unwrap();
        tree("agents").insert("pc-1", serde_json::to_vec(&agent("pc-1")).unwrap()).unwrap();
        tree("tokens").insert("hash", serde_json::to_vec(&token(100)).unwrap()).unwrap();
        tree("certs").insert("0a", r#"{"v":1,"identity":"pmesh://agent/pc-1","not_after":2000,"revoked_at":null}"#).unwrap();
        tree("patterns").insert("dns@1.0.0", serde_json::to_vec(&pattern("1.0.0", "d1")).unwrap()).unwrap();
        tree("bundle_archives").insert("d1", "archive").unwrap();
        tree("bundle_signatures").insert("d1", "signature").unwrap();
        let run = r#"{"v":1,"run_id":"r1","pattern":"dns@1.0.0","digest":"d1","instance":"dns","created_at":1,
            "agents":{"pc-1":{"state":"running","error":""}}}"#;
        tree("runs").insert("r1", run).unwrap();
        let segment = Segment { v: 1, first: 0, events: vec![event("pc-1", 1), event("pc-1", 2)] };
        tree("run_event_segments").insert(event_key("r1", 1), serde_json::to_vec(&segment).unwrap()).unwrap();
        tree("run_counters").insert("r1", &2u64.to_be_bytes()).unwrap();
        tree("cursors").insert("pc-1", &2u64.to_be_bytes()).unwrap();
        tree("artifacts").insert("ab", artifact).unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.agent("pc-1").unwrap(), Some(agent("pc-1")));
    assert_eq!(store.token("hash").unwrap(), Some(token(100)));
    assert!(!store.is_revoked("0a").unwrap());
    assert_eq!(store.find_pattern("dns").unwrap(), Some(pattern("1.0.0", "d1")));
    assert_eq!(store.bundle("d1").unwrap(), Some((b"archive".to_vec(), b"signature".to_vec())));
    assert_eq!(store.run("r1").unwrap().unwrap().agents["pc-1"].state, RunState::Running);
    assert_eq!(texts(store.run_events("r1", 1).unwrap()), [(1, "pc-1-2".to_owned())]);
    assert_eq!(store.cursor("pc-1").unwrap(), 2);
    assert_eq!(store.artifacts().unwrap(), [decode::<ArtifactRecord>(artifact.as_bytes()).unwrap()]);
    assert_eq!(texts(store.persist("pc-1", &[event("pc-1", 3)]).unwrap()), [(2, "pc-1-3".to_owned())], "numbering continues");
}
