//! The kickstart (`photon/ks.json`) uses only keys the Photon installer accepts, prepares the
//! appliance (packages, disks, postinstall), and persists the agent's port like the firewall
//! script does.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::common::{ip4save_with_rule, photon, read, stock_ip4save};

pub fn kickstart() -> serde_json::Value {
    serde_json::from_str(&read(&photon().join("ks.json"))).expect("ks.json is JSON")
}

/// The kickstart's postinstall lines, as the script the installer runs.
pub fn postinstall_script() -> String {
    kickstart()["postinstall"]
        .as_array()
        .expect("postinstall is a list")
        .iter()
        .map(|line| format!("{}\n", line.as_str().expect("postinstall lines are strings")))
        .collect()
}

/// Keys that both the Photon 4 installer and photon-os-installer's current master accept; the
/// installer refuses a kickstart with any other key ("Unknown install_config keys").
#[rustfmt::skip]
const INSTALLER_KEYS: &[&str] = &[
    "additional_files", "additional_packages", "additional_rpms_path", "arch", "autopartition",
    "bootmode", "disk", "eject_cdrom", "hostname", "linux_flavor", "live", "log_level", "ostree",
    "packages", "packagelist_file", "partition_type", "partitions", "network", "password",
    "postinstall", "postinstallscripts", "preinstall", "preinstallscripts", "public_key",
    "photon_docker_image", "search_path", "setup_grub_script", "shadow_password", "type", "ui",
];

#[test]
fn kickstart_is_one_the_installer_accepts_and_prepares_the_appliance() {
    let ks = kickstart();
    let object = ks.as_object().expect("ks.json is an object");
    for key in object.keys() {
        assert!(INSTALLER_KEYS.contains(&key.as_str()), "the Photon installer would refuse key {key:?}");
    }
    for key in ["hostname", "password", "disk", "partitions", "bootmode", "linux_flavor", "packages", "postinstall"] {
        assert!(object.contains_key(key), "ks.json lacks {key}");
    }
    assert_eq!(ks["password"]["crypted"], true);
    assert_eq!(ks["password"]["age"], -1, "the root password must not expire");
    let placeholder = ks["password"]["text"].as_str().expect("password text");
    assert!(placeholder.starts_with('!'), "an unreplaced placeholder must lock root, not be a password: {placeholder}");
    assert_eq!(ks["linux_flavor"], "linux-esx");
    assert_eq!(ks["bootmode"], "efi");

    let packages: BTreeSet<&str> = ["packages", "additional_packages"]
        .iter()
        .flat_map(|key| ks[key].as_array().into_iter().flatten())
        .filter_map(|package| package.as_str())
        .collect();
    for package in ["minimal", "docker", "open-vm-tools", "iptables"] {
        assert!(packages.contains(package), "{package} is not installed: {packages:?}");
    }

    // The OS on the first disk, the agent's data on the second; one growing partition per disk.
    let partitions = ks["partitions"].as_array().expect("partitions");
    let on = |mountpoint: &str| partitions.iter().find(|part| part["mountpoint"] == mountpoint).cloned();
    assert!(on("/").is_some_and(|root| root.get("disk").is_none()), "/ belongs on the default disk");
    assert_eq!(on("/var/lib/pmesh-agent").expect("a /var/lib/pmesh-agent partition")["disk"], "/dev/sdb");
    let mut growing = BTreeSet::new();
    for part in partitions.iter().filter(|part| part["size"] == 0) {
        let disk = part["disk"].as_str().unwrap_or("default").to_owned();
        assert!(growing.insert(disk.clone()), "two size-0 partitions on {disk}");
    }

    let postinstall = postinstall_script();
    assert!(postinstall.starts_with("#!/bin/sh\n"), "{postinstall}");
    for line in ["systemctl enable docker.service\n", "chage -I -1 -m 0 -M 99999 -E -1 root\n"] {
        assert!(postinstall.contains(line), "postinstall lacks {line:?}");
    }
    assert!(!postinstall.contains("restart iptables"), "restarting iptables flushes Docker's rules");
}

/// Runs the postinstall's ip4save line on a copy of the stock file.
fn run_postinstall_firewall_line(ip4save: &Path) {
    let line = postinstall_script()
        .lines()
        .find(|line| line.contains("ip4save") && !line.starts_with('#'))
        .expect("a postinstall line editing ip4save")
        .replace("/etc/systemd/scripts/ip4save", ip4save.to_str().expect("utf-8"));
    let status = Command::new("sh").arg("-c").arg(&line).status().expect("running sh");
    assert!(status.success(), "{line}");
}

#[test]
fn kickstart_persists_the_port_once_and_like_the_firewall_script() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ip4save = dir.path().join("ip4save");
    std::fs::write(&ip4save, stock_ip4save()).expect("writing ip4save");
    run_postinstall_firewall_line(&ip4save);
    run_postinstall_firewall_line(&ip4save);
    assert_eq!(read(&ip4save), ip4save_with_rule());
}
