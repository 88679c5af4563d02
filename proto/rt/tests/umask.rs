//! Files get the mode asked for whatever the umask: the agent's systemd unit may run it under
//! a strict one, and a rendered config that other users in a container must read (BIND runs
//! as `bind`) would otherwise come out 0600. Its own test binary: the umask is per process.

use std::os::unix::fs::PermissionsExt;

#[test]
fn a_strict_umask_does_not_narrow_the_mode_asked_for() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("named.conf");
    pmesh_rt::files::write_atomic(&public, b"options {};", 0o644).unwrap();
    assert_eq!(std::fs::metadata(&public).unwrap().permissions().mode() & 0o777, 0o644);
    let private = dir.path().join("key.pem");
    pmesh_rt::files::write_private(&private, b"secret").unwrap();
    assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
}
