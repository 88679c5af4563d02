//! Reloading a service in place: a change of only the files of its `dir` mounts runs its
//! reload command in the running container instead of replacing it, once per change.

use std::path::Path;

use super::*;
use crate::executor::contract::OwnerLabels;
use crate::executor::fake::Behaviour;
use crate::executor::plan::Reload;
use crate::executor::preview::preview;

/// The service `named`, whose reloadable files have `digest`, recording in `dir`.
fn reloadable(dir: &Path, digest: &str, command: &str) -> Plan {
    let mut spec = spec(command);
    spec.reload = Some(Reload {
        command: vec!["rndc".into(), "reload".into()],
        inputs: BTreeMap::from([("dir:conf/zones.txt".to_owned(), digest.to_owned())]),
        record: dir.join("reloaded/named"),
    });
    plan(vec![step("named", &[], Action::Service(spec))])
}

fn execs(driver: &FakeDriver) -> Vec<(String, Vec<String>)> {
    driver
        .calls()
        .into_iter()
        .filter_map(|call| if let Call::Exec { id, command, .. } = call { Some((id, command)) } else { None })
        .collect()
}

async fn planned_action(driver: &Arc<FakeDriver>, plan: &Plan) -> &'static str {
    preview(&**driver, &*FakeArtifacts::new(), plan).await.expect("the fake answers")[0].action
}

#[tokio::test(start_paused = true)]
async fn a_new_service_has_its_files_loaded_and_is_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = FakeDriver::new();
    driver.script("named", [Behaviour::never_exits()]);
    let (outcome, events) = apply(&driver, reloadable(dir.path(), "a", "named")).await;
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(of_step(&events, "named"), [started("named", 1), succeeded("named", Some("c1"))]);
    assert_eq!(planned_action(&driver, &reloadable(dir.path(), "a", "named")).await, "unchanged");
    let (_, events) = apply(&driver, reloadable(dir.path(), "a", "named")).await;
    assert_eq!(of_step(&events, "named"), [started("named", 1), unchanged("named", "c1")]);
    assert!(execs(&driver).is_empty(), "no reload without a change");
}

#[tokio::test(start_paused = true)]
async fn changed_files_reload_the_running_service_once_and_other_changes_replace_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = FakeDriver::new();
    let reload = |digest: &str| reloadable(dir.path(), digest, "named");
    let Action::Service(spec) = &reload("a").steps[0].action else { unreachable!("a service") };
    let owner = OwnerLabels {
        instance: INSTANCE.into(),
        run: "run-0".into(),
        step: "named".into(),
        spec_hash: spec.spec_hash(),
        pattern: "test@0.1.0".into(),
        kind: "service".into(),
        agent: String::new(),
    };
    // Running since an earlier run, with files it was never recorded to have loaded.
    let old = driver.existing("old-0", &owner, None, Behaviour::never_exits());
    driver.script("named", [Behaviour::never_exits()]);

    // Only the files changed: the reload runs in the running container, which stays.
    assert_eq!(planned_action(&driver, &reload("b")).await, "reload");
    driver.script_exec("named", [(0, &["server reload successful"][..])]);
    let (outcome, events) = apply(&driver, reload("b")).await;
    assert_eq!(outcome, Outcome::Succeeded);
    let expected = [
        started("named", 1),
        log("named", "its files changed: reloading in place (rndc reload)"),
        log("named", "server reload successful"),
        succeeded("named", Some(&old)),
    ];
    assert_eq!(of_step(&events, "named"), expected);
    assert_eq!(execs(&driver), [(old.clone(), vec!["rndc".to_owned(), "reload".to_owned()])]);
    assert!(creates(&driver).is_empty() && removes(&driver).is_empty(), "nothing created or removed");
    assert_eq!(planned_action(&driver, &reload("b")).await, "unchanged");
    let (_, events) = apply(&driver, reload("b")).await;
    assert_eq!(of_step(&events, "named"), [started("named", 1), unchanged("named", &old)], "one reload per change");

    // A failed reload fails the step, keeps the container serving, and is tried again.
    driver.script_exec("named", [(1, &["zone lab.test/IN: not loaded due to errors"][..])]);
    let (outcome, events) = apply(&driver, reload("c")).await;
    assert_eq!(outcome, Outcome::Failed);
    let failure = failed("named", "the reload command exited with code 1", Some(1), &["zone lab.test/IN: not loaded due to errors"]);
    assert_eq!(of_step(&events, "named").last(), Some(&failure));
    assert!(removes(&driver).is_empty() && stops(&driver).is_empty(), "the service keeps running");
    let (outcome, _) = apply(&driver, reload("c")).await;
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(execs(&driver).len(), 3, "the failed reload is tried again");

    // Anything else that changed replaces the container, as without a reload command.
    let (_, events) = apply(&driver, reloadable(dir.path(), "c", "named-2")).await;
    assert_eq!(of_step(&events, "named"), [started("named", 1), succeeded("named", Some("c2"))]);
    assert_eq!(removes(&driver), [old]);
    assert_eq!(execs(&driver).len(), 3, "a new container is not reloaded");
}
