//! The agent's executor against the real Docker engine, with the locally built tool image
//! (bind9, dig, curl from Debian packages). Plans are built by hand here; the pattern tests
//! build them from YAML.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pmesh_agent::docker::DockerDriver;
use pmesh_agent::executor::events::{Event, EventKind, Outcome};
use pmesh_agent::executor::plan::*;
use pmesh_agent::executor::runner::Runner;
use pmesh_tests::docker::{containers_with_label, docker, is_running, require_tools_image, TOOLS_IMAGE};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn container(command: &[&str]) -> ContainerSpec {
    ContainerSpec {
        image: TOOLS_IMAGE.into(),
        entrypoint: None,
        command: command.iter().map(|part| part.to_string()).collect(),
        env: vec![],
        mounts: vec![],
        ports: vec![],
        networks: vec![],
        restart: RestartPolicy::No,
        healthcheck: None,
        memory_bytes: Some(256 * 1024 * 1024),
        nano_cpus: None,
        workdir: None,
        user: None,
        inputs: BTreeMap::new(),
        reload: None,
        capabilities: vec![],
    }
}

fn step(name: &str, needs: &[&str], action: Action) -> PlannedStep {
    PlannedStep {
        name: name.into(),
        needs: needs.iter().map(|need| need.to_string()).collect(),
        timeout: Some(Duration::from_secs(60)),
        retries: RetryPolicy::default(),
        progress: vec![],
        group: None,
        action,
    }
}

fn unique_instance(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id() ^ rand_suffix())
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0) % 100_000
}

fn plan(instance: &str, run: &str, steps: Vec<PlannedStep>) -> Plan {
    Plan {
        instance: instance.into(),
        agent: String::new(),
        pattern: "test@0.1.0".into(),
        run_id: run.into(),
        artifacts: vec![],
        images: vec![ImageSource::Pull { reference: TOOLS_IMAGE.into(), auth: None }],
        networks: vec![],
        steps,
        teardown: vec![],
        max_parallel: 4,
        resume: BTreeMap::new(),
        outputs: vec![],
        timeout: None,
    }
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    driver: Arc<DockerDriver>,
}

impl Harness {
    fn new() -> Harness {
        require_tools_image();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let driver = Arc::new(runtime.block_on(DockerDriver::connect()).expect("Docker must be running"));
        Harness { runtime, driver }
    }

    /// Applies `plan`; returns the outcome and every event.
    fn apply(&self, plan: Plan, secrets: Vec<String>) -> (Outcome, Vec<Event>) {
        self.apply_with(plan, secrets, |_, _| {})
    }

    /// Applies `plan`, calling `on_event` with each event and the run's cancel token.
    fn apply_with(
        &self,
        plan: Plan,
        secrets: Vec<String>,
        on_event: impl Fn(&Event, &CancellationToken) + Send + 'static,
    ) -> (Outcome, Vec<Event>) {
        let (tx, mut rx) = mpsc::channel(1024);
        let runner = Runner::new(self.driver.clone(), tx, secrets);
        let cancel = CancellationToken::new();
        self.runtime.block_on(async {
            let watcher_cancel = cancel.clone();
            let collector = tokio::spawn(async move {
                let mut events = Vec::new();
                while let Some(event) = rx.recv().await {
                    on_event(&event, &watcher_cancel);
                    events.push(event);
                }
                events
            });
            let outcome = runner.apply(plan, cancel).await;
            drop(runner);
            (outcome, collector.await.expect("collector"))
        })
    }

    fn destroy(&self, plan: &Plan) -> Vec<String> {
        let (tx, _rx) = mpsc::channel(1024);
        let runner = Runner::new(self.driver.clone(), tx, vec![]);
        self.runtime.block_on(runner.destroy(plan)).expect("destroy")
    }
}

fn failed<'a>(events: &'a [Event], step_name: &str) -> Option<(&'a str, Option<i64>, &'a [String])> {
    events.iter().find_map(|event| match &event.kind {
        EventKind::StepFailed { step, reason, exit_code, tail } if step == step_name => {
            Some((reason.as_str(), *exit_code, tail.as_slice()))
        }
        _ => None,
    })
}

fn logs(events: &[Event], step_name: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::Log { step, line } if step == step_name => Some(line.clone()),
            _ => None,
        })
        .collect()
}

/// Destroys the instance when the test ends, pass or fail.
struct Cleanup<'a>(&'a Harness, Plan);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.0.destroy(&self.1);
    }
}

const NAMED_CONF: &str = r#"options {
    directory "/var/cache/bind";
    listen-on port 53 { any; };
    listen-on-v6 { none; };
    recursion no;
    allow-query { any; };
    dnssec-validation no;
};
zone "lab.test" { type primary; file "/cfg/db.lab.test"; };
"#;

const ZONE: &str = "$TTL 60
@    IN SOA ns1.lab.test. admin.lab.test. ( 1 60 60 600 60 )
@    IN NS  ns1.lab.test.
ns1  IN A   127.0.0.1
www  IN A   10.0.0.7
";

/// A BIND9 service (from the Debian image), checked by an exec, awaited by a DNS probe on its
/// published port, then queried by a one-shot `dig` on the instance network.
#[test]
fn service_exec_wait_and_run_steps_succeed_in_order() {
    let harness = Harness::new();
    let instance = unique_instance("multi");
    let port = pmesh_tests::free_port();
    let config = tempfile::tempdir().expect("temp dir");
    std::fs::write(config.path().join("named.conf"), NAMED_CONF).expect("named.conf");
    std::fs::write(config.path().join("db.lab.test"), ZONE).expect("zone");
    let mut dns = container(&["named", "-g", "-c", "/cfg/named.conf"]);
    dns.mounts = vec![MountSpec { source: MountSource::Host(config.path().to_path_buf()), target: "/cfg".into(), read_only: true }];
    dns.ports = vec![PortSpec { container_port: 53, host_port: port, host_ip: Some("127.0.0.1".into()), protocol: Protocol::Udp }];
    let mut steps = vec![
        step("dns", &[], Action::Service(dns)),
        step(
            "check",
            &["dns"],
            Action::Exec {
                service: "dns".into(),
                command: vec!["named-checkzone".into(), "lab.test".into(), "/cfg/db.lab.test".into()],
                env: vec![],
            },
        ),
        step(
            "ready",
            &["dns"],
            Action::Wait {
                probe: Probe::Dns { server: "127.0.0.1".into(), port, name: "lab.test".into(), record_type: "SOA".into() },
                deadline: Duration::from_secs(30),
                interval: Duration::from_millis(200),
            },
        ),
        step(
            "client",
            &["ready", "check"],
            Action::Run(container(&["sh", "-c", "dig +short @dns www.lab.test && echo 'Progress: 50%' && echo 'Progress: 100%'"])),
        ),
    ];
    steps[3].progress = vec![regex::Regex::new(r"Progress: (\d+)%").unwrap()];
    let plan = plan(&instance, "run-1", steps);
    let _cleanup = Cleanup(&harness, plan.clone());
    let (outcome, events) = harness.apply(plan, vec![]);
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert!(logs(&events, "check").iter().any(|line| line.contains("loaded serial 1")), "{:?}", logs(&events, "check"));
    assert!(logs(&events, "client").contains(&"10.0.0.7".to_string()), "{:?}", logs(&events, "client"));
    assert!(logs(&events, "dns").iter().any(|line| line.contains("running")), "service output is streamed");
    let percents: Vec<f32> = events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::Progress { percent, .. } => Some(*percent),
            _ => None,
        })
        .collect();
    assert_eq!(percents, [50.0, 100.0]);
    // Order: client started only after both of its needs succeeded.
    let position = |wanted: &dyn Fn(&EventKind) -> bool| events.iter().position(|event| wanted(&event.kind)).expect("event present");
    let client_started = position(&|kind| matches!(kind, EventKind::StepStarted { step, .. } if step == "client"));
    for need in ["ready", "check"] {
        let need_done = position(&|kind| matches!(kind, EventKind::StepSucceeded { step, .. } if step == need));
        assert!(need_done < client_started, "{need} finished before client started");
    }
}

/// Every line of a fast writer arrives, in order. Following the log file lost them: the engine
/// here rotates json-file logs at 10 MB (`log-opts` in /etc/docker/daemon.json, a common
/// setting), and lines written while a follower lagged behind a rotation were never read.
/// The runner attaches to the container's output before starting it instead.
#[test]
fn a_fast_writer_loses_no_line_across_log_rotation() {
    let harness = Harness::new();
    let instance = unique_instance("flood");
    let plan = plan(&instance, "run-1", vec![step("flood", &[], Action::Run(container(&["seq", "1", "300000"])))]);
    let _cleanup = Cleanup(&harness, plan.clone());
    let (outcome, events) = harness.apply(plan, vec![]);
    assert_eq!(outcome, Outcome::Succeeded);
    let lines = logs(&events, "flood");
    assert_eq!(
        lines.len(),
        300_000,
        "first missing line: {:?}",
        lines.iter().enumerate().find(|(index, line)| **line != (index + 1).to_string())
    );
    assert!(lines.iter().enumerate().all(|(index, line)| *line == (index + 1).to_string()), "lines arrive in order");
}

#[test]
fn a_failing_run_step_reports_exit_code_and_log_tail() {
    let harness = Harness::new();
    let instance = unique_instance("fail");
    let script = "for i in $(seq 1 30); do echo line-$i; done; echo token=s3cr3t-value; exit 7";
    let mut failing = container(&["sh", "-c", script]);
    failing.env = vec![EnvVar { name: "TOKEN".into(), value: EnvValue::Secret(pmesh_proto::pattern::Secret::new("s3cr3t-value")) }];
    let plan = plan(
        &instance,
        "run-1",
        vec![step("boom", &[], Action::Run(failing)), step("after", &["boom"], Action::Run(container(&["true"])))],
    );
    let _cleanup = Cleanup(&harness, plan.clone());
    let (outcome, events) = harness.apply(plan, vec!["s3cr3t-value".into()]);
    assert_eq!(outcome, Outcome::Failed);
    let (reason, exit_code, tail) = failed(&events, "boom").expect("boom failed");
    assert_eq!(exit_code, Some(7));
    assert_eq!(reason, "exited with code 7");
    assert_eq!(tail.len(), 20);
    assert_eq!(tail[0], "line-12");
    assert_eq!(tail[19], "token=<redacted>", "secrets never reach an event");
    assert!(!format!("{events:?}").contains("s3cr3t-value"));
    assert!(events.iter().any(|event| matches!(&event.kind, EventKind::StepSkipped { step, .. } if step == "after")));
}

#[test]
fn a_step_past_its_timeout_is_stopped() {
    let harness = Harness::new();
    let instance = unique_instance("timeout");
    let mut slow = step("slow", &[], Action::Run(container(&["sleep", "300"])));
    slow.timeout = Some(Duration::from_secs(2));
    let plan = plan(&instance, "run-1", vec![slow]);
    let _cleanup = Cleanup(&harness, plan.clone());
    let started = std::time::Instant::now();
    let (outcome, events) = harness.apply(plan, vec![]);
    assert_eq!(outcome, Outcome::Failed);
    let (reason, _, _) = failed(&events, "slow").expect("slow failed");
    assert_eq!(reason, "timed out after 2s");
    assert!(started.elapsed() < Duration::from_secs(60), "the step did not run to its end");
    assert!(!is_running(&format!("pmesh-{instance}-slow")), "the container was stopped");
}

#[test]
fn cancel_stops_every_container_of_the_run() {
    let harness = Harness::new();
    let instance = unique_instance("cancel");
    let plan = plan(
        &instance,
        "run-1",
        vec![
            step("svc", &[], Action::Service(container(&["sleep", "300"]))),
            step("long", &["svc"], Action::Run(container(&["sleep", "300"]))),
        ],
    );
    let _cleanup = Cleanup(&harness, plan.clone());
    let (outcome, events) = harness.apply_with(plan, vec![], |event, cancel| {
        if matches!(&event.kind, EventKind::StepStarted { step, .. } if step == "long") {
            cancel.cancel();
        }
    });
    assert_eq!(outcome, Outcome::Cancelled, "{events:#?}");
    for name in ["svc", "long"] {
        assert!(!is_running(&format!("pmesh-{instance}-{name}")), "{name} was stopped");
    }
}

#[test]
fn a_retried_step_succeeds_on_its_second_attempt() {
    let harness = Harness::new();
    let instance = unique_instance("retry");
    let state = tempfile::tempdir().expect("temp dir");
    let mut flaky = container(&["sh", "-c", "if [ -f /state/once ]; then echo second; exit 0; fi; touch /state/once; echo first; exit 3"]);
    flaky.mounts = vec![MountSpec { source: MountSource::Host(state.path().to_path_buf()), target: "/state".into(), read_only: false }];
    let mut flaky_step = step("flaky", &[], Action::Run(flaky));
    flaky_step.retries = RetryPolicy { attempts: 3, backoff: Duration::from_millis(200) };
    let plan = plan(&instance, "run-1", vec![flaky_step]);
    let _cleanup = Cleanup(&harness, plan.clone());
    let (outcome, events) = harness.apply(plan, vec![]);
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    let attempts: Vec<u32> = events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::StepStarted { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2]);
    assert!(events.iter().any(|event| matches!(&event.kind, EventKind::StepRetrying { reason, .. } if reason == "exited with code 3")));
}

#[test]
fn applying_again_converges_and_destroy_removes_only_the_instance() {
    let harness = Harness::new();
    let instance = unique_instance("converge");
    let build = |value: &str| {
        let mut first = container(&["sleep", "300"]);
        first.env = vec![EnvVar { name: "VALUE".into(), value: EnvValue::Plain(value.into()) }];
        plan(
            &instance,
            "run-x",
            vec![
                step("changing", &[], Action::Service(first)),
                step("steady", &[], Action::Service(container(&["sleep", "301"]))),
                step("once", &[], Action::Run(container(&["true"]))),
            ],
        )
    };
    let _cleanup = Cleanup(&harness, build("a"));
    let id_of = |name: &str| docker(&["inspect", "-f", "{{.Id}}", &format!("pmesh-{instance}-{name}")]);
    let bystander = format!("bystander-{instance}");
    docker(&["run", "-d", "--rm", "--name", &bystander, TOOLS_IMAGE, "sleep", "300"]);

    assert_eq!(harness.apply(build("a"), vec![]).0, Outcome::Succeeded);
    let before: Vec<String> = ["changing", "steady", "once"].iter().map(|name| id_of(name)).collect();

    let (outcome, events) = harness.apply(build("a"), vec![]);
    assert_eq!(outcome, Outcome::Succeeded);
    let unchanged = events.iter().filter(|event| matches!(event.kind, EventKind::StepUnchanged { .. })).count();
    assert_eq!(unchanged, 3, "same inputs change nothing: {events:#?}");
    let again: Vec<String> = ["changing", "steady", "once"].iter().map(|name| id_of(name)).collect();
    assert_eq!(again, before);

    assert_eq!(harness.apply(build("b"), vec![]).0, Outcome::Succeeded);
    assert_ne!(id_of("changing"), before[0], "the changed service was replaced");
    assert_eq!(id_of("steady"), before[1], "the unchanged service was left alone");
    assert_eq!(id_of("once"), before[2], "the finished run step was not run again");

    let removed = harness.destroy(&build("b"));
    assert!(removed.contains(&format!("pmesh-{instance}")), "the network is removed: {removed:?}");
    assert!(containers_with_label("io.pmesh.instance", &instance).is_empty());
    assert!(is_running(&bystander), "a container without pmesh labels is untouched");
    docker(&["rm", "-f", &bystander]);
}

/// A build of the Dockerfile alone in `context`.
fn build_spec(context: &std::path::Path, tag: &str) -> BuildSpec {
    BuildSpec {
        name: "tools".into(),
        files: vec![("Dockerfile".into(), context.join("Dockerfile"))],
        dockerfile: "Dockerfile".into(),
        artifacts: Vec::new(),
        args: Default::default(),
        tag: tag.to_owned(),
    }
}

/// Images by `docker load` from a tarball and by a build from a context folder, both from the
/// local tool image (nothing is pulled).
#[test]
fn images_load_from_a_tarball_and_build_from_a_context() {
    use pmesh_agent::executor::contract::Driver;
    use pmesh_agent::executor::events::ImageAction;
    let harness = Harness::new();
    let suffix = unique_instance("img");
    let work = tempfile::tempdir().expect("temp dir");

    let loaded_tag = format!("pmesh-test/loaded:{suffix}");
    docker(&["tag", TOOLS_IMAGE, &loaded_tag]);
    let tarball = work.path().join("image.tar");
    docker(&["save", "-o", tarball.to_str().expect("utf-8"), &loaded_tag]);
    docker(&["rmi", &loaded_tag]);
    let load = ImageSource::Load { tarball, tag: loaded_tag.clone() };
    assert_eq!(harness.runtime.block_on(harness.driver.ensure_image(&load)).expect("load"), ImageAction::Loaded);
    assert_eq!(harness.runtime.block_on(harness.driver.ensure_image(&load)).expect("again"), ImageAction::Present);
    docker(&["rmi", &loaded_tag]);

    let context = work.path().join("context");
    std::fs::create_dir(&context).expect("context dir");
    std::fs::write(context.join("Dockerfile"), format!("FROM {TOOLS_IMAGE}\nRUN echo built-by-pmesh > /built\n")).expect("Dockerfile");
    let built_tag = format!("pmesh-test/built:{suffix}");
    let build = ImageSource::Build(build_spec(&context, &built_tag));
    assert_eq!(harness.runtime.block_on(harness.driver.ensure_image(&build)).expect("build"), ImageAction::Built);
    assert_eq!(docker(&["run", "--rm", &built_tag, "cat", "/built"]), "built-by-pmesh");
    docker(&["rmi", &built_tag]);

    let broken = work.path().join("broken");
    std::fs::create_dir(&broken).expect("dir");
    std::fs::write(broken.join("Dockerfile"), format!("FROM {TOOLS_IMAGE}\nRUN exit 9\n")).expect("Dockerfile");
    let failing = ImageSource::Build(build_spec(&broken, &format!("pmesh-test/broken:{suffix}")));
    let err = harness.runtime.block_on(harness.driver.ensure_image(&failing)).expect_err("a failing build fails");
    assert!(format!("{err:#}").contains("returned a non-zero code: 9"), "{err:#}");
}
