//! Convergence (create, replace, or leave alone) and re-adoption after an agent restart.

use super::*;
use crate::executor::contract::OwnerLabels;
use crate::executor::fake::Behaviour;
use crate::executor::preview::preview;

/// The labels of a container of `step` made by run `run` with `spec_hash`.
fn owner(run: &str, step: &str, spec_hash: &str, kind: &str) -> OwnerLabels {
    OwnerLabels {
        instance: INSTANCE.into(),
        run: run.into(),
        step: step.into(),
        spec_hash: spec_hash.into(),
        pattern: "test@0.1.0".into(),
        kind: kind.into(),
        agent: String::new(),
    }
}

/// A container of the step from an earlier run: same spec or not, exited with a code or
/// running (`None`).
struct Prior {
    same_spec: bool,
    exit_code: Option<i64>,
}

#[derive(Debug, PartialEq)]
enum Want {
    Create,
    Replace,
    Unchanged,
}

/// Applies a plan of one step `web` (a service or a run step) over the `prior` containers,
/// and checks what it did and that `preview` had said so.
async fn check(is_service: bool, prior: &[Prior], want: Want) {
    let driver = FakeDriver::new();
    let web = if is_service { service("web", &[]) } else { run("web", &[]) };
    let (kind, hash) = (if is_service { "service" } else { "run" }, spec("web").spec_hash());
    let prior_ids: Vec<String> = prior
        .iter()
        .enumerate()
        .map(|(index, prior)| {
            let hash = if prior.same_spec { hash.as_str() } else { "0123456789abcdef01234567" };
            driver.existing(&format!("old-{index}"), &owner("run-0", "web", hash, kind), prior.exit_code, Behaviour::never_exits())
        })
        .collect();
    driver.script("web", [if is_service { Behaviour::never_exits() } else { Behaviour::exits(0) }]);
    let plan = plan(vec![web]);
    let planned = preview(&*driver, &*FakeArtifacts::new(), &plan).await.expect("the fake answers");
    let case = format!("service {is_service}, {} prior", prior.len());
    let (outcome, events) = apply(&driver, plan).await;
    assert_eq!(outcome, Outcome::Succeeded, "{case}");
    let new_id = format!("c{}", prior.len() + 1);
    let (action, expected, removed, n_created) = match want {
        Want::Create => ("create", succeeded("web", Some(&new_id)), vec![], 1),
        Want::Replace => ("replace", succeeded("web", Some(&new_id)), prior_ids.clone(), 1),
        Want::Unchanged => ("unchanged", unchanged("web", &prior_ids[0]), vec![], 0),
    };
    assert_eq!(of_step(&events, "web"), [started("web", 1), expected], "{case}");
    assert_eq!(removes(&driver), removed, "{case}");
    assert_eq!(creates(&driver).len(), n_created, "{case}");
    assert_eq!(planned[0].action, action, "preview of {case}");
    if n_created == 1 {
        let create = driver.calls().into_iter().find(|call| matches!(call, Call::Create { .. }));
        let expected = Call::Create { id: new_id, name: "pmesh-inst-web".into(), step: "web".into(), spec_hash: hash, kind: kind.into() };
        assert_eq!(create, Some(expected), "{case}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_step_is_created_replaced_or_left_alone() {
    check(false, &[], Want::Create).await;
    check(false, &[Prior { same_spec: true, exit_code: Some(0) }], Want::Unchanged).await;
    check(false, &[Prior { same_spec: true, exit_code: Some(1) }], Want::Replace).await;
    check(false, &[Prior { same_spec: false, exit_code: Some(0) }], Want::Replace).await;
}

#[tokio::test(start_paused = true)]
async fn a_service_is_created_replaced_or_left_alone() {
    check(true, &[], Want::Create).await;
    check(true, &[Prior { same_spec: true, exit_code: None }], Want::Unchanged).await;
    check(true, &[Prior { same_spec: false, exit_code: None }], Want::Replace).await;
    check(true, &[Prior { same_spec: true, exit_code: Some(0) }], Want::Replace).await;
    let duplicates = [Prior { same_spec: true, exit_code: None }, Prior { same_spec: true, exit_code: None }];
    check(true, &duplicates, Want::Replace).await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_readopts_its_running_container_and_reports_only_new_lines() {
    let driver = FakeDriver::new();
    let hash = spec("long").spec_hash();
    // An earlier run's container of the same step is not this run's, whatever its state.
    let earlier = driver.existing("old-long", &owner("run-0", "long", &hash, "run"), Some(0), Behaviour::exits(0));
    let running = Behaviour::exits_after(0, secs(3)).lines(&["one", "two", "three"]);
    let adopted = driver.existing("pmesh-inst-long", &owner(RUN_ID, "long", &hash, "run"), None, running);
    let mut plan = plan(vec![run("long", &[])]);
    plan.resume.insert("long".into(), 2);
    let begun = tokio::time::Instant::now();
    let (outcome, events) = apply(&driver, plan).await;
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(of_step(&events, "long"), [started("long", 1), log("long", "three"), succeeded("long", Some(&adopted))]);
    assert_eq!(begun.elapsed(), secs(3), "the re-adopted container is waited for");
    let calls = driver.calls();
    assert!(calls.contains(&Call::Logs(adopted.clone())) && calls.contains(&Call::Wait(adopted.clone())), "{calls:?}");
    let touched = |call: &Call| matches!(call, Call::Create { .. } | Call::Start(_) | Call::Attach(_) | Call::Remove(_) | Call::Stop(_));
    assert_eq!(calls.iter().filter(|call| touched(call)).count(), 0, "{calls:?}");
    assert!(!calls.iter().any(|call| matches!(call, Call::Logs(id) | Call::Wait(id) if *id == earlier)));
}

/// An agent killed between creating a step's container and starting it: after the restart
/// the container is removed and the step runs afresh, every line reported, instead of being
/// taken over (it never ran, and Docker reports exit code 0 for it). Found by the chaos suite.
#[tokio::test(start_paused = true)]
async fn a_container_created_but_never_started_runs_afresh_after_a_restart() {
    let driver = FakeDriver::new();
    let hash = spec("late").spec_hash();
    let never_started = driver.created("pmesh-inst-late", &owner(RUN_ID, "late", &hash, "run"));
    driver.script("late", [Behaviour::exits(0).lines(&["one", "two"])]);
    let mut plan = plan(vec![run("late", &[])]);
    plan.resume.insert("late".into(), 0);
    let (outcome, events) = apply(&driver, plan).await;
    assert_eq!(outcome, Outcome::Succeeded);
    let fresh = creates(&driver);
    assert_eq!(fresh.len(), 1, "one new container: {:?}", driver.calls());
    let steps = of_step(&events, "late");
    assert_eq!(steps[1..3], [log("late", "one"), log("late", "two")], "{steps:?}");
    let calls = driver.calls();
    assert!(calls.contains(&Call::Remove(never_started.clone())), "{calls:?}");
    assert!(!calls.iter().any(|call| matches!(call, Call::Logs(id) | Call::Wait(id) if *id == never_started)), "{calls:?}");
}

/// An agent killed after journalling a step's start but before Docker created its container
/// left nothing of it: the step runs, once.
#[tokio::test(start_paused = true)]
async fn a_step_whose_container_was_never_created_runs_afresh() {
    let driver = FakeDriver::new();
    driver.script("early", [Behaviour::exits(0).lines(&["one"])]);
    let mut plan = plan(vec![run("early", &[])]);
    plan.resume.insert("early".into(), 0);
    let (outcome, events) = apply(&driver, plan).await;
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(creates(&driver).len(), 1, "one new container: {:?}", driver.calls());
    assert_eq!(of_step(&events, "early")[1], log("early", "one"));
}

#[tokio::test(start_paused = true)]
async fn a_container_gone_while_the_agent_was_down_fails_its_step() {
    let driver = FakeDriver::new();
    let mut plan = plan(vec![run("gone", &[])]);
    plan.resume.insert("gone".into(), 3);
    let (outcome, events) = apply(&driver, plan).await;
    assert_eq!(outcome, Outcome::Failed);
    let reason = "the container of step gone vanished while the agent was down";
    assert_eq!(of_step(&events, "gone"), [started("gone", 1), failed("gone", reason, None, &[])]);
    assert_eq!(creates(&driver), [], "a vanished container is not started again");
}

#[tokio::test(start_paused = true)]
async fn a_readopted_container_that_failed_while_the_agent_was_down_fails_with_its_tail() {
    let driver = FakeDriver::new();
    let owner = owner(RUN_ID, "long", &spec("long").spec_hash(), "run");
    let adopted = driver.existing("pmesh-inst-long", &owner, Some(2), Behaviour::exits(2).lines(&["a", "b", "c"]));
    let mut plan = plan(vec![run("long", &[])]);
    plan.resume.insert("long".into(), 1);
    let (outcome, events) = apply(&driver, plan).await;
    assert_eq!(outcome, Outcome::Failed);
    let expected = [started("long", 1), log("long", "b"), log("long", "c"), failed("long", "exited with code 2", Some(2), &["b", "c"])];
    assert_eq!(of_step(&events, "long"), expected);
    assert_eq!(creates(&driver), [], "re-adoption creates nothing");
    assert!(driver.calls().contains(&Call::Wait(adopted)));
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_readopts_its_running_service_and_follows_its_new_lines() {
    let driver = FakeDriver::new();
    let owner = owner(RUN_ID, "web", &spec("web").spec_hash(), "service");
    // Same spec and running: without the resume entry, this service would be left alone.
    let adopted = driver.existing("pmesh-inst-web", &owner, None, Behaviour::never_exits().lines(&["one", "two", "three"]));
    // A later step keeps the run going, so the service's output is followed meanwhile.
    driver.script("later", [Behaviour::exits_after(0, secs(5))]);
    let mut plan = plan(vec![service("web", &[]), run("later", &["web"])]);
    plan.resume.insert("web".into(), 2);
    let (outcome, events) = apply(&driver, plan).await;
    assert_eq!(outcome, Outcome::Succeeded);
    // The output is followed by a task of its own, so its lines and the step's end interleave
    // as the scheduler has it.
    let (lines, steps): (Vec<EventKind>, Vec<EventKind>) =
        of_step(&events, "web").into_iter().partition(|kind| matches!(kind, EventKind::Log { .. }));
    assert_eq!(steps, [started("web", 1), succeeded("web", Some(&adopted))]);
    assert_eq!(lines, [log("web", "three")], "only the line not reported before the restart");
    let calls = driver.calls();
    assert!(calls.contains(&Call::Logs(adopted.clone())), "{calls:?}");
    let touched = |call: &Call| matches!(call, Call::Start(id) | Call::Attach(id) | Call::Remove(id) | Call::Stop(id) if *id == adopted);
    assert_eq!(calls.iter().filter(|call| touched(call)).count(), 0, "{calls:?}");
}

/// A service running without capabilities is replaced once its step asks for one, and the plan
/// says what the step asks for.
#[tokio::test(start_paused = true)]
async fn asking_for_a_capability_replaces_the_container_and_the_plan_lists_it() {
    let driver = FakeDriver::new();
    let old =
        driver.existing("pmesh-inst-web", &owner("run-0", "web", &spec("web").spec_hash(), "service"), None, Behaviour::never_exits());
    driver.script("web", [Behaviour::never_exits()]);
    let mut web = service("web", &[]);
    if let Action::Service(spec) = &mut web.action {
        spec.capabilities = vec!["DAC_READ_SEARCH".into(), "SYS_ADMIN".into()];
    }
    let plan = plan(vec![web]);
    let planned = preview(&*driver, &*FakeArtifacts::new(), &plan).await.expect("the fake answers");
    assert_eq!(planned[0].action, "replace");
    assert_eq!(planned[0].detail, "pmesh-inst-web (its spec changed); capabilities DAC_READ_SEARCH, SYS_ADMIN");
    let (outcome, _) = apply(&driver, plan).await;
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(removes(&driver), [old]);
    assert_eq!(creates(&driver).len(), 1);
}
