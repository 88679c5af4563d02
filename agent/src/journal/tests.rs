//! The journal's unit tests: numbering, trims, run records and their progress, old layouts.

use super::*;
use pmesh_proto::event::Kind;
use std::time::SystemTime;

/// Opens the journal in `dir` once sled has let go of it: a dropped database's flusher
/// thread can hold the directory's lock for a moment (until its next tick).
pub(super) fn reopen(dir: &Path) -> Journal {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Journal::open(dir) {
            Ok(journal) => return journal,
            Err(err) if std::time::Instant::now() > deadline => panic!("reopening the journal: {err:#}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

fn event(line: &str) -> Event {
    Event { at: SystemTime::now(), run_id: "r1".into(), kind: EventKind::Log { step: "s".into(), line: line.into() } }
}

#[tokio::test]
async fn sequence_numbers_are_gap_free_across_reopen_and_trim() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.append(&[event("a"), event("b")]).await.unwrap(), 2);
        assert_eq!(journal.append(&[event("c")]).await.unwrap(), 3);
        let read: Vec<u64> = journal.read_from(2, 10).unwrap().iter().map(|record| record.seq).collect();
        assert_eq!(read, [2, 3]);
        assert_eq!(journal.trim(3).unwrap(), 4, "everything acknowledged");
    }
    let journal = reopen(dir.path());
    assert_eq!(journal.append(&[event("d")]).await.unwrap(), 4, "numbering continues after a trim and a restart");
    assert_eq!(journal.read_from(0, 10).unwrap()[0].text, "d");
}

#[test]
fn a_run_id_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let run = run_record("r1");
    assert!(journal.insert_run(&run).unwrap());
    assert!(!journal.insert_run(&run).unwrap());
    journal.set_run_state("r1", RunState::Succeeded).unwrap();
    assert_eq!(journal.run("r1").unwrap().unwrap().state, RunState::Succeeded);
}

#[tokio::test]
async fn reads_resume_inside_a_segment_and_trims_keep_a_partly_acknowledged_one() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    journal.append(&[event("a"), event("b"), event("c")]).await.unwrap();
    journal.append(&[event("d"), event("e")]).await.unwrap();
    let seqs = |from, limit| journal.read_from(from, limit).unwrap().iter().map(|record| record.seq).collect::<Vec<_>>();
    assert_eq!(seqs(2, 100), [2, 3, 4, 5]);
    assert_eq!(seqs(2, 1), [2, 3], "whole segments, from the one holding `from`");
    assert_eq!(seqs(6, 100), Vec::<u64>::new());
    assert_eq!(journal.trim(2).unwrap(), 1, "a segment with unacknowledged events stays whole");
    assert_eq!(journal.trim(3).unwrap(), 4);
    assert_eq!(seqs(4, 100), [4, 5]);
}

/// A journal written one record per key (before segments) is read after an upgrade, and
/// numbering continues after it.
#[tokio::test]
async fn a_per_event_journal_is_migrated_into_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let legacy = db.open_tree("events").unwrap();
        for seq in [4u64, 5] {
            let v1 = format!(r#"{{"v":1,"seq":{seq},"run_id":"r1","at_unix_ms":1,"kind":"log","step":"s","text":"line-{seq}"}}"#);
            legacy.insert(seq.to_be_bytes(), v1.as_bytes()).unwrap();
        }
        db.flush().unwrap();
    }
    let journal = reopen(dir.path());
    let texts: Vec<String> = journal.read_from(0, 10).unwrap().into_iter().map(|record| record.text).collect();
    assert_eq!(texts, ["line-4", "line-5"]);
    assert_eq!(journal.append(&[event("next")]).await.unwrap(), 6);
}

/// Journal records written by schema v1 keep decoding.
#[test]
fn reads_v1_records() {
    let v1 = r#"{"v":1,"seq":7,"run_id":"r1","at_unix_ms":1,"kind":"step_failed","step":"named",
        "text":"exited with code 1","percent":0.0,"exit_code":1,"tail":["x"],"attempt":1,
        "instance":"","pattern":""}"#;
    let record: RunEvent = serde_json::from_str(v1).unwrap();
    assert_eq!(record.kind, Kind::StepFailed);
    assert_eq!(record.exit_code, Some(1));
}

fn run_record(run_id: &str) -> RunRecord {
    RunRecord {
        v: 1,
        run_id: run_id.into(),
        instance: "i".into(),
        bundle_digest: "d".into(),
        started_at_unix_ms: 0,
        state: RunState::Running,
        values_json: "{}".into(),
        steps: Default::default(),
        announced: false,
        images: Default::default(),
        outputs: vec![],
    }
}

fn at(run_id: &str, kind: EventKind) -> Event {
    Event { at: SystemTime::now(), run_id: run_id.into(), kind }
}

/// The step progress a resume relies on moves with the events: what the record says was
/// journalled is exactly what was.
#[tokio::test]
async fn step_progress_is_written_with_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    journal.insert_run(&run_record("r1")).unwrap();
    let log = |line: &str| at("r1", EventKind::Log { step: "s".into(), line: line.into() });
    journal.append(&[at("r1", EventKind::StepStarted { step: "s".into(), attempt: 1 }), log("a"), log("b")]).await.unwrap();
    journal.append(&[log("c")]).await.unwrap();
    let step = journal.run("r1").unwrap().unwrap().steps["s"].clone();
    assert_eq!(step, StepProgress { state: StepState::Running, lines: 3, attempt: 1 });
    assert_eq!(journal.read_from(0, 100).unwrap().len(), 4);
}

/// A resumed run's second "run started", "image ready" and "step started" (same attempt)
/// are not journalled again; a new attempt is.
#[tokio::test]
async fn a_resumed_run_does_not_announce_twice() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    journal.insert_run(&run_record("r1")).unwrap();
    let announcements = || {
        [
            at("r1", EventKind::RunStarted { instance: "i".into(), pattern: "p@1".into(), n_steps: 1 }),
            at("r1", EventKind::ImageReady { reference: "img".into(), action: crate::executor::events::ImageAction::Present }),
            at("r1", EventKind::StepStarted { step: "s".into(), attempt: 1 }),
        ]
    };
    assert_eq!(journal.append(&announcements()).await.unwrap(), 3);
    assert_eq!(journal.append(&announcements()).await.unwrap(), 3, "nothing new to journal");
    let retry = at("r1", EventKind::StepStarted { step: "s".into(), attempt: 2 });
    assert_eq!(journal.append(&[retry]).await.unwrap(), 4);
    let kinds: Vec<Kind> = journal.read_from(0, 100).unwrap().iter().map(|record| record.kind).collect();
    assert_eq!(kinds, [Kind::RunStarted, Kind::ImageReady, Kind::StepStarted, Kind::StepStarted]);
}

/// A run resumed after its first step ended converges that step again: its second start
/// and its "unchanged" are not journalled, while a step that never ended still is.
/// (Found by the chaos suite: an agent SIGKILLed during a run's last step re-announced
/// every earlier step.)
#[tokio::test]
async fn a_resumed_run_does_not_announce_an_ended_step_again() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    journal.insert_run(&run_record("r1")).unwrap();
    let started = |step: &str| at("r1", EventKind::StepStarted { step: step.into(), attempt: 1 });
    let unchanged = |step: &str| at("r1", EventKind::StepUnchanged { step: step.into(), container_id: None });
    let succeeded = at("r1", EventKind::StepSucceeded { step: "a".into(), container_id: None });
    assert_eq!(journal.append(&[started("a"), succeeded, started("b")]).await.unwrap(), 3);
    assert_eq!(journal.append(&[started("a"), unchanged("a"), started("b")]).await.unwrap(), 3, "nothing new to journal");
    assert_eq!(journal.append(&[started("c"), unchanged("c")]).await.unwrap(), 5, "a step that had not ended is journalled");
}

/// Run records written before the states were typed keep decoding, an unstarted step
/// (`""`) included.
#[test]
fn reads_schema_1_run_records() {
    let v1 = r#"{"v":1,"run_id":"r1","instance":"i","bundle_digest":"d","started_at_unix_ms":0,"state":"running",
        "values_json":"{}","steps":{"a":{"state":"running","lines":4},"b":{"state":"","lines":0},"c":{"state":"done","lines":1}}}"#;
    let run: RunRecord = serde_json::from_str(v1).unwrap();
    assert_eq!(run.state, RunState::Running);
    let states: Vec<StepState> = run.steps.values().map(|step| step.state).collect();
    assert_eq!(states, [StepState::Running, StepState::Unstarted, StepState::Done]);
    assert!(!run.announced);
}

#[test]
fn a_newer_journal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("meta").unwrap().insert("schema", &(SCHEMA_VERSION + 1).to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let err = loop {
        match Journal::open(dir.path()) {
            Err(err) if format!("{err:#}").contains("schema version") => break err,
            Ok(_) => panic!("a newer journal opened"),
            Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(err) => panic!("{err:#}"),
        }
    };
    assert!(format!("{err:#}").contains("newer than this agent's"), "{err:#}");
}

/// A full disk for real (a small tmpfs, mounted as root as the tests run here): the journal
/// refuses a batch before sled meets the full disk (refused, not accepted: the caller keeps
/// it), reports the condition, and once space returns takes batches again; every event is read
/// back exactly once, numbered without a gap, from memory and after a reopen.
#[tokio::test]
async fn a_full_disk_refuses_batches_before_sled_fails_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mount = root.path().join("disk");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"]).arg(&mount).status().unwrap();
    assert!(mounted.success(), "this test mounts a tmpfs: run it as root");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let dir = mount.join("journal");
    let journal = Journal::open(&dir).unwrap();
    let mut written = 0usize;
    let line = "x".repeat(2000);
    let batch = |from: usize| (from..from + 50).map(|n| event(&format!("{n} {line}"))).collect::<Vec<_>>();
    let refused = loop {
        match journal.append(&batch(written)).await {
            Ok(_) => written += 50,
            Err(err) => break err,
        }
        assert!(written < 100_000, "8 MiB never filled");
    };
    assert!(!refused.accepted && pmesh_rt::disk::is_full(&refused.error), "{refused:#}");
    assert!(written > 0);
    assert_eq!(journal.problem(), Some(format!("journal: disk full at {}", dir.display())));
    assert_eq!(journal.read_from(0, usize::MAX).unwrap().len(), written, "reads go on");

    // Space returns: the file system grows (as removing a file would free it).
    let grown = std::process::Command::new("mount").args(["-o", "remount,size=32m"]).arg(&mount).status().unwrap();
    assert!(grown.success());
    journal.append(&batch(written)).await.expect("writes again");
    written += 50;
    assert_eq!(journal.problem(), None);
    let read = journal.read_from(0, usize::MAX).unwrap();
    let texts: Vec<usize> = read.iter().map(|record| record.text.split(' ').next().unwrap().parse().unwrap()).collect();
    assert_eq!(texts, (0..written).collect::<Vec<_>>(), "every event once, in order");
    let seqs: Vec<u64> = read.iter().map(|record| record.seq).collect();
    assert_eq!(seqs, (1..=written as u64).collect::<Vec<_>>(), "gap-free numbering");
    drop(journal);
    let reopened = reopen(&dir);
    assert_eq!(reopened.read_from(0, usize::MAX).unwrap().len(), written, "and on disk");
}

/// The journal's id is made once and kept across reopenings; another journal has another.
#[test]
fn a_journal_keeps_its_id_and_another_has_another() {
    let dir = tempfile::tempdir().unwrap();
    let first = Journal::open(dir.path()).unwrap().id().to_owned();
    assert_eq!(first.len(), 32, "{first}");
    assert_eq!(Journal::open(dir.path()).unwrap().id(), first, "kept across a reopen");
    let other = tempfile::tempdir().unwrap();
    assert_ne!(Journal::open(other.path()).unwrap().id(), first);
}
