# The vSphere target, shared by pmesh's vSphere patterns (keep every copy identical:
# tests/tests/vsphere_target.rs checks it). Sourced by sh before any govc command.
#
# In: GOVC_URL, GOVC_USERNAME, GOVC_PASSWORD (from the pattern's env, never a command line),
# PMESH_THUMBPRINT (SHA-1, `AA:BB:…`), PMESH_INSECURE (true/false), and /pmesh/ca.pem (a
# CA bundle, possibly empty). Out: govc's TLS trust, pinned to the thumbprint or the CA, or
# off when insecure is true, which it warns about.
set -eu
vsphere_host=$(printf '%s' "$GOVC_URL" | sed -e 's|^[A-Za-z]*://||' -e 's|/.*$||')
unset GOVC_INSECURE GOVC_TLS_KNOWN_HOSTS GOVC_TLS_CA_CERTS
if [ "${PMESH_INSECURE:-false}" = "true" ]; then
  echo "warning: insecure: true: the certificate of $vsphere_host is not verified, so anyone between here and it can read the password" >&2
  export GOVC_INSECURE=1
else
  if [ -n "${PMESH_THUMBPRINT:-}" ]; then
    pmesh_known_hosts=$(mktemp)
    printf '%s %s\n' "$vsphere_host" "$(printf '%s' "$PMESH_THUMBPRINT" | tr a-f A-F)" >"$pmesh_known_hosts"
    export GOVC_TLS_KNOWN_HOSTS="$pmesh_known_hosts"
  fi
  if grep -q "BEGIN CERTIFICATE" /pmesh/ca.pem 2>/dev/null; then
    export GOVC_TLS_CA_CERTS=/pmesh/ca.pem
  fi
fi
