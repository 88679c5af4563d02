//! The step kinds' details (exec, wait probes, service health), artifacts, preparation and
//! destroy.

use super::*;
use crate::executor::contract::Health;
use crate::executor::events::ImageAction;
use crate::executor::fake::transfer;
use crate::executor::fake::Behaviour;
use crate::executor::plan::{EnvValue, EnvVar, ImageSource, PlannedArtifact, Probe};

fn exec(name: &str, needs: &[&str], command: &str) -> PlannedStep {
    let env = vec![EnvVar { name: "TOKEN".into(), value: EnvValue::Plain("hunter2".into()) }];
    step(name, needs, Action::Exec { service: "svc".into(), command: vec![command.into()], env })
}

fn probe(name: &str, deadline: Duration) -> PlannedStep {
    let probe = Probe::Exec { service: "svc".into(), command: vec!["ready".into()] };
    step(name, &["svc"], Action::Wait { probe, deadline, interval: secs(1) })
}

#[tokio::test(start_paused = true)]
async fn an_exec_step_runs_in_its_service_with_its_env_and_reports_redacted_output() {
    let driver = FakeDriver::new();
    driver.script("svc", [Behaviour::never_exits()]);
    driver.script_exec("svc", [(0, &["seeded", "token hunter2"][..]), (5, &["no such zone"][..])]);
    let (outcome, events) =
        apply(&driver, plan(vec![service("svc", &[]), exec("seed", &["svc"], "seed"), exec("bad", &["seed"], "bad")])).await;
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(
        of_step(&events, "seed"),
        [started("seed", 1), log("seed", "seeded"), log("seed", "token <redacted>"), succeeded("seed", None)]
    );
    assert_eq!(
        of_step(&events, "bad"),
        [started("bad", 1), log("bad", "no such zone"), failed("bad", "exited with code 5", Some(5), &["no such zone"])]
    );
    let execs: Vec<Call> = driver.calls().into_iter().filter(|call| matches!(call, Call::Exec { .. })).collect();
    let env = vec!["TOKEN=hunter2".to_owned()];
    assert_eq!(
        execs,
        [
            Call::Exec { id: "c1".into(), command: vec!["seed".into()], env: env.clone() },
            Call::Exec { id: "c1".into(), command: vec!["bad".into()], env },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_step_probes_every_interval_until_it_succeeds_or_its_deadline_passes() {
    let driver = FakeDriver::new();
    driver.script("svc", [Behaviour::never_exits()]);
    driver.script_exec("svc", [(1, &[][..]), (1, &[][..]), (0, &[][..])]);
    let begun = tokio::time::Instant::now();
    let (outcome, events) = apply(&driver, plan(vec![service("svc", &[]), probe("ready", secs(10))])).await;
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(of_step(&events, "ready"), [started("ready", 1), succeeded("ready", None)]);
    assert_eq!(begun.elapsed(), secs(2), "third probe, one interval apart");
    let probes = |driver: &FakeDriver| driver.calls().iter().filter(|call| matches!(call, Call::Exec { .. })).count();
    assert_eq!(probes(&driver), 3);

    let driver = FakeDriver::new();
    driver.script("svc", [Behaviour::never_exits()]);
    driver.script_exec("svc", (0..10).map(|_| (1, &[][..])));
    let (outcome, events) = apply(&driver, plan(vec![service("svc", &[]), probe("ready", secs(3))])).await;
    assert_eq!(outcome, Outcome::Failed);
    let reason = "the probe did not succeed within 3s: the probe command exited with code 1";
    assert_eq!(of_step(&events, "ready"), [started("ready", 1), failed("ready", reason, None, &[])]);
    assert_eq!(probes(&driver), 3, "no probe past the deadline");
}

#[tokio::test(start_paused = true)]
async fn a_service_is_up_once_healthy_and_fails_when_unhealthy_or_exited() {
    let driver = FakeDriver::new();
    driver.script("svc", [Behaviour::never_exits().health(&[Health::Starting, Health::Starting, Health::Healthy])]);
    let begun = tokio::time::Instant::now();
    let (outcome, events) = apply(&driver, plan(vec![service("svc", &[])])).await;
    assert_eq!((outcome, begun.elapsed()), (Outcome::Succeeded, Duration::from_millis(500)));
    assert_eq!(of_step(&events, "svc"), [started("svc", 1), succeeded("svc", Some("c1"))]);

    let driver = FakeDriver::new();
    driver.script("svc", [Behaviour::never_exits().health(&[Health::Unhealthy])]);
    let (_, events) = apply(&driver, plan(vec![service("svc", &[])])).await;
    assert_eq!(of_step(&events, "svc")[1], failed("svc", "the service's healthcheck reports unhealthy", None, &[]));
    assert_eq!(stops(&driver), [(secs(0), "c1".into())], "the unhealthy service is stopped");

    let driver = FakeDriver::new();
    driver.script("svc", [Behaviour::exits(3)]);
    let mut svc = service("svc", &[]);
    svc.timeout = Some(secs(1));
    let (_, events) = apply(&driver, plan(vec![svc])).await;
    assert_eq!(of_step(&events, "svc")[1], failed("svc", "the service exited (code 3)", Some(3), &[]));
}

fn artifact(name: &str) -> PlannedArtifact {
    PlannedArtifact {
        name: name.into(),
        sha256: format!("{name}-sha"),
        size: 100,
        path: format!("/cache/{name}").into(),
        urls: vec![format!("https://example.test/{name}")],
        auth: None,
        retain_for: None,
    }
}

#[tokio::test(start_paused = true)]
async fn artifacts_are_fetched_with_progress_before_any_step_and_a_failed_one_fails_the_run() {
    let driver = FakeDriver::new();
    let artifacts = FakeArtifacts::new();
    artifacts.transfers("ova", &[(50, 100), (100, 100)]);
    let mut with_artifacts = plan(vec![run("use", &[])]);
    with_artifacts.artifacts = vec![artifact("ova")];
    let (fetching, mut rx) = runner(&driver, Some(&artifacts));
    let outcome = fetching.apply(with_artifacts.clone(), CancellationToken::new()).await;
    let events = drain(&mut rx);
    assert_eq!(outcome, Outcome::Succeeded);
    let transfer_of = |done| EventKind::Transfer { step: "artifact:ova".into(), transfer: transfer(done, 100) };
    let expected = [started("artifact:ova", 1), transfer_of(50), transfer_of(100), succeeded("artifact:ova", None)];
    assert_eq!(of_step(&events, "artifact:ova"), expected);
    assert_eq!(artifacts.fetched(), ["ova"]);

    let driver = FakeDriver::new();
    let artifacts = FakeArtifacts::new();
    artifacts.fail("ova", "every source failed");
    let (fetching, mut rx) = runner(&driver, Some(&artifacts));
    let outcome = fetching.apply(with_artifacts.clone(), CancellationToken::new()).await;
    let events = drain(&mut rx);
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(of_step(&events, "artifact:ova")[1], failed("artifact:ova", "every source failed", None, &[]));
    assert_eq!(of_step(&events, "use"), [], "no step runs without its artifacts");
    assert_eq!(driver.calls(), [], "nothing is prepared either");

    let (outcome, events) = apply(&FakeDriver::new(), with_artifacts).await;
    assert_eq!(outcome, Outcome::Failed);
    let reason = "this pattern needs artifacts, and this runner has no artifact cache";
    assert_eq!(of_step(&events, "artifacts"), [failed("artifacts", reason, None, &[])]);
}

#[tokio::test(start_paused = true)]
async fn preparation_makes_the_networks_and_images_and_destroy_removes_the_instance() {
    let driver = FakeDriver::new();
    driver.image("tools:1", ImageAction::Pulled);
    let mut plan = plan(vec![run("once", &[])]);
    plan.networks = vec!["lab".into()];
    plan.images = vec![ImageSource::Pull { reference: "tools:1".into(), auth: None }];
    plan.teardown = vec![run("goodbye", &[])];
    let (outcome, events) = apply(&driver, plan.clone()).await;
    assert_eq!(outcome, Outcome::Succeeded);
    assert!(events.contains(&EventKind::ImageReady { reference: "tools:1".into(), action: ImageAction::Pulled }), "{events:?}");
    let calls = driver.calls();
    let prepared = [Call::EnsureNetwork("pmesh-inst".into()), Call::EnsureNetwork("lab".into()), Call::EnsureImage("tools:1".into())];
    assert_eq!(calls[..3], prepared, "preparation comes first");

    let (destroying, _rx) = runner(&driver, None);
    let removed = destroying.destroy(&plan).await.expect("the fake removes all");
    assert_eq!(removed, ["pmesh-inst-once", "pmesh-inst-goodbye", "pmesh-inst", "lab"]);
    let teardown = creates(&driver).into_iter().find(|(_, step, _)| step == "goodbye");
    assert!(teardown.is_some(), "the teardown hook ran");
    assert!(driver.calls().contains(&Call::RemoveNetworksAndVolumes));
}

#[tokio::test(start_paused = true)]
async fn preview_reads_the_same_cache_and_images_the_runner_would_use() {
    let driver = FakeDriver::new();
    driver.image("tools:1", ImageAction::Present);
    let artifacts = FakeArtifacts::new();
    artifacts.cache("ova-sha");
    let mut plan = plan(vec![]);
    plan.artifacts = vec![artifact("ova"), artifact("iso")];
    plan.images =
        vec![ImageSource::Pull { reference: "tools:1".into(), auth: None }, ImageSource::Pull { reference: "new:2".into(), auth: None }];
    let planned = crate::executor::preview::preview(&*driver, &*artifacts, &plan).await.expect("the fakes answer");
    let actions: Vec<(&str, &str)> = planned.iter().map(|planned| (planned.name.as_str(), planned.action)).collect();
    assert_eq!(actions, [("ova", "cached"), ("iso", "fetch"), ("tools:1", "present"), ("new:2", "pull")]);
    assert_eq!(artifacts.fetched(), [] as [String; 0], "a preview fetches nothing");
}
