//! The first boot for real, on a Debian host with systemd as PID 1, enrolling with a running
//! master behind Photon's own firewall rules; only VMware Tools and Docker's unit are
//! stand-ins, and the test says how.

use std::time::Duration;

use pmesh_tests::docker::{docker, docker_output, start_master_on, Host, Network};
use pmesh_tests::{bin, wait_until, Mesh};

use crate::common::{ip4save_with_rule, photon, read, stock_ip4save};

/// A stand-in `docker.service` for the container: the engine is this machine's, its socket
/// bind-mounted at /var/run/docker.sock, so the unit the first boot enables and starts has
/// nothing to run.
const STAND_IN_DOCKER_UNIT: &str = "# A stand-in for Docker's unit, written by pmesh's photon test: the engine is the test machine's,\n\
# its socket bind-mounted into this container.\n[Unit]\nDescription=Docker (stand-in)\n\n[Service]\nType=oneshot\n\
RemainAfterExit=yes\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n";

/// The OVF environment vCenter hands a VM deployed with the three required properties.
fn ovf_environment(master: &str, token: &str, fingerprint: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Environment xmlns=\"http://schemas.dmtf.org/ovf/environment/1\" \
         xmlns:oe=\"http://schemas.dmtf.org/ovf/environment/1\">\n   <PropertySection>\n\
         <Property oe:key=\"pmesh.master\" oe:value=\"{master}\"/>\n\
         <Property oe:key=\"pmesh.token\" oe:value=\"{token}\"/>\n\
         <Property oe:key=\"pmesh.ca_fingerprint\" oe:value=\"{fingerprint}\"/>\n   </PropertySection>\n</Environment>\n"
    )
}

/// The first boot, for real, on a Debian host with systemd as PID 1 and sshd (the container
/// image the bootstrap tests use), unprivileged, on a Docker network whose gateway runs a real
/// master:
/// - the appliance's payload (the agent binary as built, the units, the first-boot and firewall
///   scripts) is installed by `install-appliance.sh`, as the Packer build does;
/// - Photon's stock ip4save is loaded with `iptables-restore` into the container's own
///   netfilter (it has `NET_ADMIN` in its own network namespace), as Photon's iptables.service
///   does at boot: inbound traffic is dropped unless the first boot opens the agent's port, so
///   the master reaching the agent shows the live rule works;
/// - **stand-ins, said plainly**: `vmware-rpctool`
///   (photon/firstboot/testdata/stand-in-vmware-rpctool.sh) answers `info-get guestinfo.ovfEnv`
///   from a file holding an OVF environment with a real join token, because no VMware
///   hypervisor answers in a container; `docker.service` is a unit that does nothing, because
///   the engine is this machine's (its socket bind-mounted); the docker group is made by the
///   test, as Photon's docker package would.
///
/// systemd starts `pmesh-firstboot.service`; the agent must then be enrolled (the address it
/// advertises found from its route to the master), listed as up, its unit enabled; the
/// first-boot unit disabled and skipped by its condition after; the token nowhere in the
/// journal (every field, command lines included) or the agent's files.
#[test]
fn first_boot_enrols_a_real_systemd_host_and_disables_itself() {
    let name = format!("pmesh-fb-pc-fb-{}", std::process::id());
    let network = Network::create(&name);
    let listener = std::net::TcpListener::bind((network.gateway.as_str(), 0)).expect("binding the gateway address");
    let master_port = listener.local_addr().expect("address").port();
    drop(listener);
    let mesh = Mesh { dir: tempfile::tempdir().expect("temp dir"), master_port, check_interval: "1s".into(), extra_serve_args: Vec::new() };
    let master_address = format!("{}:{master_port}", network.gateway);
    let init = mesh.pmesh(&["ca", "init", "--listen", &master_address]);
    assert_eq!(init.code, 0, "ca init: {}", init.stderr);
    let master = start_master_on(&mesh, &master_address).unwrap_or_else(|err| panic!("{err:#}"));
    let host_args =
        ["--hostname", "pc-fb", "--network", &network.name, "--cap-add", "NET_ADMIN", "-v", "/var/run/docker.sock:/var/run/docker.sock"];
    let host = Host::start(&name, &host_args, true, &["/lib/systemd/systemd"]);

    host.add_docker_group();
    host.write_file("/etc/systemd/scripts/ip4save", "0644", &stock_ip4save());
    host.ok("iptables-restore < /etc/systemd/scripts/ip4save");
    host.write_file("/usr/bin/vmware-rpctool", "0755", &read(&photon().join("firstboot/testdata/stand-in-vmware-rpctool.sh")));
    host.write_file("/etc/systemd/system/docker.service", "0644", STAND_IN_DOCKER_UNIT);
    host.ok("systemctl daemon-reload");

    // The payload, flat, as the Packer template uploads it.
    let payload = tempfile::tempdir().expect("temp dir");
    let repo = photon().join("..");
    for (from, to) in [
        (bin("pmesh-agent"), "pmesh-agent"),
        (repo.join("systemd/pmesh-agent.service"), "pmesh-agent.service"),
        (repo.join("systemd/pmesh.sysusers"), "pmesh.sysusers"),
        (photon().join("firstboot/pmesh-firstboot.sh"), "pmesh-firstboot.sh"),
        (photon().join("firstboot/pmesh-firstboot.service"), "pmesh-firstboot.service"),
        (photon().join("firewall/pmesh-firewall.sh"), "pmesh-firewall.sh"),
        (photon().join("install-appliance.sh"), "install-appliance.sh"),
    ] {
        std::fs::copy(&from, payload.path().join(to)).unwrap_or_else(|err| panic!("{}: {err}", from.display()));
    }
    docker(&["cp", payload.path().to_str().expect("utf-8"), &format!("{name}:/root/pmesh-payload")]);
    host.ok("/root/pmesh-payload/install-appliance.sh /root/pmesh-payload");
    assert_eq!(host.sh("systemctl is-enabled pmesh-firstboot.service pmesh-agent.service"), "enabled\ndisabled");

    // A real token, in the OVF environment the stand-in serves; it reaches the container on
    // docker exec's stdin, never in a command line.
    let (token, fingerprint) = mesh.token(&["--name", "pc-fb"]).expect("token create");
    host.write_file("/var/lib/stand-in-guestinfo/ovfEnv", "0600", &ovf_environment(&master_address, &token, &fingerprint));
    let journal = || host.sh("journalctl --no-pager -o cat -u pmesh-firstboot -u pmesh-agent");

    let started = docker_output(&["exec", &name, "systemctl", "start", "pmesh-firstboot.service"]);
    assert!(started.status.success(), "systemctl start pmesh-firstboot: {}\n{}", String::from_utf8_lossy(&started.stderr), journal());
    assert!(journal().contains("pmesh-firstboot: done"), "{}", journal());
    assert_eq!(host.sh("systemctl is-enabled pmesh-firstboot.service"), "disabled", "the first boot disabled itself");
    assert_eq!(host.sh("systemctl is-enabled pmesh-agent.service; systemctl is-active pmesh-agent.service"), "enabled\nactive");
    host.ok("test -f /var/lib/pmesh-agent/.firstboot-done");
    wait_until("the master to list pc-fb as up", Duration::from_secs(30), || mesh.status("pc-fb").as_deref() == Some("up"))
        .unwrap_or_else(|err| panic!("{err}: {:?}\n{}", mesh.agents(), journal()));
    let listed = mesh.agents().expect("agents ls").into_iter().find(|agent| agent["name"] == "pc-fb").expect("pc-fb is listed");
    assert_eq!(listed["address"], format!("{}:7444", host.ip), "the address towards the master: {listed}");

    // The firewall: the live rule in netfilter, the persisted one in ip4save once.
    host.ok("iptables -C INPUT -p tcp --dport 7444 -j ACCEPT");
    assert_eq!(host.ok("cat /etc/systemd/scripts/ip4save") + "\n", ip4save_with_rule());
    // The guest cleared the plain guestinfo variable it could.
    assert!(host.ok("cat /var/log/stand-in-vmware-rpctool.log").lines().any(|call| call == "info-set guestinfo.pmesh.token"));

    // Started again (restarted: a oneshot that remains after exit is still active), the
    // unit's condition skips it: no second join, no restart of the agent.
    let pid = host.main_pid("pmesh-agent");
    host.ok("systemctl restart pmesh-firstboot.service");
    assert_eq!(host.sh("systemctl show -p ConditionResult --value pmesh-firstboot.service"), "no");
    assert_eq!(host.main_pid("pmesh-agent"), pid);

    // The token: in no journal field (messages, command lines, environment-derived fields),
    // in none of the agent's files or settings, and not in the master's log.
    let everything = docker_output(&["exec", &name, "journalctl", "--no-pager", "-o", "export"]);
    let everything = String::from_utf8_lossy(&everything.stdout);
    assert!(everything.contains("pmesh-firstboot: done"), "the journal was read");
    assert!(!everything.contains(&token), "the token is in the journal");
    let files = host.sh("find /var/lib/pmesh-agent /etc/pmesh /etc/systemd -type f -exec cat {} + 2>/dev/null");
    assert!(!files.contains(&token), "the token is stored in the agent's files");
    assert!(!master.log_text().contains(&token), "the token is in the master's log");
}
