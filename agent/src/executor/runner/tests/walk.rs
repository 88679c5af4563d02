//! The DAG walk: a failure skipping its dependents, needs ordering starts, `max_parallel`.

use super::*;
use crate::executor::fake::Behaviour;

#[tokio::test(start_paused = true)]
async fn a_failure_skips_its_dependents_starts_nothing_new_and_lets_running_steps_finish() {
    let driver = FakeDriver::new();
    driver.script("a", [Behaviour::exits_after(2, secs(1))]);
    driver.script("slow", [Behaviour::exits_after(0, secs(5))]);
    let steps = vec![run("a", &[]), run("slow", &[]), run("b", &["a"]), run("c", &["b"]), run("late", &[])];
    let mut plan = plan(steps);
    plan.max_parallel = 2;
    let begun = tokio::time::Instant::now();
    let (outcome, events) = apply(&driver, plan).await;
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(of_step(&events, "a"), [started("a", 1), failed("a", "exited with code 2", Some(2), &[])]);
    assert_eq!(of_step(&events, "b"), [skipped("b", "it needs a, which did not succeed")]);
    assert_eq!(of_step(&events, "c"), [skipped("c", "it needs b, which did not succeed")]);
    assert_eq!(of_step(&events, "late"), [skipped("late", "an earlier step failed")]);
    assert_eq!(of_step(&events, "slow"), [started("slow", 1), succeeded("slow", Some("c2"))]);
    assert_eq!(creates(&driver), [created(0, "a", "c1"), created(0, "slow", "c2")]);
    assert_eq!(begun.elapsed(), secs(5), "the run waits for the step already running");
    assert_eq!(stops(&driver), [], "a running step is not stopped by another's failure");
}

#[tokio::test(start_paused = true)]
async fn a_step_starts_once_its_needs_are_done() {
    let driver = FakeDriver::new();
    driver.script("a", [Behaviour::exits_after(0, secs(10))]);
    driver.script("c", [Behaviour::exits_after(0, secs(3))]);
    let (outcome, events) = apply(&driver, plan(vec![run("a", &[]), run("b", &["a"]), run("c", &[])])).await;
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(creates(&driver), [created(0, "a", "c1"), created(0, "c", "c2"), created(10, "b", "c3")]);
    assert_eq!(events.last(), Some(&finished(Outcome::Succeeded)));
}

/// Five independent ten-second steps under `max_parallel`: the most containers running at
/// once, and how long the run took.
async fn check_parallel(max_parallel: usize, peak: usize, took: Duration) {
    let driver = FakeDriver::new();
    let names = ["s1", "s2", "s3", "s4", "s5"];
    for name in names {
        driver.script(name, [Behaviour::exits_after(0, secs(10))]);
    }
    let mut plan = plan(names.iter().map(|name| run(name, &[])).collect());
    plan.max_parallel = max_parallel;
    let begun = tokio::time::Instant::now();
    let (outcome, events) = apply(&driver, plan).await;
    assert_eq!(outcome, Outcome::Succeeded, "max_parallel {max_parallel}");
    assert_eq!(driver.peak_running(), peak, "max_parallel {max_parallel}");
    assert_eq!(begun.elapsed(), took, "max_parallel {max_parallel}");
    let n_succeeded = events.iter().filter(|kind| matches!(kind, EventKind::StepSucceeded { .. })).count();
    assert_eq!(n_succeeded, names.len());
}

#[tokio::test(start_paused = true)]
async fn at_most_max_parallel_steps_run_at_once() {
    check_parallel(1, 1, secs(50)).await;
    check_parallel(2, 2, secs(30)).await;
    check_parallel(5, 5, secs(10)).await;
    check_parallel(8, 5, secs(10)).await;
    // Zero would start nothing and hang: it counts as one.
    check_parallel(0, 1, secs(50)).await;
}

/// Four repetitions of one step with `parallel: 2` beside an unrelated step, under a
/// `max_parallel` of 4: at most two repetitions at once (the other step is not held back),
/// each its own step in the events, and the step needing them starts after the last.
#[tokio::test(start_paused = true)]
async fn a_repeated_step_runs_at_most_parallel_repetitions_at_once() {
    let driver = FakeDriver::new();
    let names = ["deploy[esxi-01]", "deploy[esxi-02]", "deploy[esxi-03]", "deploy[esxi-04]"];
    for name in names {
        driver.script(name, [Behaviour::exits_after(0, secs(10))]);
    }
    driver.script("other", [Behaviour::exits_after(0, secs(10))]);
    let group = Some(crate::executor::plan::Group { step: "deploy".to_owned(), parallel: 2 });
    let mut steps: Vec<PlannedStep> = names.iter().map(|name| PlannedStep { group: group.clone(), ..run(name, &[]) }).collect();
    steps.push(run("other", &[]));
    steps.push(run("after", &names));
    let (outcome, events) = apply(&driver, plan(steps)).await;
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(driver.peak_running(), 3, "two repetitions and the other step");
    let starts: Vec<(Duration, String)> = creates(&driver).into_iter().map(|(at, step, _)| (at, step)).collect();
    let at = |step: &str| starts.iter().find(|(_, name)| name == step).map(|(at, _)| at.as_secs());
    assert_eq!(names.map(at), [Some(0), Some(0), Some(10), Some(10)]);
    assert_eq!((at("other"), at("after")), (Some(0), Some(20)));
    for name in names {
        assert_eq!(of_step(&events, name).len(), 2, "{name}: started and succeeded, under its own name");
    }
}
