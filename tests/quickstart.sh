#!/usr/bin/env bash
# pmesh on local defaults: builds pmesh and the tool image, creates a mesh, starts a master
# and two agents on loopback over mutual TLS, enrols the agents with one-time tokens, lists
# them, then registers the DNS pattern and dispatches it to pc-1, live, and queries it.
#
#   tests/quickstart.sh          start (or restart) the local mesh and list the agents
#   tests/quickstart.sh stop     stop it
#
# State lives in $PMESH_LOCAL (default ./.pmesh-local); ports are $PMESH_PORT (master,
# default 7443), the two after it (agents) and $PMESH_PORT+10 (the DNS pattern, UDP and TCP). The mesh keeps running after the script, so
# `pmesh --data-dir .pmesh-local/master agents ls` and friends work; nothing leaves loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

state="${PMESH_LOCAL:-$PWD/.pmesh-local}"
port="${PMESH_PORT:-7443}"
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug"

stop() {
  # The DNS pattern's containers belong to dockerd, not to the agents: remove them by label.
  if command -v docker >/dev/null; then
    docker ps -aq --filter label=io.pmesh.instance=quickstart-dns | xargs -r docker rm -f >/dev/null
    docker network ls -q --filter label=io.pmesh.instance=quickstart-dns | xargs -r docker network rm >/dev/null
    docker volume ls -q --filter label=io.pmesh.instance=quickstart-dns | xargs -r docker volume rm >/dev/null
  fi
  for pidfile in "$state"/*.pid; do
    [[ -e "$pidfile" ]] || continue
    kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

wait_for() { # what, command...
  local what="$1"; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "quickstart: timed out waiting for $what; logs are in $state/*.log" >&2
  exit 1
}

if [[ "${1:-}" == "stop" ]]; then
  stop
  echo "stopped the local mesh in $state"
  exit 0
fi

if [[ -z "${PMESH_QUICKSTART_NO_BUILD:-}" ]]; then
  echo "==> building pmesh"
  cargo build --workspace --bins --locked
  echo "==> building the tool image from Debian packages (cached by tag)"
  tests/images/build.sh
fi

stop
rm -rf "$state"
mkdir -p "$state"
pmesh() { "$bin/pmesh" --data-dir "$state/master" "$@"; }

echo "==> creating the mesh CA in $state/master"
pmesh ca init --listen "127.0.0.1:$port"

echo "==> starting the master on 127.0.0.1:$port"
"$bin/pmesh" serve --data-dir "$state/master" --check-interval 2s >"$state/master.log" 2>&1 &
echo $! >"$state/master.pid"
wait_for "the master" pmesh agents ls

for idx in 1 2; do
  name="pc-$idx"
  agent_port=$((port + idx))
  echo "==> enrolling agent $name on 127.0.0.1:$agent_port"
  token_json="$(pmesh token create --name "$name" --label site=local --ttl 5m -o json)"
  token="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$token_json")"
  fingerprint="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["ca_fingerprint"])' <<<"$token_json")"
  "$bin/pmesh-agent" join --data-dir "$state/$name" --master "127.0.0.1:$port" \
    --token "$token" --ca-fingerprint "$fingerprint" --advertise "127.0.0.1:$agent_port"
  # No registry is reachable here: the DNS pattern's BIND9 image is rewritten to the image
  # built from Debian's bind9 package.
  cat >"$state/$name/agent.toml" <<TOML
[images.rewrite]
"internetsystemsconsortium/bind9:9.18" = "pmesh-test/tools:bookworm-1"
TOML
  "$bin/pmesh-agent" run --data-dir "$state/$name" >"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
done

both_up() { [[ "$(pmesh agents ls -o json | grep -c '"status": "up"')" == 2 ]]; }
wait_for "both agents to be up" both_up

echo "==> agents"
pmesh agents ls

dns_port=$((port + 10))
echo "==> registering the DNS pattern and running it on pc-1 (port $dns_port)"
pmesh pattern push patterns/shared/dns
pmesh run dns --on pc-1 --instance quickstart-dns -p zone=lab.local \
  -p "listen_port=$dns_port" -p 'records=["vcsa A 10.0.0.10", "esx01 A 10.0.0.11"]'

echo "==> dig @127.0.0.1 -p $dns_port vcsa.lab.local"
docker run --rm --network host pmesh-test/tools:bookworm-1 \
  dig +short +time=2 +tries=3 @127.0.0.1 -p "$dns_port" vcsa.lab.local

echo
echo "The mesh is running. Try: $bin/pmesh --data-dir $state/master runs ls"
echo "Stop it, DNS containers included, with: tests/quickstart.sh stop"
