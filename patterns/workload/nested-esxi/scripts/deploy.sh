# Deploys one nested ESXi host, HOST_NAME (the HOST_INDEX-th of the list), from
# /pmesh/esxi.ova, unless a VM of that name carrying this instance's marks exists; then waits
# until it reports its address. A VM of that name without the marks is never touched.
. /pmesh/common.sh

# $1 plus $2, as IPv4 addresses count.
ip_add() {
  old_ifs=$IFS
  IFS=.
  # shellcheck disable=SC2086 # split on the dots on purpose
  set -- $1 "$2"
  IFS=$old_ifs
  n=$((($1 << 24) + ($2 << 16) + ($3 << 8) + $4 + $5))
  echo "$(((n >> 24) & 255)).$(((n >> 16) & 255)).$(((n >> 8) & 255)).$((n & 255))"
}

# $1 as the inside of a JSON string (values hold no control characters: pmesh refuses them).
json() {
  printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'
}

address=$(ip_add "$FIRST_IP" $((HOST_INDEX - 1)))
# The appliance reads its booleans as "True" and "False".
case "$SSH" in true) ssh=True ;; *) ssh=False ;; esac
fqdn="$HOST_NAME.$DOMAIN"
path=$(vm_path "$HOST_NAME")
if [ -n "$path" ]; then
  if ! owned "$path"; then
    echo "error: $path exists and does not carry this instance's marks (pmesh.instance=$MARK_INSTANCE): pmesh leaves it alone; remove or rename it, or choose another host name" >&2
    exit 1
  fi
  echo "$HOST_NAME: $path is this instance's already: not deployed again"
else
  umask 077
  options=$(mktemp)
  trap 'rm -f "$options"' EXIT
  # The options file holds the ESXi password: it is written by the shell itself (no process
  # sees it in its arguments), readable only here, and removed on exit.
  cat >"$options" <<JSON
{
  "DiskProvisioning": "thin",
  "InjectOvfEnv": true,
  "PowerOn": false,
  "WaitForIP": false,
  "Annotation": "Nested ESXi $(json "$fqdn"), deployed by pmesh (instance $(json "$MARK_INSTANCE"))",
  "NetworkMapping": [{"Name": "$(json "$OVA_NETWORK")", "Network": "$(json "$NETWORK")"}],
  "PropertyMapping": [
    {"Key": "guestinfo.hostname", "Value": "$(json "$fqdn")"},
    {"Key": "guestinfo.ipaddress", "Value": "$address"},
    {"Key": "guestinfo.netmask", "Value": "$(json "$NETMASK")"},
    {"Key": "guestinfo.gateway", "Value": "$(json "$GATEWAY")"},
    {"Key": "guestinfo.dns", "Value": "$(json "$DNS")"},
    {"Key": "guestinfo.domain", "Value": "$(json "$DOMAIN")"},
    {"Key": "guestinfo.ntp", "Value": "$(json "$NTP")"},
    {"Key": "guestinfo.password", "Value": "$(json "$ESXI_PASSWORD")"},
    {"Key": "guestinfo.ssh", "Value": "$ssh"}
  ]
}
JSON
  set -- -options "$options" -name "$HOST_NAME"
  [ -z "$FOLDER" ] || set -- "$@" -folder "$FOLDER"
  [ -z "$DATASTORE" ] || set -- "$@" -ds "$DATASTORE"
  [ -z "$POOL" ] || set -- "$@" -pool "$POOL"
  echo "$HOST_NAME: deploying $fqdn at $address"
  govc import.ova "$@" /pmesh/esxi.ova
  rm -f "$options"
  path=$(vm_path "$HOST_NAME")
  govc vm.change -vm "$path" -c "$CPUS" -m $((MEMORY_GB * 1024)) \
    -e "pmesh.instance=$MARK_INSTANCE" -e "pmesh.agent=$MARK_AGENT" -e "pmesh.host=$fqdn"
fi
if [ "$(power_state "$path")" != poweredOn ]; then
  govc vm.power -on "$path"
fi
echo "$HOST_NAME: waiting until it reports $address"
deadline=$(($(date +%s) + READY_MINUTES * 60))
while :; do
  reported=$(govc vm.ip -wait 10s "$path" 2>/dev/null || true)
  [ "$reported" = "$address" ] && break
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "error: $HOST_NAME reports '${reported:-no address}', not $address, after $READY_MINUTES minutes" >&2
    exit 1
  fi
  sleep 5
done
echo "$HOST_NAME: ready at $address ($fqdn)"
