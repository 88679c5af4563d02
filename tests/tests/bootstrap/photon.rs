//! The Photon path: with Photon's os-release and stand-ins for tdnf and iptables, bootstrap
//! installs Docker with tdnf, persists the firewall rule in ip4save, and enables a disabled
//! Docker.

use pmesh_tests::docker::Host;

use crate::lab::{assert_success, unique, Lab};

/// Photon's default `/etc/systemd/scripts/ip4save` (the same on 4.0 and 5.0).
const PHOTON_IP4SAVE: &str = "# init\n*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n\
-A INPUT -i lo -j ACCEPT\n-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n\
-A OUTPUT -j ACCEPT\nCOMMIT\n";

/// A stand-in `tdnf` that records its calls; `install docker` creates what Photon's docker
/// package would (a docker group and a docker.service, disabled), the service here linking
/// the host engine's socket into place instead of running dockerd.
const STAND_IN_TDNF: &str = r#"#!/bin/sh
echo "tdnf $*" >> /var/log/stand-ins.log
case "$*" in *install*docker*)
  getent group docker >/dev/null || groupadd -o -g "$(stat -c %g /host-docker.sock)" docker
  printf '%s\n' '[Unit]' 'Description=stand-in for Docker: links the host engine socket' '[Service]' 'Type=oneshot' \
    'RemainAfterExit=yes' 'ExecStart=/bin/ln -sf /host-docker.sock /var/run/docker.sock' '[Install]' 'WantedBy=multi-user.target' \
    > /etc/systemd/system/docker.service
  systemctl daemon-reload ;;
esac
"#;

/// A stand-in `iptables` (unprivileged containers may not touch netfilter) that records its
/// calls and keeps the rules it was given in a file.
const STAND_IN_IPTABLES: &str = r#"#!/bin/sh
echo "iptables $*" >> /var/log/stand-ins.log
rules=/var/lib/stand-in-iptables
case "$1" in
  -S) echo "-P INPUT DROP"; cat "$rules" 2>/dev/null; exit 0 ;;
  -C) shift; grep -qxF -- "-A $*" "$rules" 2>/dev/null ;;
  -I) shift; echo "-A $*" >> "$rules" ;;
  *) exit 2 ;;
esac
"#;

#[test]
fn the_photon_path_installs_docker_with_tdnf_and_persists_the_firewall_rule() {
    // A stand-in for Photon OS 5, said plainly: the Debian image with Photon's os-release,
    // Photon's default ip4save, and stand-ins for tdnf and iptables that record their calls.
    // What this shows is what bootstrap asks of a Photon host, not that Photon answers so.
    // The engine's socket is elsewhere until the stand-in docker.service links it into place.
    let lab = Lab::new("pc-e", |network| {
        let args = ["--hostname", "pc-e", "--network", &network.name, "-v", "/var/run/docker.sock:/host-docker.sock"];
        Host::start(&unique("pc-e"), &args, true, &["/lib/systemd/systemd"])
    });
    let host = &lab.host;
    host.ok("rm -f /etc/os-release && printf 'NAME=\"VMware Photon OS\"\\nVERSION_ID=5.0\\nID=photon\\nPRETTY_NAME=\"VMware Photon OS/Linux (stand-in)\"\\n' > /etc/os-release");
    host.ok(&format!("mkdir -p /etc/systemd/scripts && printf '%s' '{PHOTON_IP4SAVE}' > /etc/systemd/scripts/ip4save"));
    host.ok(&format!("cat > /usr/local/bin/tdnf <<'EOF'\n{STAND_IN_TDNF}EOF\nchmod 755 /usr/local/bin/tdnf"));
    host.ok(&format!("cat > /usr/local/sbin/iptables <<'EOF'\n{STAND_IN_IPTABLES}EOF\nchmod 755 /usr/local/sbin/iptables"));
    let key = host.authorise_key("root", lab.dir());
    let key = key.to_str().expect("utf-8");
    let target = format!("root@{}", host.ip);

    let run = lab.bootstrap(&target, &["--identity", key, "--accept-new-host-key"], "");
    assert_success(&run, "bootstrap on the Photon stand-in");
    assert!(run.stdout.contains("[docker] install Docker with tdnf, then enable and start docker.service ... done"), "{}", run.stdout);
    assert!(
        run.stdout.contains("[firewall] open tcp/7444: a live iptables rule, persisted in /etc/systemd/scripts/ip4save ... done"),
        "{}",
        run.stdout
    );
    let calls = host.ok("cat /var/log/stand-ins.log");
    assert!(calls.lines().any(|call| call == "tdnf -y -q install docker"), "{calls}");
    assert!(calls.lines().any(|call| call == "iptables -I INPUT -p tcp --dport 7444 -j ACCEPT"), "{calls}");
    assert_eq!(host.sh("systemctl is-enabled docker; systemctl is-active docker"), "enabled\nactive");
    let persisted = host.ok("cat /etc/systemd/scripts/ip4save");
    assert_eq!(persisted, PHOTON_IP4SAVE.replace("COMMIT\n", "-A INPUT -p tcp -m tcp --dport 7444 -j ACCEPT\nCOMMIT").trim_end());
    assert_eq!(host.sh("systemctl is-active pmesh-agent"), "active");
    assert_eq!(lab.listed("pc-e").expect("listed")["status"], "up");

    let again = lab.bootstrap(&target, &["--identity", key], "");
    assert_success(&again, "the second bootstrap on the Photon stand-in");
    assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
    assert_eq!(host.ok("grep -c -- '--dport 7444' /etc/systemd/scripts/ip4save"), "1");

    // Docker installed but disabled, as Photon ships it: bootstrap enables and starts it.
    host.ok("systemctl disable --now docker.service");
    let enabled = lab.bootstrap(&target, &["--identity", key], "");
    assert_success(&enabled, "bootstrap with Docker disabled");
    assert!(enabled.stdout.contains("[docker] enable and start docker.service ... done"), "{}", enabled.stdout);
    assert_eq!(host.sh("systemctl is-enabled docker"), "enabled");
}
