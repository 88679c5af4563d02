//! The preflight rules as data: facts in, problems and notes out.

use super::*;

/// A Debian host that is ready: systemd, Docker's unit, tools, room, the master reachable.
const READY: &str = "os_ID=debian\nos_VERSION_ID=\"12\"\nos_PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n\
arch=x86_64\nhostname=pc-1.lab\nuid=0\nsystemd=systemd 252 (252.36-1~deb12u1)\nhas_apt-get=yes\nhas_sha256sum=yes\n\
has_systemd-sysusers=yes\ndisk_free_kib=8000000\ndocker_unit=yes\ndocker_enabled=enabled\ndocker_active=active\n\
docker_socket=yes\ndocker_group=yes\nport_listener=\nmaster_reach=yes\nagent_enabled=disabled\nagent_active=inactive\n";

fn request() -> Request {
    Request::example()
}

/// Applies `edits` (`key=value` lines replacing or adding facts; `key=` removes one) to READY.
fn facts(edits: &str) -> Facts {
    let mut facts = Facts::parse(READY);
    for (key, value) in Facts::parse(edits).0 {
        facts.0.insert(key, value);
    }
    facts
}

fn check(edits: &str, registered: Option<&str>, expected_problems: &[&str]) {
    let registered = registered.map(|address| Registered { address: address.into() });
    let findings = evaluate(&facts(edits), &request(), registered.as_ref());
    assert_eq!(findings.problems.len(), expected_problems.len(), "{edits:?}: {:#?}", findings.problems);
    for (problem, expected) in findings.problems.iter().zip(expected_problems) {
        assert!(problem.contains(expected), "{edits:?}: {problem:?} should say {expected:?}");
    }
}

#[test]
fn a_ready_host_has_no_problems() {
    check("", None, &[]);
}

#[test]
fn each_problem_is_found() {
    check("os_ID=alpine\nos_PRETTY_NAME=Alpine Linux v3.20", None, &["the OS is Alpine Linux v3.20"]);
    check("os_ID=photon\nos_VERSION_ID=3.0\nhas_tdnf=yes", None, &["Photon OS 3.0"]);
    check("os_ID=photon\nos_VERSION_ID=5.0\nhas_tdnf=yes", None, &[]);
    check("os_ID=rocky\nos_ID_LIKE=\"rhel centos fedora\"", None, &[]);
    check("arch=aarch64", None, &["the host is aarch64 but the agent binary /opt/pmesh-agent is built for x86_64"]);
    check("systemd=", None, &["systemd is not running as PID 1"]);
    check("has_sha256sum=", None, &["sha256sum is missing"]);
    check("disk_free_kib=1000", None, &["only 0 MiB free"]);
    check(
        "port_listener=LISTEN 0 128 0.0.0.0:7444 0.0.0.0:* users:((\"nginx\",pid=9,fd=6))",
        None,
        &["port 7444 is already in use on the host (LISTEN"],
    );
    check("master_reach=no", None, &["the host cannot reach the master at 10.0.0.2:7443"]);
    check("docker_group=\ndocker_socket_gid=0", None, &["the docker group is missing and /var/run/docker.sock belongs to root's group"]);
    check("docker_group=\ndocker_socket_gid=998", None, &[]);
    check("docker_unit=\ndocker_socket=\nhas_apt-get=", None, &["Docker is not installed and no package manager"]);
    check("", Some("10.0.0.9:7444"), &["an agent named pc-1 is already registered with the master (at 10.0.0.9:7444)"]);
}

#[test]
fn every_problem_is_reported_at_once() {
    check(
        "systemd=\nport_listener=LISTEN 0 5 *:7444 *:*\nmaster_reach=no\nhas_sha256sum=",
        None,
        &["systemd is not running", "sha256sum is missing", "port 7444 is already in use", "cannot reach the master"],
    );
}

#[test]
fn a_bootstrapped_host_is_not_a_problem_to_itself() {
    let enrolled = "enrolment={ \"v\": 1, \"name\": \"pc-1\", \"master\": \"10.0.0.2:7443\", \"advertise\": \"10.0.0.5:7444\" }\n\
        credential=yes\nport_listener=LISTEN 0 128 0.0.0.0:7444 0.0.0.0:* users:((\"pmesh-agent\",pid=77,fd=9))";
    check(enrolled, Some("10.0.0.5:7444"), &[]);
    // Enrolled elsewhere, or forgotten by the master: bootstrap does not silently re-enrol.
    check(
        &enrolled.replace("10.0.0.2:7443", "10.9.9.9:7443"),
        Some("10.0.0.5:7444"),
        &["already enrolled as agent pc-1 with master 10.9.9.9:7443"],
    );
    check(enrolled, None, &["the master has no such agent"]);
    // Where ss cannot name the listener, the running agent enrolled on that port is it.
    let unnamed = enrolled.replace(" users:((\"pmesh-agent\",pid=77,fd=9))", "");
    check(&format!("{unnamed}\nagent_active=active"), Some("10.0.0.5:7444"), &[]);
    check(&format!("{unnamed}\nagent_active=failed"), Some("10.0.0.5:7444"), &["port 7444 is already in use"]);
}

#[test]
fn notes_stop_nothing() {
    let findings = evaluate(&facts("docker_unit=\nmaster_reach="), &request(), None);
    assert!(findings.problems.is_empty(), "{:?}", findings.problems);
    assert_eq!(findings.notes.len(), 1, "{:?}", findings.notes);
    assert!(findings.notes[0].contains("could not check"));
}

#[test]
fn sudo_trouble_is_one_problem_among_the_others() {
    let mut request = request();
    request.root_problem = Some("ops is not root and `sudo -n` failed".into());
    let findings = evaluate(&facts("systemd="), &request, None);
    assert_eq!(findings.problems.len(), 2);
    assert!(findings.problems[0].contains("sudo -n"));
}

#[test]
fn expired_passwords_are_recognised() {
    assert!(password_change_required("WARNING: Your password has expired.\nPassword change required but no TTY available.\n"));
    assert!(!password_change_required("sudo: a password is required\n"));
}

#[test]
fn facts_parse_quotes_and_enrolment() {
    let facts = facts("enrolment={\"name\":\"pc-1\",\"master\":\"m:1\",\"advertise\":\"a:2\"}");
    assert_eq!(facts.get("os_VERSION_ID"), Some("12"));
    assert_eq!(facts.os(), Os::Debian);
    assert_eq!(facts.enrolment(), Some(Enrolled { name: "pc-1".into(), master: "m:1".into(), advertise: "a:2".into() }));
    assert!(!facts.enrolled(), "no credential on the host");
}

#[test]
fn elf_headers_name_their_architecture() {
    let mut header = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0".to_vec();
    for (machine, expected) in [(0x3eu16, Some("x86_64")), (0xb7, Some("aarch64")), (0x28, None)] {
        header.truncate(18);
        header.extend_from_slice(&machine.to_le_bytes());
        assert_eq!(elf_arch(&header), expected);
    }
    assert_eq!(elf_arch(b"#!/bin/sh\n echo not elf"), None);
}
