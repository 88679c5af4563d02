//! Images built on the agent: the build as the step `image:NAME`, its output and `Step N/M`
//! progress, no build when the tag is present, and a failed build failing the run with its
//! last lines.

use super::*;
use crate::executor::events::ImageAction;
use crate::executor::plan::{BuildSpec, ImageSource};

fn build(tag: &str) -> ImageSource {
    ImageSource::Build(BuildSpec {
        name: "ovftool".into(),
        files: vec![("Dockerfile".into(), "/work/pattern/image/Dockerfile".into())],
        dockerfile: "Dockerfile".into(),
        artifacts: vec![("ovftool-download".into(), "/cache/sha256/aa".into())],
        args: Default::default(),
        tag: tag.into(),
    })
}

fn progress(step: &str, percent: f32) -> EventKind {
    EventKind::Progress { step: step.into(), percent }
}

#[tokio::test(start_paused = true)]
async fn a_build_is_a_step_with_its_output_and_progress_and_a_present_tag_is_not_built_again() {
    let driver = FakeDriver::new();
    driver.build("pmesh/ovftool-ovftool:1", &["Step 1/2 : FROM base", "Step 2/2 : RUN sh install.sh", "installed"], None);
    let mut planned = plan(vec![run("smoke", &[])]);
    planned.images = vec![build("pmesh/ovftool-ovftool:1")];
    let (outcome, events) = apply(&driver, planned.clone()).await;
    assert_eq!(outcome, Outcome::Succeeded);
    let step = "image:ovftool";
    assert_eq!(
        of_step(&events, step),
        [
            started(step, 1),
            log(step, "Step 1/2 : FROM base"),
            progress(step, 0.0),
            log(step, "Step 2/2 : RUN sh install.sh"),
            progress(step, 50.0),
            log(step, "installed"),
            succeeded(step, None),
        ]
    );
    let ready = EventKind::ImageReady { reference: "pmesh/ovftool-ovftool:1".into(), action: ImageAction::Built };
    let at = |wanted: &EventKind| events.iter().position(|event| event == wanted).expect("reported");
    assert!(at(&ready) < at(&started("smoke", 1)), "the image is ready before the step that runs it: {events:?}");

    let (outcome, events) = apply(&driver, planned).await;
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(of_step(&events, step), [], "nothing to build");
    assert!(events.contains(&EventKind::ImageReady { reference: "pmesh/ovftool-ovftool:1".into(), action: ImageAction::Present }));
    let builds = driver.calls().into_iter().filter(|call| matches!(call, Call::BuildImage(_))).count();
    assert_eq!(builds, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_build_fails_the_run_with_its_last_lines_and_runs_no_step() {
    let driver = FakeDriver::new();
    let lines = ["Step 2/3 : RUN sh install.sh", "install.sh: unzip: not found"];
    driver.build("pmesh/ovftool-ovftool:2", &lines, Some("The command '/bin/sh -c sh install.sh' returned a non-zero code: 127"));
    let mut planned = plan(vec![run("smoke", &[])]);
    planned.images = vec![build("pmesh/ovftool-ovftool:2")];
    let (outcome, events) = apply(&driver, planned).await;
    assert_eq!(outcome, Outcome::Failed);
    let reason = "building pmesh/ovftool-ovftool:2 failed: The command '/bin/sh -c sh install.sh' returned a non-zero code: 127";
    assert_eq!(of_step(&events, "image:ovftool").last(), Some(&failed("image:ovftool", reason, None, &lines)));
    assert_eq!(of_step(&events, "smoke"), [], "no step runs without its image");
    assert!(creates(&driver).is_empty());
}
