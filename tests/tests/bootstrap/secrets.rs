//! By password through `sudo`: the password and the join token show nowhere, not in the
//! output, this machine's processes, the host's logs or the master's state.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pmesh_tests::bin;

use crate::lab::{assert_success, systemd_host, traces, Lab};

#[test]
fn by_password_through_sudo_and_no_secret_shows_in_output_processes_logs_or_state() {
    const PASSWORD: &str = "Tr0ub4dor&3-pmesh-secret";
    let lab = Lab::new("pc-b", |network| systemd_host("pc-b", network));
    lab.host.add_docker_group();
    lab.host.ok(&format!(
        "useradd -m -s /bin/bash ops && echo 'ops:{PASSWORD}' | chpasswd && \
         echo 'ops ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ops && chmod 440 /etc/sudoers.d/ops"
    ));
    // This host offers no SFTP, so the binary travels on a command's stdin instead.
    lab.host.ok("sed -i 's/^Subsystem/#Subsystem/' /etc/ssh/sshd_config && systemctl restart ssh");
    let target = format!("ops@{}", lab.host.ip);

    let wrong = lab.bootstrap(&target, &["--password-stdin", "--accept-new-host-key"], "not-the-password\n");
    assert_eq!(wrong.code, 5, "a wrong password is refused: {}", wrong.stderr);
    assert!(wrong.stderr.contains("refused the password of user ops"), "{}", wrong.stderr);
    assert_eq!(traces(&lab.host), "");

    // Watch every process's arguments while bootstrap runs. This machine's /proc shows the
    // container's processes too (sshd, sudo, the shells, `pmesh-agent join`), so a tight loop
    // over it sees even short-lived commands; best effort all the same, since a process that
    // lives less than one pass can slip through.
    let seen = Arc::new(Mutex::new((0usize, std::collections::BTreeSet::<String>::new())));
    let running = Arc::new(AtomicBool::new(true));
    // Other test binaries run on this machine too (a developer's, or a second checkout's), and
    // their harness enrols agents with `target/.../pmesh-agent join --token`: those are not this
    // bootstrap's, which runs the agent only as /usr/local/bin/pmesh-agent on the host.
    let harness_agent = bin("pmesh-agent").display().to_string();
    let other_harness = move |args: &str| args.contains("/target/debug/pmesh-agent join") || args.starts_with(&harness_agent);
    let watcher = {
        let (seen, running) = (seen.clone(), running.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                let leaks = process_arguments()
                    .into_iter()
                    .filter(|args| args.contains(PASSWORD) || (args.contains("pmt_") && !other_harness(args)));
                let mut seen = seen.lock().expect("lock");
                seen.0 += 1;
                seen.1.extend(leaks);
            }
        })
    };
    let run = lab.bootstrap(
        &target,
        &["--password-stdin", "--accept-new-host-key", "--name", "pc-b", "--label", "site=lab"],
        &format!("{PASSWORD}\n"),
    );
    running.store(false, Ordering::Relaxed);
    watcher.join().expect("watcher");
    assert_success(&run, "bootstrap by password");
    assert!(run.stdout.contains("uploaded over a command's stdin (no SFTP on this host), sha256 verified"), "{}", run.stdout);
    assert_eq!(lab.host.sh("systemctl is-active pmesh-agent"), "active");
    let listed = lab.listed("pc-b").expect("pc-b is listed");
    assert_eq!((listed["status"].as_str(), listed["labels"]["site"].as_str()), (Some("up"), Some("lab")), "{listed}");

    // The secrets: the password, and any join token (they all start with pmt_).
    let (n_passes, leaks) = seen.lock().expect("lock").clone();
    assert!(n_passes > 100, "the watcher looked at the processes only {n_passes} times");
    assert!(leaks.is_empty(), "a secret shows in a process's arguments: {leaks:?}");
    for (what, text) in [
        ("bootstrap's output", format!("{}{}{}{}", run.stdout, run.stderr, wrong.stdout, wrong.stderr)),
        ("the host's journal (sshd, sudo, the agent)", lab.host.sh("journalctl --no-pager -o cat")),
        ("the agent's files", lab.host.sh("cat /etc/pmesh/* /var/lib/pmesh-agent/*.json /etc/systemd/system/pmesh-agent.service")),
        ("the master's log", std::fs::read_to_string(&lab.master.log).unwrap_or_default()),
    ] {
        assert!(!text.contains(PASSWORD), "the password shows in {what}");
        assert!(!text.contains("pmt_"), "a join token shows in {what}");
    }
    assert!(
        lab.host.ok("grep -rl -- 'Tr0ub4dor' /var/lib/pmesh-agent /etc/pmesh /var/tmp || true").is_empty(),
        "the password is stored on the host"
    );
    assert!(!tree_contains(&lab.mesh.master_dir(), PASSWORD.as_bytes()), "the password is stored by the master");
}

/// The arguments of every process this machine's /proc shows, one string each.
fn process_arguments() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().bytes().all(|byte| byte.is_ascii_digit()))
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .collect()
}

/// Whether any file under `dir` contains `needle`.
fn tree_contains(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            tree_contains(&path, needle)
        } else {
            std::fs::read(&path).map(|bytes| bytes.windows(needle.len()).any(|window| window == needle)).unwrap_or(false)
        }
    })
}
