#!/bin/sh
# Healthy when rpcbind answers and, with NFSv3, mountd lists every export (an export whose
# directory ganesha could not open is missing from the list); with NFSv4 only, when nfsd is
# registered for version 4.
set -eu
rpcinfo -p 127.0.0.1 > "${TMPDIR:-/tmp}/rpcinfo" 2>&1 || { cat "${TMPDIR:-/tmp}/rpcinfo" >&2; exit 1; }
if grep -qx 3 /pmesh/versions.txt; then
  listed="$(showmount -e 127.0.0.1)"
  while IFS= read -r name; do
    [ -z "$name" ] || printf '%s\n' "$listed" | grep -q "^/exports/$name " || { echo "check: /exports/$name is not exported" >&2; exit 1; }
  done < /pmesh/exports.txt
else
  rpcinfo -T tcp 127.0.0.1 100003 4 > /dev/null
fi
