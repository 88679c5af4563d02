# Deploys the appliance VM_NAME from /pmesh/appliance.ova with /pmesh/options.json (rendered
# by pmesh, 0600: its OVF properties hold the passwords, which reach govc through that file and
# no command line), unless a VM of that name carrying this instance's marks exists; then marks
# it as this instance's and powers it on. A VM of that name without the marks is never touched.
. /pmesh/common.sh
path=$(vm_path "$VM_NAME")
if [ -n "$path" ]; then
  if ! owned "$path"; then
    echo "error: $path exists and does not carry this instance's marks (pmesh.instance=$MARK_INSTANCE): pmesh leaves it alone; remove or rename it, or choose another name" >&2
    exit 1
  fi
  echo "$VM_NAME: $path is this instance's already: not deployed again"
else
  set -- -options /pmesh/options.json -name "$VM_NAME"
  [ -z "$FOLDER" ] || set -- "$@" -folder "$FOLDER"
  [ -z "$DATASTORE" ] || set -- "$@" -ds "$DATASTORE"
  [ -z "$POOL" ] || set -- "$@" -pool "$POOL"
  echo "$VM_NAME: deploying $FQDN at $IP"
  govc import.ova "$@" /pmesh/appliance.ova
  path=$(vm_path "$VM_NAME")
  govc vm.change -vm "$path" -e "pmesh.instance=$MARK_INSTANCE" -e "pmesh.agent=$MARK_AGENT" -e "pmesh.host=$FQDN"
fi
if [ "$(power_state "$path")" != poweredOn ]; then
  govc vm.power -on "$path"
fi
echo "$VM_NAME: powered on; its API is awaited at https://$IP/"
