//! The systemd units: `systemd-analyze verify` accepts them, and they carry the hardening the
//! README promises.
//!
//! verify checks that `ExecStart` is executable, so each unit is verified from a copy whose
//! `/usr/local/bin/` is replaced by the freshly built binaries' folder; nothing else changes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn unit_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Runs `systemd-analyze verify` on `text` saved as `name`; returns (success, stderr).
fn verify(name: &str, text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin_dir: PathBuf = pmesh_tests::bin("pmesh").parent().expect("target dir").to_path_buf();
    let text = text.replace("/usr/local/bin/", &format!("{}/", bin_dir.display()));
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("writing unit copy");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is missing: install the systemd package (.ci/run does)");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn systemd_analyze_verify_accepts_both_units() {
    for name in ["pmesh-master.service", "pmesh-agent.service"] {
        let (ok, stderr) = verify(name, &unit_text(name));
        assert!(ok && stderr.trim().is_empty(), "{name}: {stderr}");
    }
}

#[test]
fn verify_catches_a_broken_unit() {
    // The check above can fail: a misspelt directive is reported.
    let broken = unit_text("pmesh-agent.service").replace("ProtectSystem=strict", "ProtectSystem=strikt");
    let (_, stderr) = verify("pmesh-agent.service", &broken);
    assert!(stderr.contains("ProtectSystem") || stderr.contains("protect system"), "{stderr}");
}

#[test]
fn units_are_hardened_and_notify() {
    for name in ["pmesh-master.service", "pmesh-agent.service"] {
        let text = unit_text(name);
        for directive in [
            "Type=notify",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=\n",
            "Restart=on-failure",
        ] {
            assert!(text.contains(directive), "{name} lacks {directive:?}");
        }
    }
    let agent = unit_text("pmesh-agent.service");
    assert!(agent.contains("SupplementaryGroups=docker"), "the agent reaches the Docker socket");
    assert!(agent.contains("StateDirectory=pmesh-agent"), "the agent's data dir is writable");
    // Units must also load on Photon 4 (systemd 247): none of the directives added in 253.
    for newer in ["SocketBindAllow", "RestrictNetworkInterfaces", "RestrictFileSystems", "PrivateIPC"] {
        assert!(!agent.contains(newer) && !unit_text("pmesh-master.service").contains(newer), "{newer}");
    }
}
