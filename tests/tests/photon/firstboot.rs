//! The first-boot script (`photon/firstboot/pmesh-firstboot.sh`) in a sandbox: it configures
//! the network, opens the firewall once, joins with the token in the environment only, retries
//! an unreachable master, names missing properties, and runs once; its unit verifies, and
//! `install-appliance.sh` lays out the payload the units expect.

use std::process::Command;

use pmesh_tests::Run;

use crate::common::{ip4save_with_rule, mode, photon, read};
use crate::sandbox::Sandbox;

const TOKEN: &str = "pmt_TESTTOKEN0123456789abcdef";
const FINGERPRINT: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn sample_ovfenv() -> String {
    read(&photon().join("firstboot/testdata/ovfenv-static.xml"))
}

fn join_argv(sandbox: &Sandbox, n: usize) -> Vec<String> {
    sandbox.log(&format!("join-{n}.argv")).lines().map(str::to_owned).collect()
}

fn assert_no_token(run: &Run) {
    assert!(!run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN), "the token was printed: {run:?}");
}

#[test]
fn first_boot_joins_with_the_token_in_the_environment_only_then_runs_no_more() {
    let sandbox = Sandbox::new();
    sandbox.set_ovfenv(&sample_ovfenv());
    let run = sandbox.first_boot(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_no_token(&run);

    // VMware Tools: vmtoolsd failed, vmware-rpctool answered, and the token was cleared.
    assert!(sandbox.log("vmtoolsd.log").contains("info-get guestinfo.ovfEnv"));
    let rpc = sandbox.log("vmware-rpctool.log");
    assert!(rpc.contains("info-get guestinfo.ovfEnv\n") && rpc.contains("info-set guestinfo.pmesh.token ''\n"), "{rpc}");

    // The static network, readable by systemd-networkd, applied live.
    let network = sandbox.root().join("etc/systemd/network/10-pmesh-static.network");
    assert_eq!(mode(&network), 0o644);
    let text = read(&network);
    for line in ["[Match]\nName=eth0\n", "Address=10.0.0.50/24\n", "Gateway=10.0.0.1\n", "DNS=10.0.0.2\nDNS=10.0.0.3\n"] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    assert_eq!(sandbox.log("networkctl.log"), "reload\nreconfigure eth0\n");

    // The join: every property on the command line except the token, which is in the env.
    assert_eq!(sandbox.n_joins(), 1);
    let data_dir = sandbox.root().join("var/lib/pmesh-agent");
    let expected = [
        "join",
        "--data-dir",
        data_dir.to_str().expect("utf-8"),
        "--master",
        "10.0.0.2:7443",
        "--ca-fingerprint",
        FINGERPRINT,
        "--name",
        "pc-1",
        "--advertise",
        "10.0.0.50:7444",
    ];
    assert_eq!(join_argv(&sandbox, 1), expected);
    assert!(!sandbox.log("join-1.argv").contains(TOKEN), "the token is on the command line");
    assert!(sandbox.log("join-1.env").lines().any(|line| line == format!("PMESH_JOIN_TOKEN={TOKEN}")));

    assert_eq!(read(&sandbox.ip4save()), ip4save_with_rule());
    assert_eq!(
        sandbox.log("systemctl.log"),
        "enable --now docker.service\nenable --now pmesh-agent.service\ndisable pmesh-firstboot.service\n"
    );
    assert!(sandbox.marker().exists());

    // The marker makes the second run a no-op: no command runs, no file changes.
    let logs_before: Vec<String> =
        ["systemctl.log", "iptables.log", "vmware-rpctool.log", "networkctl.log"].iter().map(|name| sandbox.log(name)).collect();
    let again = sandbox.first_boot(&[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("already done"), "{again:?}");
    let logs_after: Vec<String> =
        ["systemctl.log", "iptables.log", "vmware-rpctool.log", "networkctl.log"].iter().map(|name| sandbox.log(name)).collect();
    assert_eq!(logs_before, logs_after);
    assert_eq!(sandbox.n_joins(), 1);
    assert_eq!(read(&sandbox.ip4save()), ip4save_with_rule());
}

#[test]
fn first_boot_without_its_marker_finishes_without_joining_again() {
    let sandbox = Sandbox::new();
    sandbox.set_ovfenv(&sample_ovfenv());
    assert_eq!(sandbox.first_boot(&[]).code, 0);
    std::fs::remove_file(sandbox.marker()).expect("removing the marker");
    let run = sandbox.first_boot(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("already enrolled"), "{run:?}");
    assert_eq!(sandbox.n_joins(), 1, "joined twice");
    assert_eq!(read(&sandbox.ip4save()), ip4save_with_rule(), "the rule is persisted once");
    assert!(sandbox.marker().exists());
}

#[test]
fn a_refused_join_fails_with_its_code_and_leaves_no_marker() {
    let sandbox = Sandbox::new();
    sandbox.set_ovfenv(&sample_ovfenv());
    sandbox.set_join_codes(&[5]);
    let run = sandbox.first_boot(&[]);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("refused the join (exit 5)"), "{run:?}");
    assert_no_token(&run);
    assert!(!sandbox.marker().exists());
    assert!(!sandbox.log("systemctl.log").contains("pmesh-agent"), "the agent was started");
    assert!(!sandbox.log("vmware-rpctool.log").contains("info-set"), "the token was cleared before it was spent");

    // A new token as a plain guestinfo variable (as `govc vm.change -e` sets it on the running VM)
    // wins over the spent one in the OVF environment, and the retry succeeds.
    std::fs::write(sandbox.guestinfo().join("pmesh.token"), "pmt_SECONDTOKEN").expect("writing guestinfo");
    let retry = sandbox.first_boot(&[]);
    assert_eq!(retry.code, 0, "{retry:?}");
    assert!(sandbox.log("join-2.env").contains("PMESH_JOIN_TOKEN=pmt_SECONDTOKEN\n"));
    assert_eq!(read(&sandbox.guestinfo().join("pmesh.token")), "''", "the guestinfo token was not overwritten");
    assert!(sandbox.marker().exists());
}

#[test]
fn an_unreachable_master_is_retried_then_reported() {
    let sandbox = Sandbox::new();
    sandbox.set_ovfenv(&sample_ovfenv());
    sandbox.set_join_codes(&[4, 4, 0]);
    let run = sandbox.first_boot(&[("PMESH_FIRSTBOOT_JOIN_ATTEMPTS", "3")]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sandbox.n_joins(), 3);

    let sandbox = Sandbox::new();
    sandbox.set_ovfenv(&sample_ovfenv());
    sandbox.set_join_codes(&[4, 4, 4]);
    let run = sandbox.first_boot(&[("PMESH_FIRSTBOOT_JOIN_ATTEMPTS", "2")]);
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(sandbox.n_joins(), 2);
    assert!(run.stderr.contains("10.0.0.2:7443 is unreachable (exit 4)"), "{run:?}");
    assert!(!sandbox.marker().exists());
}

#[test]
fn missing_properties_are_named_and_nothing_is_done() {
    let sandbox = Sandbox::new();
    let without = sample_ovfenv()
        .lines()
        .filter(|line| !line.contains("pmesh.token") && !line.contains("pmesh.ca_fingerprint"))
        .collect::<Vec<_>>()
        .join("\n");
    sandbox.set_ovfenv(&without);
    let run = sandbox.first_boot(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("missing OVF properties: pmesh.token pmesh.ca_fingerprint"), "{run:?}");
    // Each missing key was also looked up as a plain guestinfo variable.
    assert!(sandbox.log("vmware-rpctool.log").contains("info-get guestinfo.pmesh.token\n"));
    assert_eq!(sandbox.n_joins(), 0);
    assert_eq!(sandbox.log("systemctl.log"), "");
    assert!(!sandbox.marker().exists());
}

#[test]
fn with_dhcp_the_advertised_address_is_the_one_towards_the_master() {
    let sandbox = Sandbox::new();
    // Through the test hook this time, and a master without a port.
    let fixture = sandbox.dir.path().join("dhcp.xml");
    let dhcp: String = sample_ovfenv()
        .lines()
        .filter(|line| !["pmesh.ip", "pmesh.netmask", "pmesh.gateway", "pmesh.dns"].iter().any(|key| line.contains(key)))
        .map(|line| format!("{}\n", line.replace("10.0.0.2:7443", "10.0.0.2")))
        .collect();
    std::fs::write(&fixture, dhcp).expect("writing");
    let command = format!("cat '{}'", fixture.display());
    let run = sandbox.first_boot(&[("PMESH_FIRSTBOOT_OVFENV_CMD", &command)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!sandbox.root().join("etc/systemd/network/10-pmesh-static.network").exists());
    assert_eq!(sandbox.log("networkctl.log"), "");
    assert_eq!(sandbox.log("ip.log"), "-4 -o route get 10.0.0.2\n");
    let argv = join_argv(&sandbox, 1);
    let after = |flag: &str| argv.iter().skip_while(|arg| *arg != flag).nth(1).cloned();
    assert_eq!(after("--master").as_deref(), Some("10.0.0.2:7443"));
    assert_eq!(after("--advertise").as_deref(), Some("10.0.0.77:7444"));
}

#[test]
fn the_parser_takes_attributes_in_any_order_and_decodes_entities() {
    let sandbox = Sandbox::new();
    sandbox.set_ovfenv(&format!(
        "<?xml version=\"1.0\"?>\n<Environment xmlns:oe=\"http://schemas.dmtf.org/ovf/environment/1\">\n\
         <PropertySection>\n<Property\n oe:value=\"master.lab&amp;x:7443\"\n oe:key=\"pmesh.master\"/>\
         <Property oe:key=\"pmesh.token\" oe:value=\"{TOKEN}\"/><Property oe:key=\"other.key\" oe:value=\"x\"/>\
         <Property oe:key=\"pmesh.name\" oe:value=\"&lt;pc&gt;&quot;&apos;\"/>\n</PropertySection>\n</Environment>\n"
    ));
    let run = sandbox.run(&photon().join("firstboot/pmesh-firstboot.sh"), &["--show-config"], &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_no_token(&run);
    for line in [
        "pmesh.master=master.lab&x:7443\n",
        &format!("pmesh.token=<redacted, {} characters>\n", TOKEN.len()),
        "pmesh.name=<pc>\"'\n",
        "pmesh.ca_fingerprint=\n",
    ] {
        assert!(run.stdout.contains(line), "{line:?} not in:\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("other.key"));
}

#[test]
fn the_first_boot_unit_verifies_and_runs_once() {
    let unit = read(&photon().join("firstboot/pmesh-firstboot.service"));
    for directive in [
        "Type=oneshot\n",
        "RemainAfterExit=yes\n",
        "After=vmtoolsd.service network-online.target\n",
        "Wants=network-online.target\n",
        "ConditionPathExists=!/var/lib/pmesh-agent/.firstboot-done\n",
        "ExecStart=/usr/local/libexec/pmesh/pmesh-firstboot.sh\n",
        "WantedBy=multi-user.target\n",
    ] {
        assert!(unit.contains(directive), "the unit lacks {directive:?}");
    }
    // The unit's condition and the script's marker are the same file.
    let script = read(&photon().join("firstboot/pmesh-firstboot.sh"));
    assert!(script.contains("data_dir=/var/lib/pmesh-agent\nmarker=\"$root$data_dir/.firstboot-done\""));

    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("pmesh-firstboot.service");
    let script_path = photon().join("firstboot/pmesh-firstboot.sh").canonicalize().expect("script path");
    std::fs::write(&copy, unit.replace("/usr/local/libexec/pmesh/pmesh-firstboot.sh", script_path.to_str().expect("utf-8")))
        .expect("writing the unit copy");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze is missing: install the systemd package (.ci/run does)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.trim().is_empty(), "{stderr}");
}

#[test]
fn install_appliance_lays_out_the_payload_the_units_expect() {
    let sandbox = Sandbox::new();
    let payload = sandbox.dir.path().join("payload");
    std::fs::create_dir_all(&payload).expect("mkdir");
    let repo = photon().join("..");
    for (from, name) in [
        ("systemd/pmesh-agent.service", "pmesh-agent.service"),
        ("systemd/pmesh.sysusers", "pmesh.sysusers"),
        ("photon/firstboot/pmesh-firstboot.sh", "pmesh-firstboot.sh"),
        ("photon/firstboot/pmesh-firstboot.service", "pmesh-firstboot.service"),
        ("photon/firewall/pmesh-firewall.sh", "pmesh-firewall.sh"),
    ] {
        std::fs::copy(repo.join(from), payload.join(name)).unwrap_or_else(|err| panic!("{from}: {err}"));
    }
    std::fs::write(payload.join("pmesh-agent"), "#!/bin/sh\n").expect("writing the agent");
    for _ in 0..2 {
        let run = sandbox.run(&photon().join("install-appliance.sh"), &[payload.to_str().expect("utf-8")], &[]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let root = sandbox.root();
    for (path, expected_mode) in [
        ("usr/local/bin/pmesh-agent", 0o755),
        ("usr/lib/sysusers.d/pmesh.conf", 0o644),
        ("etc/systemd/system/pmesh-agent.service", 0o644),
        ("etc/systemd/system/pmesh-firstboot.service", 0o644),
        ("usr/local/libexec/pmesh/pmesh-firstboot.sh", 0o755),
        // Beside the first-boot script, where it looks for it by default.
        ("usr/local/libexec/pmesh/pmesh-firewall.sh", 0o755),
        ("etc/systemd/system/docker.service.d/10-pmesh-after-iptables.conf", 0o644),
    ] {
        assert_eq!(mode(&root.join(path)), expected_mode, "{path}");
    }
    // Each unit's ExecStart is a file the payload installed.
    for unit in ["pmesh-agent.service", "pmesh-firstboot.service"] {
        let text = read(&root.join("etc/systemd/system").join(unit));
        let exec = text.lines().find_map(|line| line.strip_prefix("ExecStart=")).expect("ExecStart");
        let program = exec.split_whitespace().next().expect("program");
        assert!(root.join(program.trim_start_matches('/')).exists(), "{unit}: {program} is not installed");
    }
    let enable = format!("--root={} enable docker.service pmesh-firstboot.service\n", root.display());
    assert_eq!(sandbox.log("systemctl.log"), enable.repeat(2), "the agent is enabled only after its join");
    assert!(sandbox.log("systemd-sysusers.log").contains(&format!("--root={}", root.display())));
}
