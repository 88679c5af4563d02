//! What stops a bootstrap before it changes anything: a host key that is unknown, changed or
//! not the pinned one, an expired password, and every preflight problem, listed at once.

use std::time::Duration;

use pmesh_tests::docker::Host;
use pmesh_tests::wait_until;

use crate::lab::{assert_success, systemd_host, traces, unique, Lab};

#[test]
fn host_keys_unknown_changed_or_not_the_pinned_one_are_refused_and_an_expired_password_stops_preflight() {
    let lab = Lab::new("pc-c", |network| systemd_host("pc-c", network));
    lab.host.add_docker_group();
    let key = lab.host.authorise_key("root", lab.dir());
    let key = key.to_str().expect("utf-8");
    let target = format!("root@{}", lab.host.ip);
    let fingerprint = lab.host.host_key_fingerprint();
    let known_hosts = lab.mesh.master_dir().join("known_hosts");

    // An RSA key is refused by name, before the host is contacted: the host key is unknown
    // here, which would have been refused first (exit 5) had bootstrap connected.
    let rsa = lab.host.authorise_key_of_type("root", "rsa", lab.dir());
    let refused = lab.bootstrap(&target, &["--identity", rsa.to_str().expect("utf-8"), "--dry-run"], "");
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("holds an SSH key of type RSA") && refused.stderr.contains("ssh-keygen -t ed25519"),
        "{}",
        refused.stderr
    );

    let unknown = lab.bootstrap(&target, &["--identity", key, "--dry-run"], "");
    assert_eq!(unknown.code, 5, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("is unknown") && unknown.stderr.contains(&fingerprint), "the fingerprint is shown: {}", unknown.stderr);
    assert!(!known_hosts.exists(), "a refused key is not recorded");

    let closed = lab.bootstrap(&target, &["--identity", key, "--dry-run", "--port", "2"], "");
    assert_eq!(closed.code, 4, "no SSH server there: {}", closed.stderr);
    assert!(closed.stderr.contains(&format!("cannot reach {}:2", lab.host.ip)), "{}", closed.stderr);

    let other = format!("SHA256:{}", "A".repeat(43));
    let mismatch = lab.bootstrap(&target, &["--identity", key, "--dry-run", "--host-key", &other], "");
    assert_eq!(mismatch.code, 5, "{}", mismatch.stderr);
    assert!(mismatch.stderr.contains(&format!("not the pinned {other}")), "{}", mismatch.stderr);

    let pinned = lab.bootstrap(&target, &["--identity", key, "--dry-run", "--host-key", &fingerprint], "");
    assert_success(&pinned, "a dry run with the pinned key");

    // A user whose password has expired: sshd lets the key in but runs nothing.
    lab.host.ok("useradd -m -s /bin/bash stale && echo 'stale:Old-pass-123' | chpasswd && chage -d 0 stale && \
         echo 'stale ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/stale");
    let stale_key = lab.host.authorise_key("stale", lab.dir());
    let stale = lab.bootstrap(
        &format!("stale@{}", lab.host.ip),
        &["--identity", stale_key.to_str().expect("utf-8"), "--host-key", &fingerprint],
        "",
    );
    assert_eq!(stale.code, 2, "{}\n{}", stale.stdout, stale.stderr);
    assert!(stale.stderr.contains("the password of stale on") && stale.stderr.contains("has expired"), "{}", stale.stderr);

    // Record the current key the way an operator could (OpenSSH's format), then change it.
    let public = lab.host.ok("cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub");
    std::fs::write(&known_hosts, format!("{} {public}\n", lab.host.ip)).expect("known_hosts");
    assert_success(&lab.bootstrap(&target, &["--identity", key, "--dry-run"], ""), "a dry run with the recorded key");
    lab.host.ok("rm /etc/ssh/ssh_host_* && ssh-keygen -A -q && systemctl restart ssh");
    let new_fingerprint = lab.host.host_key_fingerprint();
    for extra in [&[][..], &["--accept-new-host-key"][..], &["--host-key", &new_fingerprint][..]] {
        let mut args = vec!["--identity", key, "--dry-run"];
        args.extend_from_slice(extra);
        let changed = lab.bootstrap(&target, &args, "");
        assert_eq!(changed.code, 5, "{extra:?}: {}", changed.stderr);
        assert!(changed.stderr.contains("has CHANGED") && changed.stderr.contains(&new_fingerprint), "{extra:?}: {}", changed.stderr);
    }
    assert_eq!(traces(&lab.host), "", "refusals and dry runs leave nothing on the host");
}

#[test]
fn preflight_lists_every_problem_at_once_and_changes_nothing() {
    // A host without systemd (sshd is PID 1), its agent port taken, and an agent binary for
    // another architecture. The Docker socket is there without a docker group: not a problem,
    // since bootstrap would make the group with the socket's gid (tests/tests/bootstrap/install.rs).
    let lab = Lab::new("pc-d", |network| {
        Host::start(
            &unique("pc-d"),
            &["--hostname", "pc-d", "--network", &network.name, "-v", "/var/run/docker.sock:/var/run/docker.sock"],
            false,
            &["sh", "-c", "mkdir -p /run/sshd && (systemd-socket-activate -l 7444 cat &) && exec /usr/sbin/sshd -D -e"],
        )
    });
    let key = lab.host.authorise_key("root", lab.dir());
    wait_until("the port squatter to listen", Duration::from_secs(20), || lab.host.sh("ss -Htln 'sport = :7444'").contains("7444"))
        .expect("squatter");
    let foreign = lab.dir().join("pmesh-agent-aarch64");
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\xb7\0".to_vec();
    elf.resize(4096, 0);
    std::fs::write(&foreign, elf).expect("a foreign binary");
    let target = format!("root@{}", lab.host.ip);

    let run = lab.bootstrap(
        &target,
        &["--identity", key.to_str().expect("utf-8"), "--accept-new-host-key", "--agent-binary", foreign.to_str().expect("utf-8")],
        "",
    );
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    for problem in [
        "preflight found 3 problem(s); nothing was changed",
        "is built for aarch64",
        "systemd is not running as PID 1",
        "port 7444 is already in use on the host",
    ] {
        assert!(run.stderr.contains(problem), "{problem:?} missing from:\n{}", run.stderr);
    }
    assert!(!run.stderr.contains("docker group"), "{}", run.stderr);
    assert_eq!(traces(&lab.host), "");
    assert!(lab.mesh.agents().expect("agents ls").is_empty(), "no token was spent and no agent enrolled");
}
