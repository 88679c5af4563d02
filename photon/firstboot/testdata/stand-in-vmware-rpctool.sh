#!/bin/sh
# A STAND-IN for open-vm-tools' vmware-rpctool, used by pmesh's tests only (tests/tests/photon.rs)
# to run the first boot in a container, where no VMware hypervisor answers guest RPCs. It is
# installed as /usr/bin/vmware-rpctool, where Photon's open-vm-tools puts the real one.
#
#   vmware-rpctool 'info-get guestinfo.KEY'        prints the file $GUESTINFO_DIR/KEY, as the
#                                                  real tool prints the VM's guestinfo variable
#                                                  (KEY=ovfEnv: the OVF environment XML)
#   vmware-rpctool 'info-set guestinfo.KEY VALUE'  writes VALUE to that file
#
# A missing key fails as the real tool does ("No value found", exit 1). Each call is logged to
# $GUESTINFO_LOG, the command without any value.
dir="${GUESTINFO_DIR:-/var/lib/stand-in-guestinfo}"
log="${GUESTINFO_LOG:-/var/log/stand-in-vmware-rpctool.log}"
case "${1:-}" in
  "info-get guestinfo."*)
    key=${1#info-get guestinfo.}
    echo "info-get guestinfo.$key" >>"$log"
    if [ -f "$dir/$key" ]; then
      exec cat "$dir/$key"
    fi
    ;;
  "info-set guestinfo."*)
    rest=${1#info-set guestinfo.}
    key=${rest%% *}
    echo "info-set guestinfo.$key" >>"$log"
    mkdir -p "$dir"
    value=${rest#"$key"}
    printf '%s' "${value# }" >"$dir/$key"
    exit 0
    ;;
esac
echo "No value found" >&2
exit 1
