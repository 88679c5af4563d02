# Helpers of the appliance scripts (sourced after vsphere/target.sh).

# Where the VMs are looked for and made: the folder given, or the whole inventory.
ROOT=${FOLDER:-/}

# The inventory path of the VM named $1 under $ROOT ("" when there is none); more than one
# VM of that name is an error, since pmesh could not tell which is meant.
vm_path() {
  found=$(govc find "$ROOT" -type m -name "$1")
  if [ "$(printf '%s\n' "$found" | grep -c .)" -gt 1 ]; then
    echo "error: several VMs are named $1 under $ROOT: $(printf '%s' "$found" | tr '\n' ' ')" >&2
    exit 1
  fi
  printf '%s' "$found"
}

# Whether the VM at path $1 carries this instance's marks in its ExtraConfig. Its ExtraConfig
# also holds the OVF properties, the password among them: it is read into a variable only.
owned() {
  extra=$(govc vm.info -e "$1")
  printf '%s\n' "$extra" | grep -qx " *pmesh\.instance: *$MARK_INSTANCE *" &&
    printf '%s\n' "$extra" | grep -qx " *pmesh\.agent: *$MARK_AGENT *"
}

# The power state of the VM at path $1 (poweredOn, poweredOff, suspended).
power_state() {
  govc vm.info "$1" | sed -n 's/^ *Power state: *//p'
}
