//! `pmesh bootstrap` against real hosts: containers of the Debian image built by
//! tests/images/build.sh, running systemd as PID 1 and a real sshd, unprivileged (no
//! `--privileged`), with the host's Docker socket bind-mounted for the agent. The master runs
//! on this machine, listening on the gateway address of a Docker network each test creates,
//! and the agents advertise their container's address, so every connection (SSH, enrolment,
//! the master's mTLS heartbeat) crosses a real network.
//!
//! The agent's unit is installed exactly as shipped, and starts: no drop-in relaxes it (the
//! pattern test's drop-in moves only the data directory, for the reason it gives). Said
//! plainly, though: in these unprivileged containers systemd cannot make namespaces, and it
//! starts the unit without them. It logs that for `ProtectHostname=`, and silently skips the
//! mount-namespace directives (`ProtectSystem=`, `ProtectHome=`, `PrivateTmp=`): checked by
//! hand with a probe unit, which could write to /usr as root. What is in force here, and
//! checked below, is `NoNewPrivileges=`, the seccomp filter and the empty capability set.
//!
//! What the containers stand in for: a Debian 12 host; with Photon's os-release and stand-ins
//! for tdnf and iptables, a Photon one. The pattern test runs the catalog's DNS pattern through
//! a bootstrapped agent, on a host that shares this machine's network (said there, with why).
//!
//! One binary, a module per part of bootstrap, so the suite links once:
//! - `install`: the normal path by key, dry run, install and a rerun that changes nothing;
//! - `secrets`: by password through sudo, no secret anywhere;
//! - `refusals`: host keys, an expired password and preflight problems, nothing changed;
//! - `pattern`: a pattern through a bootstrapped agent, and `--upgrade` under it;
//! - `photon`: the Photon path (tdnf, ip4save);
//! - `lab` (the hosts, the master and running bootstrap) serves the others.

mod install;
mod lab;
mod pattern;
mod photon;
mod refusals;
mod secrets;
