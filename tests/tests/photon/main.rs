//! The PhotonOS appliance in `photon/`: its shell scripts pass shellcheck; the kickstart uses
//! only keys the Photon installer accepts and does what the appliance needs; the first-boot
//! script configures the network, opens the firewall once, joins with the token in the
//! environment only, and runs once; the firewall script is idempotent on Photon's stock
//! ip4save; the Packer template and the OVF properties agree with the scripts.
//!
//! Nothing here runs on Photon or under VMware. The first-boot script runs against a
//! temporary root, with stand-ins on PATH for VMware Tools (`vmtoolsd`, which fails, and
//! `vmware-rpctool`, which serves a sample OVF environment), `pmesh-agent`, `systemctl`,
//! `networkctl`, `iptables` and `ip`: small shell scripts that record their arguments and
//! environment. The stock ip4save fixture is Photon's default file (the same on 4 and 5) as
//! published, not one copied from a running VM.
//!
//! One test then runs the appliance for real on a Debian host with systemd as PID 1 (the
//! image tests/images/build.sh builds): `install-appliance.sh` installs the payload, and the
//! first-boot unit, started by systemd, enrols the host with a running master through the real
//! `pmesh-agent`, behind Photon's own firewall rules loaded into the container's real iptables.
//! Only VMware Tools and Docker's unit are stand-ins there; that test says how.
//!
//! One binary, a module per part of the appliance, so the suite links once:
//! - `shellcheck`: the shell scripts (the kickstart's postinstall among them);
//! - `kickstart`: `ks.json` against the installer's keys, and its firewall line;
//! - `firewall`: `pmesh-firewall.sh` on the stock ip4save;
//! - `firstboot`: `pmesh-firstboot.sh`, its unit and `install-appliance.sh`, in a sandbox;
//! - `systemd_host`: the first boot for real on a systemd host, with a real master;
//! - `packer`: the Packer template and the OVF properties;
//! - `common` (the repository's files and fixtures) and `sandbox` (the temporary root and the
//!   stand-ins) serve the others.

mod common;
mod firewall;
mod firstboot;
mod kickstart;
mod packer;
mod sandbox;
mod shellcheck;
mod systemd_host;
