#!/bin/sh
# Runs vcsa-deploy install with the rendered JSON (0600: it holds the passwords, which are on
# no command line): `precheck` with --precheck-only, `install` for the deployment. Its
# `Task: …(RUNNING NN/100)` lines are the step's progress.
set -eu
mode="$1"
set -- install --accept-eula --acknowledge-ceip
if [ "${PMESH_INSECURE:-false}" = "true" ]; then
  echo "warning: insecure: vcsa-deploy will not verify the target's certificate (--no-ssl-certificate-verification)" >&2
  set -- "$@" --no-ssl-certificate-verification
fi
if [ "$mode" = precheck ]; then
  set -- "$@" --precheck-only
fi
# vcsa-deploy writes its logs under --log-dir; /tmp is the container's own.
exec vcsa-deploy "$@" --log-dir /tmp/vcsa-logs /pmesh/vcsa.json
