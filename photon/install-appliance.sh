#!/bin/bash
# install-appliance.sh: installs the pmesh pattern-controller payload on a PhotonOS system.
#
#   install-appliance.sh PAYLOAD_DIR
#
# PAYLOAD_DIR is flat: what the Packer template uploads (or a `pmesh/` folder on the
# kickstart's CD):
#   pmesh-agent                                 the agent binary      -> /usr/local/bin/
#   pmesh-agent.service, pmesh.sysusers         from systemd/         -> /etc/systemd/system/,
#                                                                        /usr/lib/sysusers.d/pmesh.conf
#   pmesh-firstboot.sh, pmesh-firstboot.service from photon/firstboot/ -> /usr/local/libexec/pmesh/,
#                                                                        /etc/systemd/system/
#   pmesh-firewall.sh                           from photon/firewall/  -> /usr/local/libexec/pmesh/
#
# It enables docker.service (Photon ships it disabled) and pmesh-firstboot.service, and not
# pmesh-agent.service: the agent cannot start before it has joined, which the first boot does.
# It also orders Docker after the firewall (a drop-in), so the boot-time load of ip4save cannot
# flush the chains Docker has just made; that there is no such ordering on Photon is an
# inference from its units, not something observed.
#
# Running it twice gives the same result. Environment, for tests: PMESH_INSTALL_ROOT is the
# target root (systemctl and systemd-sysusers then act on it offline).
set -euo pipefail
umask 022

root="${PMESH_INSTALL_ROOT:-}"
libexec=/usr/local/libexec/pmesh
units=/etc/systemd/system

log() { printf 'install-appliance: %s\n' "$*"; }
fail() {
  printf 'install-appliance: FAILED: %s\n' "$*" >&2
  exit 1
}

# systemctl and systemd-sysusers act on the running system, or offline on `root`.
on_root() {
  local tool=$1
  shift
  if [ -n "$root" ]; then
    "$tool" --root="$root" "$@"
  else
    "$tool" "$@"
  fi
}

[ $# -eq 1 ] || { printf 'usage: %s PAYLOAD_DIR\n' "${0##*/}" >&2; exit 2; }
payload=$1
for file in pmesh-agent pmesh-agent.service pmesh.sysusers pmesh-firstboot.sh \
  pmesh-firstboot.service pmesh-firewall.sh; do
  [ -f "$payload/$file" ] || fail "$payload/$file is missing"
done

install -D -m 0755 "$payload/pmesh-agent" "$root/usr/local/bin/pmesh-agent"
install -D -m 0644 "$payload/pmesh.sysusers" "$root/usr/lib/sysusers.d/pmesh.conf"
install -D -m 0644 "$payload/pmesh-agent.service" "$root$units/pmesh-agent.service"
install -D -m 0755 "$payload/pmesh-firstboot.sh" "$root$libexec/pmesh-firstboot.sh"
install -D -m 0755 "$payload/pmesh-firewall.sh" "$root$libexec/pmesh-firewall.sh"
install -D -m 0644 "$payload/pmesh-firstboot.service" "$root$units/pmesh-firstboot.service"
mkdir -p "$root$units/docker.service.d"
cat >"$root$units/docker.service.d/10-pmesh-after-iptables.conf" <<'DROPIN'
# Installed by pmesh: start Docker after the firewall has loaded ip4save, so that loading it
# cannot flush the chains Docker has just created.
[Unit]
After=iptables.service
DROPIN
chmod 0644 "$root$units/docker.service.d/10-pmesh-after-iptables.conf"
log "installed the agent, its unit, the first-boot unit and the firewall script"

# The agent runs as the system user pmesh-agent; create it now rather than at the next boot.
on_root systemd-sysusers || fail "systemd-sysusers failed"
on_root systemctl enable docker.service pmesh-firstboot.service ||
  fail "could not enable docker.service and pmesh-firstboot.service"
log "enabled docker.service and pmesh-firstboot.service"
