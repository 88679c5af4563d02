//! Retries and their backoff, step and run timeouts, and cancellation.

use super::*;
use crate::executor::fake::Behaviour;

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_is_retried_in_a_new_container_after_a_doubling_backoff() {
    let driver = FakeDriver::new();
    driver.script("flaky", [Behaviour::exits(1).lines(&["boom"]), Behaviour::exits(1), Behaviour::exits(0)]);
    let (outcome, events) = apply(&driver, plan(vec![retried(run("flaky", &[]), 3, secs(2))])).await;
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(
        of_step(&events, "flaky"),
        [
            started("flaky", 1),
            log("flaky", "boom"),
            retrying("flaky", 2, "exited with code 1"),
            started("flaky", 2),
            retrying("flaky", 3, "exited with code 1"),
            started("flaky", 3),
            succeeded("flaky", Some("c3")),
        ]
    );
    // 2s before the second attempt, 4s more before the third.
    assert_eq!(creates(&driver), [created(0, "flaky", "c1"), created(2, "flaky", "c2"), created(6, "flaky", "c3")]);
    assert_eq!(removes(&driver), ["c1", "c2"], "each attempt replaces the failed container");
    assert_eq!(stops(&driver), [], "an exited container needs no stop");
}

#[tokio::test(start_paused = true)]
async fn a_step_out_of_attempts_fails_with_its_exit_code_and_tail_and_its_dependent_is_skipped() {
    let driver = FakeDriver::new();
    driver.script("flaky", [Behaviour::exits(3).lines(&["a", "pw=hunter2"]), Behaviour::exits(4).lines(&["x"])]);
    let steps = vec![retried(run("flaky", &[]), 2, secs(1)), run("after", &["flaky"])];
    let (outcome, events) = apply(&driver, plan(steps)).await;
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(
        of_step(&events, "flaky"),
        [
            started("flaky", 1),
            log("flaky", "a"),
            log("flaky", "pw=<redacted>"),
            retrying("flaky", 2, "exited with code 3"),
            started("flaky", 2),
            log("flaky", "x"),
            failed("flaky", "exited with code 4", Some(4), &["x"]),
        ]
    );
    assert_eq!(of_step(&events, "after"), [skipped("after", "it needs flaky, which did not succeed")]);
    assert_eq!(events.last(), Some(&finished(Outcome::Failed)));
    assert_eq!(creates(&driver), [created(0, "flaky", "c1"), created(1, "flaky", "c2")]);
}

#[tokio::test(start_paused = true)]
async fn a_step_past_its_timeout_is_stopped_and_retried() {
    let driver = FakeDriver::new();
    driver.script("hang", [Behaviour::never_exits(), Behaviour::never_exits()]);
    let mut hang = retried(run("hang", &[]), 2, secs(1));
    hang.timeout = Some(secs(5));
    let (outcome, events) = apply(&driver, plan(vec![hang])).await;
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(
        of_step(&events, "hang"),
        [
            started("hang", 1),
            retrying("hang", 2, "timed out after 5s"),
            started("hang", 2),
            failed("hang", "timed out after 5s", None, &[]),
        ]
    );
    assert_eq!(creates(&driver), [created(0, "hang", "c1"), created(6, "hang", "c2")]);
    assert_eq!(stops(&driver), [(secs(5), "c1".into()), (secs(11), "c2".into())]);
}

#[tokio::test(start_paused = true)]
async fn a_run_past_its_time_limit_stops_every_container_and_fails() {
    let driver = FakeDriver::new();
    driver.script("svc", [Behaviour::never_exits()]);
    driver.script("hang", [Behaviour::never_exits()]);
    let mut plan = plan(vec![service("svc", &[]), run("hang", &["svc"]), run("later", &[])]);
    plan.timeout = Some(secs(3));
    plan.max_parallel = 1;
    let (outcome, events) = apply(&driver, plan).await;
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(of_step(&events, "svc"), [started("svc", 1), succeeded("svc", Some("c1"))]);
    assert_eq!(of_step(&events, "hang"), [started("hang", 1), failed("hang", "cancelled", None, &[])]);
    assert_eq!(of_step(&events, "later"), [skipped("later", "the run was cancelled")]);
    assert_eq!(events[events.len() - 2..], [failed("run", "the run timed out after 3s", None, &[]), finished(Outcome::Failed)]);
    // The step's own stop, then the run's: the service too.
    assert_eq!(stops(&driver), [(secs(3), "c2".into()), (secs(3), "c1".into())]);
    assert_eq!(creates(&driver).len(), 2, "the skipped step never got a container");
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_the_running_step_and_the_services_and_skips_the_rest() {
    let driver = FakeDriver::new();
    driver.script("svc", [Behaviour::never_exits()]);
    driver.script("long", [Behaviour::never_exits().lines(&["up"])]);
    let mut plan = plan(vec![service("svc", &[]), run("long", &["svc"]), run("later", &[])]);
    plan.max_parallel = 1;
    let (runner, mut rx) = runner(&driver, None);
    let cancel = CancellationToken::new();
    let run = spawn_apply(runner, plan, cancel.clone());
    let mut events = events_until(&mut rx, |kind| *kind == log("long", "up")).await;
    cancel.cancel();
    let outcome = tokio::time::timeout(HANG, run).await.expect("the run ends").expect("the run does not panic");
    events.extend(drain(&mut rx));
    assert_eq!(outcome, Outcome::Cancelled);
    assert_eq!(of_step(&events, "long"), [started("long", 1), log("long", "up"), failed("long", "cancelled", None, &[])]);
    assert_eq!(of_step(&events, "later"), [skipped("later", "the run was cancelled")]);
    assert_eq!(events.last(), Some(&finished(Outcome::Cancelled)));
    assert_eq!(stops(&driver), [(secs(0), "c2".into()), (secs(0), "c1".into())]);
    assert_eq!(creates(&driver).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn cancel_during_a_backoff_ends_the_step_without_waiting() {
    let driver = FakeDriver::new();
    driver.script("flaky", [Behaviour::exits(1)]);
    let (runner, mut rx) = runner(&driver, None);
    let cancel = CancellationToken::new();
    let begun = tokio::time::Instant::now();
    let run = spawn_apply(runner, plan(vec![retried(run("flaky", &[]), 3, secs(60))]), cancel.clone());
    let mut events = events_until(&mut rx, |kind| matches!(kind, EventKind::StepRetrying { .. })).await;
    cancel.cancel();
    let outcome = tokio::time::timeout(HANG, run).await.expect("the run ends").expect("the run does not panic");
    events.extend(drain(&mut rx));
    assert_eq!(outcome, Outcome::Cancelled);
    assert_eq!(
        of_step(&events, "flaky"),
        [started("flaky", 1), retrying("flaky", 2, "exited with code 1"), failed("flaky", "cancelled", None, &[])]
    );
    assert_eq!(creates(&driver), [created(0, "flaky", "c1")], "no second attempt");
    assert!(begun.elapsed() < secs(60), "the backoff was waited out: {:?}", begun.elapsed());
}
