#!/bin/bash
# pmesh-firewall.sh: opens a TCP port in PhotonOS's iptables firewall, live and persisted.
#
#   pmesh-firewall.sh open PORT
#
# Photon's firewall is iptables.service, which loads /etc/systemd/scripts/ip4save at boot and
# drops inbound traffic by default. Opening a port therefore takes two steps, each idempotent:
#   1. the live rule: `iptables -I INPUT -p tcp --dport PORT -j ACCEPT`, unless `iptables -C`
#      finds it already;
#   2. the persisted rule: the same rule, written the way iptables-save writes it, inserted
#      into ip4save's *filter table just before its COMMIT, unless a rule for the port is there.
#
# Why it never restarts iptables.service: that service's script flushes the filter, nat and
# mangle tables and deletes every user chain before loading ip4save, Docker's chains included,
# which breaks every published container port until dockerd is restarted. Adding the live rule
# and editing the file gives the same result now and after the next boot, with Docker intact.
# It does not write `iptables-save > ip4save` either: while Docker runs, that would persist
# Docker's runtime chains into the boot-time firewall.
#
# IPv4 only: the stock ip6save is left alone.
#
# Environment (for tests): PMESH_FIREWALL_ROOT prefixes the ip4save path.
# Exit codes: 0 done (or nothing to do), 1 a step failed, 2 usage.
set -euo pipefail

ip4save="${PMESH_FIREWALL_ROOT:-}/etc/systemd/scripts/ip4save"

log() { printf 'pmesh-firewall: %s\n' "$*"; }

usage() {
  printf 'usage: %s open PORT\n' "${0##*/}" >&2
  exit 2
}

# Prints the ip4save file with `rule` inserted before the COMMIT that closes *filter.
# Fails when there is no *filter table to put it in.
with_rule_inserted() {
  local rule=$1 line table="" inserted=0
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      '*'*) table=${line#\*} ;;
    esac
    if [ "$line" = COMMIT ] && [ "$table" = filter ] && [ "$inserted" = 0 ]; then
      printf '%s\n' "$rule"
      inserted=1
    fi
    printf '%s\n' "$line"
  done <"$ip4save"
  [ "$inserted" = 1 ]
}

open_live() {
  local port=$1
  if ! command -v iptables >/dev/null 2>&1; then
    log "iptables is not installed; no live rule added"
    return 0
  fi
  if iptables -C INPUT -p tcp --dport "$port" -j ACCEPT 2>/dev/null; then
    log "tcp/$port is already open (live)"
    return 0
  fi
  if ! iptables -I INPUT -p tcp --dport "$port" -j ACCEPT; then
    log "could not add the live rule for tcp/$port"
    return 1
  fi
  log "opened tcp/$port (live)"
}

open_persisted() {
  local port=$1 rule tmp
  # The form iptables-save writes, as the stock file's own ssh rule is.
  rule="-A INPUT -p tcp -m tcp --dport $port -j ACCEPT"
  if [ ! -f "$ip4save" ]; then
    log "$ip4save does not exist (not a Photon host?); the rule is not persisted"
    return 0
  fi
  # Either spelling (with or without -m tcp) counts as present, so a hand-added rule is kept.
  if grep -Eq -- "^-A INPUT -p tcp (-m tcp )?--dport $port -j ACCEPT[[:space:]]*$" "$ip4save"; then
    log "tcp/$port is already persisted in $ip4save"
    return 0
  fi
  # Write beside the file and rename, so a crash never leaves a half-written firewall.
  if ! tmp=$(mktemp "$ip4save.XXXXXX"); then
    log "could not create a temporary file beside $ip4save"
    return 1
  fi
  if ! with_rule_inserted "$rule" >"$tmp"; then
    rm -f "$tmp"
    log "$ip4save has no *filter table ending in COMMIT; not changed"
    return 1
  fi
  if ! chmod --reference="$ip4save" "$tmp" || ! mv "$tmp" "$ip4save"; then
    rm -f "$tmp"
    log "could not replace $ip4save"
    return 1
  fi
  log "persisted tcp/$port in $ip4save"
}

if [ $# -ne 2 ] || [ "$1" != open ]; then
  usage
fi
case "$2" in
  '' | *[!0-9]* | ??????*) usage ;;
esac
# Base 10 even with leading zeros, so "07444" and "7444" are the same rule.
port=$((10#$2))
if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
  usage
fi

# Each step reports its own failure; both are attempted so one broken half is not hidden.
status=0
open_live "$port" || status=1
open_persisted "$port" || status=1
exit "$status"
