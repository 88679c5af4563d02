#!/bin/sh
# Writes a stand-in OVF Tool `.bundle` (4.6.2 and older ship one) to $1: a shell script
# with the real installer's interface (`--console --required --eulas-agreed`; anything else
# refused as a headless install would need), installing the stand-in ovftool to
# /usr/lib/vmware-ovftool with /usr/bin/ovftool linked to it. $2 is a line of text that
# makes the bundle's checksum unique.
set -eu
here="$(dirname "$0")"
{
  echo '#!/bin/sh'
  echo "# $2"
  echo 'console=; required=; eulas='
  echo 'for arg in "$@"; do case "$arg" in --console) console=1 ;; --required) required=1 ;; --eulas-agreed) eulas=1 ;; *) echo "unknown option $arg" >&2; exit 2 ;; esac; done'
  echo '[ -n "$console" ] && [ -n "$required" ] && [ -n "$eulas" ] || { echo "Extracting VMware Installer...done. (a GUI installer would ask now)" >&2; exit 1; }'
  echo 'echo "Extracting VMware Installer...done."'
  echo 'mkdir -p /usr/lib/vmware-ovftool'
  echo "cat > /usr/lib/vmware-ovftool/ovftool <<'OVFTOOL'"
  sed 's/^STANDIN_VERSION="${STANDIN_VERSION:-4.6.3 (build-24031167)}"$/STANDIN_VERSION="4.6.2 (build-22220919)"/' "$here/ovftool"
  echo 'OVFTOOL'
  echo 'chmod 0755 /usr/lib/vmware-ovftool/ovftool'
  echo 'ln -sf /usr/lib/vmware-ovftool/ovftool /usr/bin/ovftool'
  echo 'echo "Installing VMware OVF Tool component for Linux 4.6.2"'
  echo 'echo "Installation was successful."'
} > "$1"
