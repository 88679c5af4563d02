//! The catalog's `workload/nested-esxi` pattern against vcsim (the govmomi simulator, from
//! Debian's source), deployed with the govc image through `pmesh-agent pattern apply`: three
//! hosts from a stub OVA (a real ProductSection, an empty disk) exist with their OVF
//! properties, CPU, memory, power state and the instance's marks; a re-run creates nothing; a
//! fourth host adds only that one; destroy removes exactly the instance's VMs (one imported
//! by hand into the same folder survives). The test plays the hosts' guests: once a VM of the
//! instance is powered on, it sets the address the VM was given (`SET.guest.ipAddress`, how
//! vcsim fakes a guest's report), so readiness is really waited for. Neither password is in
//! any output, container log or process command line (a watcher samples `ps` throughout).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pmesh_tests::docker::{containers_with_label, docker_output, Instance};
use pmesh_tests::http::{Behaviour, FileServer};
use pmesh_tests::vcsim::{stub_ova, Vcsim, GOVC_IMAGE, VCSIM_USER};
use pmesh_tests::{bin, Run};

fn catalog_pattern() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/workload/nested-esxi")
}

/// A copy of the pattern whose artifact is the stub OVA (its sha256 and size), as a user puts
/// their download's into it.
fn pattern_for(ova: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join("nested-esxi");
    let copied = Command::new("cp").arg("-r").arg(catalog_pattern()).arg(&copy).status().expect("cp");
    assert!(copied.success());
    let sum = Command::new("sha256sum").arg(ova).output().expect("sha256sum");
    let sha256 = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().expect("a sum").to_owned();
    let size = std::fs::metadata(ova).expect("the OVA").len();
    let yaml_path = copy.join("pattern.yaml");
    let yaml = std::fs::read_to_string(&yaml_path).expect("pattern.yaml");
    let yaml = yaml.replace(&"0".repeat(64), &sha256).replace("    size: 1\n", &format!("    size: {size}\n"));
    std::fs::write(&yaml_path, yaml).expect("pattern.yaml");
    copy
}

struct Lab {
    dir: tempfile::TempDir,
    pattern: PathBuf,
    instance: Instance,
    vcsim: Vcsim,
    values_file: PathBuf,
    esxi_password: String,
    ova: PathBuf,
    _server: FileServer,
}

impl Lab {
    fn start() -> anyhow::Result<Lab> {
        let dir = tempfile::tempdir()?;
        let instance = Instance::new("esxi");
        // A local apply's scope is the instance: its containers join `pmesh-INSTANCE`.
        let vcsim = Vcsim::start(&format!("pmesh-{}", instance.0))?;
        let ova = stub_ova(dir.path())?;
        let server = FileServer::start(Arc::new(std::fs::read(&ova)?), Behaviour::default());
        let pattern = pattern_for(&ova, dir.path());
        let esxi_password = format!("Esxi-{}!", vcsim.password);
        let values_file = dir.path().join("secrets.yaml");
        std::fs::write(
            &values_file,
            format!("password: {}\nesxi_password: \"{esxi_password}\"\nova_url: {}\n", vcsim.password, server.url()),
        )?;
        Ok(Lab { dir, pattern, instance, vcsim, values_file, esxi_password, ova, _server: server })
    }

    fn agent(&self, verb: &str, hosts: &str) -> Run {
        let values = [
            format!("url={}", self.vcsim.url()),
            format!("username={VCSIM_USER}"),
            format!("thumbprint={}", self.vcsim.thumbprint),
            format!("govc_image={GOVC_IMAGE}"),
            format!("hosts={hosts}"),
            "first_ip=10.0.0.11".to_owned(),
            "gateway=10.0.0.1".to_owned(),
            "dns=10.0.0.2".to_owned(),
            "domain=lab.local".to_owned(),
            "memory_gb=8".to_owned(),
            "ready_minutes=5".to_owned(),
        ];
        let mut command = Command::new(bin("pmesh-agent"));
        command.args(["--data-dir", self.dir.path().join("agent").to_str().expect("utf-8"), "pattern", verb]);
        command.args(["--instance", &self.instance.0, "-f", self.values_file.to_str().expect("utf-8")]);
        for value in &values {
            command.args(["-p", value]);
        }
        command.arg(&self.pattern).output().expect("running pmesh-agent").into()
    }

    fn secrets(&self) -> [&str; 2] {
        [&self.vcsim.password, &self.esxi_password]
    }

    /// The VMs' UUIDs by name, for the hosts of this test (`esxi-*`).
    fn uuids(&self) -> BTreeMap<String, String> {
        let paths = self.vcsim.vms("esxi-*");
        paths
            .iter()
            .map(|path| {
                let vm = self.vcsim.vm_json(path);
                (vm["Name"].as_str().unwrap_or("").to_owned(), vm["Config"]["Uuid"].as_str().unwrap_or("").to_owned())
            })
            .collect()
    }
}

/// Plays the guests: every VM of `instance` that is powered on and reports no address yet is
/// given the one its OVF properties name, until `stop`.
fn guests(vcsim_network: String, pin: Vec<String>, instance: String, stop: Arc<AtomicBool>, vcsim: &Vcsim) -> impl FnOnce() + Send {
    let url = vcsim.url();
    let password = vcsim.password.clone();
    move || {
        let govc = |args: &[&str]| {
            let mut command = Command::new("docker");
            command.args(["run", "--rm", "--network", &vcsim_network]);
            for mount in &pin {
                command.args(["-v", mount]);
            }
            command.args([
                "-e",
                "GOVC_URL",
                "-e",
                "GOVC_USERNAME",
                "-e",
                "GOVC_PASSWORD",
                "-e",
                "GOVC_TLS_KNOWN_HOSTS",
                GOVC_IMAGE,
                "govc",
            ]);
            command.args(args).env("GOVC_URL", &url).env("GOVC_USERNAME", VCSIM_USER).env("GOVC_PASSWORD", &password);
            command.env("GOVC_TLS_KNOWN_HOSTS", "/pin/known_hosts");
            command.output().map(|out| String::from_utf8_lossy(&out.stdout).into_owned()).unwrap_or_default()
        };
        while !stop.load(Ordering::SeqCst) {
            let paths: Vec<String> = govc(&["find", "/", "-type", "m", "-name", "esxi-*"]).lines().map(str::to_owned).collect();
            if paths.is_empty() {
                continue;
            }
            let mut args = vec!["vm.info", "-json"];
            args.extend(paths.iter().map(String::as_str));
            let Ok(info) = serde_json::from_str::<serde_json::Value>(&govc(&args)) else { continue };
            for vm in info["VirtualMachines"].as_array().into_iter().flatten() {
                let extra = |key: &str| {
                    vm["Config"]["ExtraConfig"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|option| option["Key"] == key)
                        .map(|option| option["Value"].clone())
                };
                let ours = extra("pmesh.instance").is_some_and(|value| value == instance.as_str());
                let on = vm["Runtime"]["PowerState"] == "poweredOn";
                let reported = vm["Guest"]["IpAddress"].as_str().is_some_and(|ip| !ip.is_empty());
                if let (true, true, false, Some(address)) = (ours, on, reported, extra("guestinfo.ipaddress")) {
                    let name = vm["Name"].as_str().unwrap_or_default().to_owned();
                    govc(&["vm.change", "-vm", &name, "-e", &format!("SET.guest.ipAddress={}", address.as_str().unwrap_or(""))]);
                }
            }
        }
    }
}

/// Samples every process's command line until `stop`; the lines holding a secret.
fn watch_ps(secrets: Vec<String>, stop: Arc<AtomicBool>, seen: Arc<Mutex<Vec<String>>>, samples: Arc<Mutex<u64>>) -> impl FnOnce() + Send {
    move || {
        while !stop.load(Ordering::SeqCst) {
            let out = Command::new("ps").args(["-eo", "args"]).output().expect("ps");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            for line in text.lines() {
                if secrets.iter().any(|secret| line.contains(secret.as_str())) {
                    seen.lock().expect("not poisoned").push(line.to_owned());
                }
            }
            *samples.lock().expect("not poisoned") += 1;
        }
    }
}

fn assert_clean(run: &Run, secrets: &[&str], what: &str) {
    for secret in secrets {
        assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "{what}: a password is in the output");
    }
}

#[test]
fn three_hosts_deploy_converge_grow_to_four_and_destroy_only_their_own() -> anyhow::Result<()> {
    let lab = Lab::start()?;
    let stop = Arc::new(AtomicBool::new(false));
    let pin = vec![format!("{}:/pin:ro", lab.dir.path().join("pin").display())];
    std::fs::create_dir_all(lab.dir.path().join("pin"))?;
    std::fs::write(lab.dir.path().join("pin/known_hosts"), format!("vcsim {}\n", lab.vcsim.thumbprint))?;
    let guest = std::thread::spawn(guests(lab.vcsim.network.name.clone(), pin, lab.instance.0.clone(), stop.clone(), &lab.vcsim));
    let (seen, samples) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(0u64)));
    let secrets: Vec<String> = lab.secrets().iter().map(|secret| (*secret).to_owned()).collect();
    let watcher = std::thread::spawn(watch_ps(secrets, stop.clone(), seen.clone(), samples.clone()));

    // A VM made by hand in the same folder, from the same OVA: it carries no marks.
    let ova_dir = format!("{}:/ova:ro", lab.ova.parent().expect("a dir").display());
    let handmade = lab.vcsim.govc_with(&[ova_dir], &["import.ova", "-name", "esxi-handmade", "/ova/nested-esxi.ova"]);
    assert!(handmade.status.success(), "{}", String::from_utf8_lossy(&handmade.stderr));

    let first = lab.agent("apply", "esxi-01,esxi-02,esxi-03");
    assert_eq!(first.code, 0, "{}\n{}\n{}", first.stdout, first.stderr, lab.vcsim.logs());
    assert_clean(&first, &lab.secrets(), "apply");
    for host in ["esxi-01", "esxi-02", "esxi-03"] {
        assert!(first.stdout.contains(&format!("deploy[{host}]")), "each host is its own step: {}", first.stdout);
    }
    assert!(first.stdout.contains("| esxi-02 esxi-02.lab.local 10.0.0.12"), "the inventory lists the hosts: {}", first.stdout);
    let uuids = lab.uuids();
    assert_eq!(uuids.keys().cloned().collect::<Vec<_>>(), ["esxi-01", "esxi-02", "esxi-03", "esxi-handmade"]);
    for (idx, host) in ["esxi-01", "esxi-02", "esxi-03"].iter().enumerate() {
        let vm = lab.vcsim.vm_json(host);
        assert_eq!(vm["Config"]["Hardware"]["NumCPU"], 4, "{host}");
        assert_eq!(vm["Config"]["Hardware"]["MemoryMB"], 8192, "{host}");
        assert_eq!(vm["Runtime"]["PowerState"], "poweredOn", "{host}");
        assert_eq!(vm["Guest"]["IpAddress"], format!("10.0.0.{}", 11 + idx), "{host} reported its address");
        let extra: BTreeMap<String, String> = lab.vcsim.extra_config(host).into_iter().collect();
        let expected = [
            ("guestinfo.hostname", format!("{host}.lab.local")),
            ("guestinfo.ipaddress", format!("10.0.0.{}", 11 + idx)),
            ("guestinfo.netmask", "255.255.255.0".to_owned()),
            ("guestinfo.gateway", "10.0.0.1".to_owned()),
            ("guestinfo.dns", "10.0.0.2".to_owned()),
            ("guestinfo.domain", "lab.local".to_owned()),
            ("guestinfo.ntp", "pool.ntp.org".to_owned()),
            ("guestinfo.ssh", "True".to_owned()),
            ("guestinfo.password", lab.esxi_password.clone()),
            ("pmesh.instance", lab.instance.0.clone()),
            ("pmesh.agent", String::new()),
        ];
        for (key, value) in expected {
            assert_eq!(extra.get(key), Some(&value), "{host}: {key}");
        }
    }
    let deploy_containers: Vec<String> =
        containers_with_label("io.pmesh.instance", &lab.instance.0).into_iter().filter(|name| name.contains("-deploy-")).collect();
    assert_eq!(deploy_containers.len(), 3, "{deploy_containers:?}");
    for container in &deploy_containers {
        let logs = docker_output(&["logs", container]);
        let text = format!("{}{}", String::from_utf8_lossy(&logs.stdout), String::from_utf8_lossy(&logs.stderr));
        assert!(lab.secrets().iter().all(|secret| !text.contains(secret)), "{container}'s log holds a password");
    }

    let again = lab.agent("apply", "esxi-01,esxi-02,esxi-03");
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_clean(&again, &lab.secrets(), "re-run");
    assert_eq!(lab.uuids(), uuids, "a re-run creates nothing");
    assert!(!again.stdout.contains(": deploying"), "{}", again.stdout);

    let grown = lab.agent("apply", "esxi-01,esxi-02,esxi-03,esxi-04");
    assert_eq!(grown.code, 0, "{}\n{}", grown.stdout, grown.stderr);
    assert_clean(&grown, &lab.secrets(), "grow");
    let grown_uuids = lab.uuids();
    assert_eq!(grown_uuids.len(), 5, "{grown_uuids:?}");
    assert!(uuids.iter().all(|(name, uuid)| grown_uuids.get(name) == Some(uuid)), "the first three are the same VMs");
    assert_eq!(grown.stdout.matches(": deploying").count(), 1, "only esxi-04 is deployed: {}", grown.stdout);

    let destroyed = lab.agent("destroy", "esxi-01,esxi-02,esxi-03,esxi-04");
    assert_eq!(destroyed.code, 0, "{}\n{}", destroyed.stdout, destroyed.stderr);
    assert_clean(&destroyed, &lab.secrets(), "destroy");
    assert_eq!(lab.vcsim.vms("esxi-*"), ["/DC0/vm/esxi-handmade"], "only the hand-made VM is left");
    assert!(containers_with_label("io.pmesh.instance", &lab.instance.0).is_empty());

    stop.store(true, Ordering::SeqCst);
    guest.join().expect("the guest thread");
    watcher.join().expect("the watcher");
    assert!(*samples.lock().expect("not poisoned") > 10, "ps was sampled throughout");
    let seen = seen.lock().expect("not poisoned");
    assert!(seen.is_empty(), "a password was on a command line: {} line(s)", seen.len());
    Ok(())
}
