#!/bin/bash
# pmesh-firstboot.sh: makes a freshly deployed pattern-controller appliance join its mesh, once,
# from the OVF properties that vCenter (or ovftool) hands the VM through VMware Tools.
#
#   pmesh-firstboot.sh                run the first boot (what pmesh-firstboot.service does)
#   pmesh-firstboot.sh --show-config  print the properties it would use, the token redacted
#
# Properties, read from guestinfo.ovfEnv (the OVF environment XML). A plain guestinfo variable
# of the same name (guestinfo.pmesh.token, ...; set with `govc vm.change -e` or a VM's
# extraConfig) takes precedence, because unlike the OVF environment it can be changed while the
# VM runs, e.g. to hand it a new token:
#   pmesh.master         HOST[:PORT] of the master; the port defaults to 7443    (required)
#   pmesh.token          one-time join token from `pmesh token create`           (required)
#   pmesh.ca_fingerprint sha256:HEX of the mesh CA, printed with the token       (required)
#   pmesh.name           the agent's name; default: the host name
#   pmesh.advertise      HOST:PORT where the master reaches this agent; default: pmesh.ip, or
#                        the address this VM uses to reach the master, on port 7444
#   pmesh.ip, pmesh.netmask (a prefix such as 24, or 255.255.255.0), pmesh.gateway,
#   pmesh.dns (comma- or space-separated)    a static IPv4 address for eth0; empty: DHCP
#
# Steps: static network (when pmesh.ip is set), Docker enabled and started, the agent's port
# opened live and in ip4save, `pmesh-agent join` with the token in the environment only (an
# argument would show in the process list), the agent unit enabled and started, the token
# cleared from guestinfo where the guest can, a marker file, and the unit disabled.
#
# The token is never printed. Run by hand twice, it does nothing the second time (the marker);
# after a failure it leaves no marker, so the next boot, or `systemctl start pmesh-firstboot`,
# tries again, and a join that already succeeded is not repeated (agent.json exists).
#
# Exit codes: 0 done, or already done; 1 a property is missing or invalid, or a local step
# failed; otherwise the code of `pmesh-agent join` (2 usage, 4 master unreachable, 5 refused:
# bad, used or expired token, or a CA fingerprint mismatch).
#
# Environment, for tests: PMESH_FIRSTBOOT_ROOT prefixes every file path;
# PMESH_FIRSTBOOT_OVFENV_CMD is a shell command printing the OVF environment, instead of
# asking VMware Tools; PMESH_FIREWALL is the firewall script; PMESH_AGENT_BIN the agent;
# PMESH_FIRSTBOOT_JOIN_ATTEMPTS and PMESH_FIRSTBOOT_RETRY_DELAY (seconds) bound the retries
# while the master is unreachable.
set -euo pipefail
# Files this writes (the network file above all) must be world-readable: systemd-networkd
# runs as its own user.
umask 022

root="${PMESH_FIRSTBOOT_ROOT:-}"
data_dir=/var/lib/pmesh-agent
marker="$root$data_dir/.firstboot-done"
network_file="$root/etc/systemd/network/10-pmesh-static.network"
interface=eth0
firewall="${PMESH_FIREWALL:-$(dirname "$0")/pmesh-firewall.sh}"
agent="${PMESH_AGENT_BIN:-pmesh-agent}"
join_attempts="${PMESH_FIRSTBOOT_JOIN_ATTEMPTS:-6}"
retry_delay="${PMESH_FIRSTBOOT_RETRY_DELAY:-10}"
default_master_port=7443
default_agent_port=7444
known_keys=(pmesh.master pmesh.token pmesh.ca_fingerprint pmesh.name pmesh.advertise
  pmesh.ip pmesh.netmask pmesh.gateway pmesh.dns)

declare -A props=()

log() { printf 'pmesh-firstboot: %s\n' "$*"; }
fail() {
  local code=$1
  shift
  printf 'pmesh-firstboot: FAILED: %s\n' "$*" >&2
  exit "$code"
}

# One VMware Tools RPC, such as "info-get guestinfo.ovfEnv", through vmtoolsd or, failing
# that, vmware-rpctool; prints the answer. Fails when neither answers (not on VMware, no Tools).
rpc() {
  if command -v vmtoolsd >/dev/null 2>&1 && vmtoolsd --cmd "$1" 2>/dev/null; then
    return 0
  fi
  if command -v vmware-rpctool >/dev/null 2>&1 && vmware-rpctool "$1" 2>/dev/null; then
    return 0
  fi
  return 1
}

ovfenv() {
  if [ -n "${PMESH_FIRSTBOOT_OVFENV_CMD:-}" ]; then
    sh -c "$PMESH_FIRSTBOOT_OVFENV_CMD"
  else
    rpc "info-get guestinfo.ovfEnv"
  fi
}

xml_unescape() {
  local text=$1
  # The replacements are quoted: bash 5.2 would otherwise read '&' as "the matched text".
  text=${text//'&lt;'/'<'}
  text=${text//'&gt;'/'>'}
  text=${text//'&quot;'/'"'}
  text=${text//'&apos;'/"'"}
  text=${text//'&#10;'/' '}
  text=${text//'&amp;'/'&'}
  printf '%s' "$text"
}

# Fills `props` from the OVF environment on stdin: every <Property oe:key="pmesh.*"
# oe:value="..."/> element, attributes in either order. Plain bash, so that it needs nothing
# else: Photon's minimal package set lists neither an XML tool nor awk.
parse_ovfenv() {
  local xml chunk key value
  local re_property='^(oe:)?Property[[:space:]]'
  local re_key='[[:space:]]oe:key="([^"]*)"'
  local re_value='[[:space:]]oe:value="([^"]*)"'
  local -a chunks=()
  xml=$(cat)
  xml=${xml//$'\r'/ }
  xml=${xml//$'\n'/ }
  xml=${xml//$'\t'/ }
  IFS='<' read -r -a chunks <<<"$xml"
  for chunk in "${chunks[@]}"; do
    [[ $chunk =~ $re_property ]] || continue
    [[ $chunk =~ $re_key ]] || continue
    key=${BASH_REMATCH[1]}
    [[ $key =~ ^pmesh\.[a-z_]+$ ]] || continue
    value=""
    if [[ $chunk =~ $re_value ]]; then
      value=$(xml_unescape "${BASH_REMATCH[1]}")
    fi
    props[$key]=$value
  done
}

# A property's value, or "" when unset. "''" counts as unset: it is what clearing a
# guestinfo variable the documented way leaves behind.
prop() {
  local value=${props[$1]:-}
  [ "$value" = "''" ] && value=""
  printf '%s' "$value"
}

load_properties() {
  local xml key value
  if xml=$(ovfenv); then
    parse_ovfenv <<<"$xml"
  else
    log "no OVF environment (guestinfo.ovfEnv) from VMware Tools; trying plain guestinfo variables"
  fi
  for key in "${known_keys[@]}"; do
    if value=$(rpc "info-get guestinfo.$key") && [ -n "$value" ] && [ "$value" != "''" ]; then
      props[$key]=$value
    fi
  done
}

show_config() {
  local key value
  for key in "${known_keys[@]}"; do
    value=$(prop "$key")
    if [ "$key" = pmesh.token ] && [ -n "$value" ]; then
      value="<redacted, ${#value} characters>"
    fi
    printf '%s=%s\n' "$key" "$value"
  done
}

is_ipv4() {
  local re='^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$' part
  [[ $1 =~ $re ]] || return 1
  for part in "${BASH_REMATCH[@]:1}"; do
    [ "$((10#$part))" -le 255 ] || return 1
  done
}

# Prints the prefix length of a netmask given as a prefix ("24") or dotted ("255.255.255.0").
prefix_length() {
  local mask=$1 octet bits=0 seen_zero=0
  local -a octets=()
  if [[ $mask =~ ^[0-9]{1,2}$ ]] && [ "$((10#$mask))" -le 32 ]; then
    printf '%s' "$((10#$mask))"
    return 0
  fi
  is_ipv4 "$mask" || return 1
  IFS=. read -r -a octets <<<"$mask"
  for octet in "${octets[@]}"; do
    octet=$((10#$octet))
    case "$octet" in
      255) [ "$seen_zero" = 0 ] || return 1; bits=$((bits + 8)) ;;
      254 | 252 | 248 | 240 | 224 | 192 | 128 | 0)
        [ "$seen_zero" = 0 ] || [ "$octet" = 0 ] || return 1
        case "$octet" in
          254) bits=$((bits + 7)) ;; 252) bits=$((bits + 6)) ;; 248) bits=$((bits + 5)) ;;
          240) bits=$((bits + 4)) ;; 224) bits=$((bits + 3)) ;; 192) bits=$((bits + 2)) ;;
          128) bits=$((bits + 1)) ;;
        esac
        seen_zero=1
        ;;
      *) return 1 ;;
    esac
  done
  printf '%s' "$bits"
}

# Writes the static network file for eth0 and applies it live. 10- sorts before Photon's
# 99-dhcp-en.network, and networkd uses the first file that matches an interface. It matches
# eth0 by name: Name=* would also capture docker0 and the containers' veths.
configure_network() {
  local ip gateway prefix server tmp
  local -a dns_servers=()
  ip=$(prop pmesh.ip)
  [ -n "$ip" ] || { log "no pmesh.ip: keeping DHCP"; return 0; }
  gateway=$(prop pmesh.gateway)
  IFS=', ' read -r -a dns_servers <<<"$(prop pmesh.dns)"
  is_ipv4 "$ip" || fail 1 "pmesh.ip '$ip' is not an IPv4 address"
  [ -n "$(prop pmesh.netmask)" ] || fail 1 "pmesh.ip is set but pmesh.netmask is empty"
  prefix=$(prefix_length "$(prop pmesh.netmask)") ||
    fail 1 "pmesh.netmask '$(prop pmesh.netmask)' is neither a prefix length nor a netmask"
  if [ -n "$gateway" ] && ! is_ipv4 "$gateway"; then
    fail 1 "pmesh.gateway '$gateway' is not an IPv4 address"
  fi
  for server in "${dns_servers[@]}"; do
    [ -z "$server" ] || is_ipv4 "$server" || fail 1 "pmesh.dns entry '$server' is not an IPv4 address"
  done
  mkdir -p "$(dirname "$network_file")"
  tmp=$(mktemp "$network_file.XXXXXX")
  {
    printf '# Written by pmesh-firstboot from the OVF properties pmesh.ip, pmesh.netmask,\n'
    printf '# pmesh.gateway and pmesh.dns.\n'
    printf '[Match]\nName=%s\n\n[Network]\nAddress=%s/%s\n' "$interface" "$ip" "$prefix"
    [ -z "$gateway" ] || printf 'Gateway=%s\n' "$gateway"
    for server in "${dns_servers[@]}"; do
      [ -z "$server" ] || printf 'DNS=%s\n' "$server"
    done
  } >"$tmp"
  chmod 0644 "$tmp"
  mv "$tmp" "$network_file"
  log "wrote ${network_file#"$root"} ($ip/$prefix on $interface)"
  # Apply it now: this unit runs after network-online.target, so networkd has already
  # configured eth0 (by DHCP, or not at all).
  if networkctl reload && networkctl reconfigure "$interface"; then
    log "applied the static address to $interface"
  else
    log "networkctl could not apply it now; it applies at the next boot"
  fi
}

# The address the master should dial: pmesh.advertise, else pmesh.ip, else the source address
# this VM uses towards the master. Empty: let the agent pick (HOSTNAME:7444).
advertise_address() {
  local advertise master_host probe route re_src='[[:space:]]src[[:space:]]+([0-9.]+)'
  advertise=$(prop pmesh.advertise)
  if [ -n "$advertise" ]; then
    printf '%s' "$advertise"
    return 0
  fi
  if [ -n "$(prop pmesh.ip)" ]; then
    printf '%s:%s' "$(prop pmesh.ip)" "$default_agent_port"
    return 0
  fi
  master_host=${1%:*}
  probe=$master_host
  if ! is_ipv4 "$probe"; then
    probe=$(getent ahostsv4 "$master_host" 2>/dev/null | { read -r first _ && printf '%s' "$first"; } || true)
  fi
  if [ -n "$probe" ] && route=$(ip -4 -o route get "$probe" 2>/dev/null) && [[ $route =~ $re_src ]]; then
    printf '%s:%s' "${BASH_REMATCH[1]}" "$default_agent_port"
  fi
}

# Runs `pmesh-agent join`, retrying only while the master is unreachable (exit 4): at first
# boot the network may come up after network-online.target. Returns join's exit code.
join_mesh() {
  local master=$1 token=$2 fingerprint=$3 name=$4 advertise=$5 attempt=1 code
  local -a args=(join --data-dir "$root$data_dir" --master "$master" --ca-fingerprint "$fingerprint")
  [ -z "$name" ] || args+=(--name "$name")
  [ -z "$advertise" ] || args+=(--advertise "$advertise")
  while :; do
    log "joining the mesh at $master (attempt $attempt of $join_attempts)"
    # The token travels in the child's environment only: never in argv, never in a log.
    if PMESH_JOIN_TOKEN="$token" "$agent" "${args[@]}"; then
      return 0
    else
      code=$?
    fi
    if [ "$code" -ne 4 ] || [ "$attempt" -ge "$join_attempts" ]; then
      return "$code"
    fi
    attempt=$((attempt + 1))
    log "the master is unreachable; retrying in ${retry_delay}s"
    sleep "$retry_delay"
  done
}

explain_join_failure() {
  case "$1" in
    2) printf 'pmesh-agent join rejected its arguments (exit 2): check pmesh.name, pmesh.advertise and pmesh.ca_fingerprint' ;;
    4) printf 'the master %s is unreachable (exit 4): check pmesh.master, the network and the firewall between them' "$2" ;;
    5) printf 'the master refused the join (exit 5): the token is unknown, used or expired, or pmesh.ca_fingerprint does not match; create a new token and reboot' ;;
    *) printf 'pmesh-agent join failed (exit %s)' "$1" ;;
  esac
}

main() {
  local master token fingerprint name advertise port code missing=()
  if [ -e "$marker" ]; then
    log "already done (${marker#"$root"} exists); nothing to do"
    return 0
  fi
  load_properties
  master=$(prop pmesh.master)
  token=$(prop pmesh.token)
  fingerprint=$(prop pmesh.ca_fingerprint)
  name=$(prop pmesh.name)
  [ -n "$master" ] || missing+=(pmesh.master)
  [ -n "$token" ] || missing+=(pmesh.token)
  [ -n "$fingerprint" ] || missing+=(pmesh.ca_fingerprint)
  if [ "${#missing[@]}" -gt 0 ]; then
    fail 1 "missing OVF properties: ${missing[*]}; set them (vApp Options, or ovftool --prop:KEY=VALUE) and reboot"
  fi
  # A bare host gets the master's default port.
  [[ $master == *:* ]] || master="$master:$default_master_port"

  configure_network

  # Docker ships disabled on Photon; patterns run in it.
  systemctl enable --now docker.service || fail 1 "could not enable and start docker.service"
  log "docker.service enabled and started"

  advertise=$(advertise_address "$master")
  port=$default_agent_port
  if [[ $advertise =~ :([0-9]+)$ ]]; then
    port=${BASH_REMATCH[1]}
  fi
  PMESH_FIREWALL_ROOT="$root" "$firewall" open "$port" || fail 1 "could not open tcp/$port in the firewall"

  if [ -e "$root$data_dir/agent.json" ]; then
    log "already enrolled (${data_dir}/agent.json exists): not joining again"
  else
    if join_mesh "$master" "$token" "$fingerprint" "$name" "$advertise"; then
      code=0
    else
      code=$?
    fi
    [ "$code" -eq 0 ] || fail "$code" "$(explain_join_failure "$code" "$master")"
    log "joined the mesh at $master${advertise:+, advertising $advertise}"
  fi

  systemctl enable --now pmesh-agent.service || fail 1 "could not enable and start pmesh-agent.service"
  log "pmesh-agent.service enabled and started"

  # The token is spent now, so a leftover copy enrols nothing; still, remove what the guest
  # can. A plain guestinfo variable can be overwritten from inside; the OVF environment cannot:
  # vCenter delivers it afresh at every power-on, so pmesh.token stays in the VM's vApp
  # properties until an administrator clears it there.
  if rpc "info-set guestinfo.pmesh.token ''" >/dev/null; then
    log "cleared guestinfo.pmesh.token"
  else
    log "could not clear guestinfo.pmesh.token (no VMware Tools RPC)"
  fi
  log "the OVF environment still lists pmesh.token (spent); clear it in vCenter under the VM's vApp Options if wanted"

  mkdir -p "$(dirname "$marker")"
  date -u '+%Y-%m-%dT%H:%M:%SZ' >"$marker"
  systemctl disable pmesh-firstboot.service || log "could not disable pmesh-firstboot.service; the marker keeps it from running again"
  log "done"
}

case "${1:-}" in
  --show-config)
    load_properties
    show_config
    ;;
  '') main ;;
  *)
    printf 'usage: %s [--show-config]\n' "${0##*/}" >&2
    exit 2
    ;;
esac
