//! Unit tests of the compiler: image rewrites, registries, and how artifacts are planned.

use super::*;

#[test]
fn image_rewrites_take_the_longest_prefix() {
    let rewrites = BTreeMap::from([
        ("docker.io/".to_string(), "mirror.lab/".to_string()),
        ("internetsystemsconsortium/bind9:9.18".to_string(), "pmesh-test/tools:bookworm-1".to_string()),
    ]);
    assert_eq!(rewrite_image("internetsystemsconsortium/bind9:9.18", &rewrites), "pmesh-test/tools:bookworm-1");
    assert_eq!(rewrite_image("docker.io/library/alpine:3", &rewrites), "mirror.lab/library/alpine:3");
    assert_eq!(rewrite_image("quay.io/x:1", &rewrites), "quay.io/x:1");
}

/// Artifacts: URL placeholders (a secret among them) substituted, the auth secret taken,
/// mounts read-only from the cache path, and kept past the run only when a service
/// mounts them.
#[test]
fn artifacts_are_planned_with_their_sources_and_kept_for_services() {
    let yaml = r#"
apiVersion: pmesh/v1
kind: Pattern
metadata: {name: two, version: 1.0.0, description: d, category: basic-tool}
params:
  token: {type: secret, required: true, description: t}
artifacts:
  iso:
    url: "https://depot.lab/iso?token=${token}"
    sha256: 1111111111111111111111111111111111111111111111111111111111111111
    size: 10
    auth: token
  tools:
    urls: ["https://a.lab/t.tar", "https://b.lab/t.tar"]
    sha256: 2222222222222222222222222222222222222222222222222222222222222222
    size: 20
images:
  base: {ref: "debian:12"}
steps:
  serve:
    kind: service
    image: base
    command: [sleep, infinity]
    mounts: [{artifact: iso, target: /iso}]
  once:
    kind: run
    image: base
    command: ["true"]
    mounts: [{artifact: tools, target: /tools}]
"#;
    let files = BTreeMap::from([("pattern.yaml".to_owned(), yaml.as_bytes().to_vec())]);
    let pattern = pattern::parse(&files).expect("the pattern parses");
    let supplied = pattern::values_from_yaml("values", "token: s3cr3t-token").expect("values");
    let params = pattern::validate_values(&pattern, &supplied).expect("valid values");
    let cache = |sha: &str| PathBuf::from(format!("/cache/sha256/{sha}"));
    let artifact_paths = BTreeMap::from([("iso".to_owned(), cache("1111")), ("tools".to_owned(), cache("2222"))]);
    let images = ImageConfig::default();
    let inputs = Inputs {
        files: &files,
        params: &params,
        instance: "lab",
        agent: "pc-1",
        run_id: "r1",
        work_dir: Path::new("/data/instances/lab"),
        images: &images,
        artifacts: &artifact_paths,
        max_parallel: 4,
        facts: &facts(),
    };
    let compiled = compile(&pattern, &inputs).expect("it compiles");
    let planned: BTreeMap<&str, &PlannedArtifact> =
        compiled.plan.artifacts.iter().map(|artifact| (artifact.name.as_str(), artifact)).collect();
    assert_eq!(planned["iso"].urls, ["https://depot.lab/iso?token=s3cr3t-token"]);
    assert_eq!(planned["iso"].auth.as_ref().map(|secret| secret.expose().to_owned()).as_deref(), Some("s3cr3t-token"));
    assert_eq!(planned["iso"].retain_for.as_deref(), Some("pc-1-lab"), "a service mounts it");
    assert_eq!(planned["tools"].urls, ["https://a.lab/t.tar", "https://b.lab/t.tar"]);
    assert_eq!((planned["tools"].auth.is_none(), planned["tools"].retain_for.is_none()), (true, true));
    assert!(compiled.secrets.contains(&"s3cr3t-token".to_owned()), "the URL's token is redacted from events");
    let serve = compiled.plan.steps.iter().find(|step| step.name == "serve").expect("serve");
    let Action::Service(spec) = &serve.action else { panic!("serve is a service") };
    assert!(
        spec.mounts.iter().any(|mount| mount.source == MountSource::Host(cache("1111")) && mount.read_only && mount.target == "/iso"),
        "{:?}",
        spec.mounts
    );
}

#[test]
fn registries() {
    assert_eq!(registry_of("registry.lab:5000/x/y:1"), "registry.lab:5000");
    assert_eq!(registry_of("localhost/x"), "localhost");
    assert_eq!(registry_of("library/alpine"), "docker.io");
    assert_eq!(registry_of("alpine"), "docker.io");
}

/// A template rendered with a secret is written 0600, where no other user of the host reads
/// it; the rest stay 0644 for containers running as other users.
#[test]
fn files_holding_a_secret_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let yaml = r#"
apiVersion: pmesh/v1
kind: Pattern
metadata: {name: files, version: 1.0.0, category: shared-service}
params:
  password: {type: secret, required: true}
  greeting: {type: string, default: hello}
images:
  base: {ref: "debian:12"}
files:
  - {path: secret.j2, template: true, dest: secret}
  - {path: plain.j2, template: true, dest: plain}
  - {path: copied.txt}
steps:
  serve:
    kind: service
    image: base
    mounts:
      - {file: secret, target: /secret, readonly: true}
      - {file: plain, target: /plain, readonly: true}
      - {file: copied.txt, target: /copied, readonly: true}
"#;
    let files = BTreeMap::from([
        ("pattern.yaml".to_owned(), yaml.as_bytes().to_vec()),
        ("secret.j2".to_owned(), b"pw={{ password }}\n".to_vec()),
        ("plain.j2".to_owned(), b"{{ greeting }}\n".to_vec()),
        ("copied.txt".to_owned(), b"as is\n".to_vec()),
    ]);
    let pattern = pattern::parse(&files).expect("the pattern parses");
    let supplied = pattern::values_from_yaml("values", "password: hunter2-secret").expect("values");
    let params = pattern::validate_values(&pattern, &supplied).expect("valid values");
    let work_dir = tempfile::tempdir().expect("temp dir");
    let images = ImageConfig::default();
    let artifacts = BTreeMap::new();
    let inputs = Inputs {
        files: &files,
        params: &params,
        instance: "lab",
        agent: "",
        run_id: "r1",
        work_dir: work_dir.path(),
        images: &images,
        artifacts: &artifacts,
        max_parallel: 4,
        facts: &facts(),
    };
    let compiled = compile(&pattern, &inputs).expect("it compiles");
    compiled.materials.write().expect("written");
    let mode = |name: &str| {
        let path = work_dir.path().join("files").join(name);
        std::fs::metadata(&path).expect("written").permissions().mode() & 0o777
    };
    assert_eq!(std::fs::read_to_string(work_dir.path().join("files/secret")).expect("secret"), "pw=hunter2-secret\n");
    assert_eq!((mode("secret"), mode("plain"), mode("copied.txt")), (0o600, 0o644, 0o644));
}

fn facts() -> pattern::RunFacts {
    pattern::RunFacts { host_address: "10.0.0.5".to_owned(), host_name: "pc-1".to_owned(), ..Default::default() }
}

/// A repeated step becomes one step per item, named `STEP[ITEM]`, with `${item}` and
/// `${index}` substituted and the group's bound; `needs` naming it need every repetition; a
/// count makes `STEP[1]`…; an item that cannot name a step is refused.
#[test]
fn repeated_steps_expand_into_one_step_per_item() {
    let yaml = r#"
apiVersion: pmesh/v1
kind: Pattern
metadata: {name: rep, version: 1.0.0, category: workload-domain}
params:
  hosts: {type: list, default: [esxi-01, esxi-02, esxi-03]}
  disks: {type: integer, default: 2}
images:
  base: {ref: "debian:12"}
steps:
  deploy:
    kind: run
    image: base
    command: [deploy, "${item}", "${index}"]
    env: {HOST: "${item}", OWNER: "${pmesh_agent}/${pmesh_instance}"}
    repeat: {over: "${hosts}", parallel: 2}
  disk:
    kind: run
    image: base
    args: ["disk-${index}"]
    repeat: {count: "${disks}"}
    needs: [deploy]
  done:
    kind: run
    image: base
    needs: [disk]
"#;
    let files = BTreeMap::from([("pattern.yaml".to_owned(), yaml.as_bytes().to_vec())]);
    let pattern = pattern::parse(&files).expect("the pattern parses");
    let compile_with = |values: &str| {
        let supplied = pattern::values_from_yaml("values", values).expect("values");
        let params = pattern::validate_values(&pattern, &supplied).expect("valid values");
        let (images, artifacts) = (ImageConfig::default(), BTreeMap::new());
        let inputs = Inputs {
            files: &files,
            params: &params,
            instance: "lab",
            agent: "pc-1",
            run_id: "r1",
            work_dir: Path::new("/data/instances/lab"),
            images: &images,
            artifacts: &artifacts,
            max_parallel: 4,
            facts: &facts(),
        };
        compile(&pattern, &inputs)
    };
    let plan = compile_with("{}").expect("it compiles").plan;
    let names: Vec<&str> = plan.steps.iter().map(|step| step.name.as_str()).collect();
    assert_eq!(names, ["deploy[esxi-01]", "deploy[esxi-02]", "deploy[esxi-03]", "disk[1]", "disk[2]", "done"]);
    let step = |name: &str| plan.steps.iter().find(|step| step.name == name).expect(name);
    let Action::Run(spec) = &step("deploy[esxi-02]").action else { panic!("a run step") };
    assert_eq!(spec.entrypoint.as_deref(), Some(&["deploy".to_owned(), "esxi-02".to_owned(), "2".to_owned()][..]));
    assert_eq!(spec.env[0].name, "HOST");
    assert!(matches!(&spec.env[0].value, EnvValue::Plain(value) if value == "esxi-02"));
    assert!(matches!(&spec.env[1].value, EnvValue::Plain(value) if value == "pc-1/lab"), "the run's own placeholders");
    assert_eq!(step("deploy[esxi-03]").group, Some(crate::executor::plan::Group { step: "deploy".to_owned(), parallel: 2 }));
    assert_eq!(step("disk[1]").needs, ["deploy[esxi-01]", "deploy[esxi-02]", "deploy[esxi-03]"]);
    assert_eq!(step("done").needs, ["disk[1]", "disk[2]"]);
    let Action::Run(disk) = &step("disk[2]").action else { panic!("a run step") };
    assert_eq!(disk.command, ["disk-2"]);
    assert_eq!(compile_with("disks: 0").expect("no disks").plan.steps.len(), 4, "a count of 0 repeats nothing");
    let refused = compile_with("hosts: [esxi-01, \"bad name\"]").err().expect("a space cannot name a step");
    assert!(refused.to_string().contains("item `bad name` cannot name a repetition"), "{refused}");
    let twice = compile_with("hosts: [a, a]").err().expect("one name, two repetitions");
    assert!(twice.to_string().contains("item `a` is listed twice"), "{twice}");
}
