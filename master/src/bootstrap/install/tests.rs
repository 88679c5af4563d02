//! The plan as data: facts in, the steps that change something out.

use super::*;
use crate::bootstrap::{Layout, LAYOUT};

const FRESH: &str = "os_ID=debian\nos_VERSION_ID=12\narch=x86_64\nsystemd=systemd 252\nhas_apt-get=yes\n\
docker_socket=yes\ndocker_group=yes\niptables_error=iptables v1.8.9: Permission denied\nagent_enabled=disabled\nagent_active=inactive\n";

fn request(upgrade: bool) -> Request {
    Request { upgrade, ..Request::example() }
}

/// The facts of a host that a bootstrap with `request(_)` completed.
fn bootstrapped() -> String {
    format!(
        "{FRESH}sysusers_sha256={}\nagent_user=yes\nbinary_sha256={}\nconfig=yes\ncredential=yes\n\
         enrolment={{\"name\":\"pc-1\",\"master\":\"10.0.0.2:7443\"}}\nunit_sha256={}\nagent_enabled=enabled\nagent_active=active\n",
        sha256_hex(SYSUSERS.as_bytes()),
        "ab".repeat(32),
        sha256_hex(UNIT.as_bytes())
    )
}

fn check(facts: &str, upgrade: bool, expected_changes: &[&str]) {
    let steps = plan(&Facts::parse(facts), &request(upgrade));
    let changes: Vec<&str> = steps.iter().filter(|step| step.change.is_some()).map(|step| step.title).collect();
    assert_eq!(changes, expected_changes, "{steps:#?}");
}

#[test]
fn a_fresh_host_gets_every_step() {
    check(FRESH, false, &["account", "binary", "config", "enrol", "unit", "service"]);
    check(
        &FRESH.replace("docker_socket=yes", "has_tdnf=yes"),
        false,
        &["docker", "account", "binary", "config", "enrol", "unit", "service"],
    );
}

#[test]
fn a_bootstrapped_host_gets_none() {
    check(&bootstrapped(), false, &[]);
    check(&bootstrapped(), true, &[]);
}

#[test]
fn a_different_binary_is_replaced_only_on_upgrade_and_then_restarts_the_unit() {
    let other = bootstrapped().replace(&"ab".repeat(32), &"cd".repeat(32));
    check(&other, false, &[]);
    check(&other, true, &["binary", "service"]);
    let steps = plan(&Facts::parse(&other), &request(false));
    assert!(steps[2].detail.contains("pass --upgrade"), "{}", steps[2].detail);
    let steps = plan(&Facts::parse(&other), &request(true));
    assert_eq!(steps[6].detail, "restart pmesh-agent.service");
}

#[test]
fn the_firewall_step_follows_the_host() {
    let with = |facts: &str| format!("{}{facts}", bootstrapped().replace("iptables_error=iptables v1.8.9: Permission denied\n", ""));
    check(&with("ip4save=yes\niptables_policy=DROP\n"), false, &["firewall"]);
    check(&with("ip4save=yes\nip4save_rule=yes\niptables_policy=DROP\niptables_rule=yes\n"), false, &[]);
    check(&with("firewalld=active\n"), false, &["firewall"]);
    check(&with("ufw=active\nufw_rule=yes\n"), false, &[]);
    check(&with("iptables_policy=ACCEPT\n"), false, &[]);
    check(&with("iptables_policy=ACCEPT\niptables_filters=yes\n"), false, &["firewall"]);
    check(&with(""), false, &[]);
}

#[test]
fn photon_persists_the_rule_before_commit_without_restarting_iptables() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ip4save = dir.path().join("ip4save");
    let original = "# init\n*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n";
    std::fs::write(&ip4save, original).expect("ip4save");
    let script = persist_ip4save(7444).replace("/etc/systemd/scripts/ip4save", ip4save.to_str().expect("utf-8"));
    for _ in 0..2 {
        let status = std::process::Command::new("sh").arg("-c").arg(&script).status().expect("sh runs");
        assert!(status.success());
    }
    let expected = original.replace("COMMIT\n", "-A INPUT -p tcp -m tcp --dport 7444 -j ACCEPT\nCOMMIT\n");
    assert_eq!(std::fs::read_to_string(&ip4save).expect("ip4save"), expected, "inserted once, before COMMIT");
    assert!(!script.contains("systemctl"), "the firewall service is never restarted");
}

#[test]
fn the_token_travels_only_inside_the_script() {
    let script = enrol_script(&request(false), "pmt_secret", "sha256:00", "10.0.0.2:7443");
    assert!(script.contains("PMESH_JOIN_TOKEN='pmt_secret'\nexport PMESH_JOIN_TOKEN\n"));
    let join_line = script.lines().last().expect("a join line");
    assert!(!join_line.contains("pmt_secret") && !join_line.contains("--token"), "{join_line}");
}

#[test]
fn a_binary_whose_sha256_differs_is_not_installed_and_the_upload_is_removed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let upload = dir.path().join("upload");
    std::fs::create_dir(&upload).expect("upload dir");
    std::fs::write(upload.join("pmesh-agent"), b"tampered").expect("upload");
    let target: &'static str = Box::leak(dir.path().join("bin/pmesh-agent").to_str().expect("utf-8").to_owned().into_boxed_str());
    let layout = Layout { binary: target, ..LAYOUT };
    let script = install_binary_script(upload.to_str().expect("utf-8"), &layout, &"ab".repeat(32));
    let output = std::process::Command::new("sh").arg("-c").arg(&script).output().expect("sh runs");
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains(&format!("has sha256 {}", sha256_hex(b"tampered"))));
    assert!(!upload.exists(), "the upload is removed");
    assert!(!std::path::Path::new(target).exists(), "nothing is installed");
}
