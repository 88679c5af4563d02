//! The appliance's shell scripts, the kickstart's postinstall among them, pass shellcheck and
//! are executable; and shellcheck is shown to catch a broken script.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use pmesh_tests::Run;

use crate::common::{mode, photon};
use crate::kickstart::postinstall_script;

fn on_path(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|out| out.status.success())
}

fn shell_scripts(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading photon/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            shell_scripts(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "sh") {
            found.push(path);
        }
    }
}

fn shellcheck(path: &Path) -> Run {
    assert!(on_path("shellcheck"), "shellcheck is missing: install it with `apt-get install -y shellcheck` (.ci/run does)");
    Command::new("shellcheck").arg(path).output().expect("running shellcheck").into()
}

#[test]
fn every_shell_script_passes_shellcheck_and_is_executable() {
    let mut scripts = Vec::new();
    shell_scripts(&photon(), &mut scripts);
    let names: BTreeSet<_> = scripts.iter().filter_map(|path| path.file_name()?.to_str()).collect();
    for expected in ["pmesh-firstboot.sh", "pmesh-firewall.sh", "install-appliance.sh"] {
        assert!(names.contains(expected), "{expected} not found under photon/: {names:?}");
    }
    for script in &scripts {
        let run = shellcheck(script);
        assert_eq!(run.code, 0, "{}:\n{}", script.display(), run.stdout);
        assert_eq!(mode(script) & 0o111, 0o111, "{} is not executable", script.display());
    }
    // The kickstart's postinstall is a script too.
    let dir = tempfile::tempdir().expect("temp dir");
    let postinstall = dir.path().join("postinstall.sh");
    std::fs::write(&postinstall, postinstall_script()).expect("writing postinstall");
    let run = shellcheck(&postinstall);
    assert_eq!(run.code, 0, "ks.json postinstall:\n{}", run.stdout);
}

#[test]
fn shellcheck_catches_a_broken_script() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("broken.sh");
    std::fs::write(&script, "#!/bin/bash\nrm $1\n").expect("writing");
    let run = shellcheck(&script);
    assert_ne!(run.code, 0);
    assert!(run.stdout.contains("SC2086"), "{}", run.stdout);
}
