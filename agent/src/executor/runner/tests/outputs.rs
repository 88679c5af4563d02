//! Outputs: rendered once every step succeeded, `from` files read from the step's container,
//! secret values kept in the event the runner emits (for the journal's run record) and
//! withheld from the record it journals; a missing file fails the run.

use pmesh_proto::event::RunOutput;
use pmesh_proto::pattern::OutputType;

use super::*;
use crate::executor::fake::Behaviour;
use crate::executor::plan::{OutputSource, PlannedOutput};

fn value(name: &str, kind: OutputType, secret: bool, value: serde_json::Value) -> PlannedOutput {
    PlannedOutput { name: name.into(), kind, secret, source: OutputSource::Value(value) }
}

fn from(name: &str, kind: OutputType, step: &str, path: &str) -> PlannedOutput {
    PlannedOutput { name: name.into(), kind, secret: false, source: OutputSource::File { step: step.into(), path: path.into() } }
}

fn with_outputs(outputs: Vec<PlannedOutput>) -> Plan {
    let mut plan = plan(vec![service("svc", &[]), run("once", &["svc"])]);
    plan.outputs = outputs;
    plan
}

fn finished_outputs(events: &[EventKind]) -> Vec<RunOutput> {
    match events.last() {
        Some(EventKind::RunFinished { outputs, .. }) => outputs.clone(),
        other => panic!("the run ends with RunFinished, not {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn outputs_come_from_values_and_the_steps_containers() {
    let driver = FakeDriver::new();
    driver.script("svc", [Behaviour::never_exits()]);
    driver.file("svc", "/certs/ca.crt", b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    driver.file("once", "/exports", b"/srv/a\n/srv/b\n");
    let plan = with_outputs(vec![
        value("port", OutputType::Port, false, serde_json::json!(53)),
        from("ca", OutputType::String, "svc", "/certs/ca.crt"),
        from("exports", OutputType::List, "once", "/exports"),
        value("password", OutputType::String, true, serde_json::json!("s3cret-pw")),
    ]);
    let (outcome, events) = apply(&driver, plan).await;
    assert_eq!(outcome, Outcome::Succeeded);
    let outputs = finished_outputs(&events);
    let values: Vec<(&str, Option<serde_json::Value>)> =
        outputs.iter().map(|output| (output.name.as_str(), output.value.clone())).collect();
    assert_eq!(
        values,
        [
            ("port", Some(serde_json::json!(53))),
            ("ca", Some(serde_json::json!("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))),
            ("exports", Some(serde_json::json!(["/srv/a", "/srv/b"]))),
            ("password", Some(serde_json::json!("s3cret-pw"))),
        ]
    );
    let reads = driver.calls().into_iter().filter(|call| matches!(call, Call::ReadFile { .. })).count();
    assert_eq!(reads, 2);
    // What the journal writes, and the wire carries, has no secret value.
    let event = Event { at: std::time::SystemTime::now(), run_id: RUN_ID.into(), kind: events.last().cloned().expect("an event") };
    let record = serde_json::to_string(&event.record(1)).expect("JSON");
    assert!(!record.contains("s3cret-pw") && record.contains("\"secret\":true"), "{record}");
}

#[tokio::test(start_paused = true)]
async fn a_missing_file_fails_the_run_naming_the_output() {
    let driver = FakeDriver::new();
    driver.script("svc", [Behaviour::never_exits()]);
    let (outcome, events) = apply(&driver, with_outputs(vec![from("ca", OutputType::String, "svc", "/certs/ca.crt")])).await;
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(
        of_step(&events, "outputs"),
        [failed("outputs", "output `ca`: /certs/ca.crt of step svc: no file /certs/ca.crt in the container", None, &[])]
    );
    assert_eq!(finished_outputs(&events), []);
}

#[tokio::test(start_paused = true)]
async fn a_file_of_the_wrong_type_fails_and_a_failed_run_reads_nothing() {
    let driver = FakeDriver::new();
    driver.script("svc", [Behaviour::never_exits()]);
    driver.file("svc", "/port", b"eighty\n");
    let (outcome, events) = apply(&driver, with_outputs(vec![from("port", OutputType::Port, "svc", "/port")])).await;
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(
        of_step(&events, "outputs"),
        [failed("outputs", "output `port`: /port of step svc: expected a port, found `eighty`", None, &[])]
    );

    let driver = FakeDriver::new();
    driver.script("svc", [Behaviour::never_exits()]);
    driver.script("once", [Behaviour::exits(3)]);
    let (outcome, events) = apply(&driver, with_outputs(vec![from("port", OutputType::Port, "svc", "/port")])).await;
    assert_eq!(outcome, Outcome::Failed);
    assert!(of_step(&events, "outputs").is_empty());
    assert!(!driver.calls().iter().any(|call| matches!(call, Call::ReadFile { .. })));
}
