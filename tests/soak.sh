#!/usr/bin/env bash
# The soak: a real master (heartbeat every 10 s) against many simulated agents for a while.
#
#   tests/soak.sh [--agents N] [--minutes M]      (defaults: 500 agents, 10 minutes)
#
# The agents are `pmesh-agent simulate`: one process serving N real identities, each enrolled
# through the real join with its own one-time token, certificate and mTLS listener on loopback,
# answering the heartbeat with the real agent service. Every 10 s the script samples the
# master's RSS (VmRSS) and open file descriptors from /proc, and every agent's status
# (`pmesh agents ls -o json`). Any agent reported anything but up once all were up is a false
# "down": the simulated identities never stop while the soak runs.
#
# It prints a table and three verdicts: no false down; the master's RSS at the end within 10%
# of the sample after warm-up (the end of the 2nd minute, or of the first fifth of a shorter
# run); no more open descriptors at the end than after warm-up. Exit 0 when all three hold,
# 1 when one does not, 2 on bad arguments. Release binaries from $PMESH_BIN_DIR, else built
# into ${CARGO_TARGET_DIR:-target}/release. Everything it starts is stopped, and its temporary
# directory removed, on exit and on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

agents=500
minutes=10
usage() {
	echo "usage: tests/soak.sh [--agents N] [--minutes M]" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	[ $# -ge 2 ] || usage
	case "$1" in
	--agents) agents="$2" ;;
	--minutes) minutes="$2" ;;
	*) usage ;;
	esac
	shift 2
done
if ! [[ "$agents" =~ ^[0-9]+$ && "$agents" -ge 1 && "$agents" -le 20000 ]]; then usage; fi
if ! [[ "$minutes" =~ ^[0-9]+$ && "$minutes" -ge 1 && "$minutes" -le 600 ]]; then usage; fi

if [ -n "${PMESH_BIN_DIR:-}" ]; then
	bin="$PMESH_BIN_DIR"
else
	cargo build --release --bins --locked
	bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
fi
for name in pmesh pmesh-agent; do
	[ -x "$bin/$name" ] || {
		echo "soak: $bin/$name is missing" >&2
		exit 2
	}
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/pmesh-soak.XXXXXX")"
master_pid=""
sim_pid=""
# shellcheck disable=SC2317 # called from the traps
stop() {
	local pid="$1" waited=0
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 150 ]; do
		sleep 0.1
		waited=$((waited + 1))
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317 # called from the traps
cleanup() {
	stop "$sim_pid"
	stop "$master_pid"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pmesh() { "$bin/pmesh" --data-dir "$tmp/master" "$@"; }

# A loopback port nothing listens on (bounded tries).
port=""
for _ in $(seq 1 50); do
	candidate=$((20000 + RANDOM % 30000))
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
		port="$candidate"
		break
	fi
done
[ -n "$port" ] || {
	echo "soak: no free loopback port" >&2
	exit 1
}
master="127.0.0.1:$port"

# Polls "$@" every second until it succeeds or $1 seconds pass.
wait_for() {
	local seconds="$1"
	shift
	for _ in $(seq 1 "$seconds"); do
		"$@" && return 0
		sleep 1
	done
	return 1
}
# shellcheck disable=SC2317 # called through wait_for
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
up_count() { pmesh agents ls -o json 2>/dev/null | jq '[.[] | select(.status == "up")] | length'; }
# shellcheck disable=SC2317 # called through wait_for
all_up() { [ "$(up_count || echo 0)" -eq "$agents" ]; }

echo "soak: $agents agents, $minutes minutes, heartbeat every 10 s; master on $master; $(nproc) cores"
pmesh ca init --listen "$master" >/dev/null
RUST_LOG=info "$bin/pmesh" serve --data-dir "$tmp/master" --check-interval 10s >"$tmp/master.log" 2>&1 &
master_pid=$!
wait_for 30 listening || {
	echo "soak: the master did not listen" >&2
	tail -20 "$tmp/master.log" >&2
	exit 1
}

started=$SECONDS
for _ in $(seq 1 "$agents"); do
	pmesh token create --ttl 2h -o json >>"$tmp/tokens"
done
echo "soak: $agents one-time tokens in $((SECONDS - started)) s"

# No Docker for the simulated identities: their Info would otherwise ask the shared engine
# 2 × N times every 10 s. They report Docker unreachable; the master does not care.
started=$SECONDS
DOCKER_HOST="unix://$tmp/no-docker.sock" RUST_LOG=warn "$bin/pmesh-agent" simulate \
	--count "$agents" --master "$master" --token-file "$tmp/tokens" --data "$tmp/agents" \
	--for "$((minutes * 60 + 600))s" >"$tmp/sim.log" 2>&1 &
sim_pid=$!
if ! wait_for $((120 + agents / 5)) all_up; then
	echo "soak: only $(up_count || echo 0) of $agents agents came up" >&2
	tail -20 "$tmp/sim.log" >&2
	exit 1
fi
echo "soak: $agents agents enrolled and up in $((SECONDS - started)) s; sampling every 10 s"

ticks="$(getconf CLK_TCK)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }

samples=$((minutes * 6))
warm=$((minutes >= 3 ? 12 : (samples + 4) / 5))
cpu_start="$(cpu_ticks "$master_pid")"
sim_cpu_start="$(cpu_ticks "$sim_pid")"
downs_in_log_before="$(grep -c "agent is down" "$tmp/master.log" || true)"
begin=$SECONDS
false_downs=0
declare -A ever_down=()
rss=()
fd=()
for sample in $(seq 1 "$samples"); do
	while [ $((SECONDS - begin)) -lt $((sample * 10)) ]; do sleep 0.2; done
	kill -0 "$sim_pid" 2>/dev/null || {
		echo "soak: the simulated agents exited early" >&2
		tail -20 "$tmp/sim.log" >&2
		exit 1
	}
	rss+=("$(rss_kib "$master_pid")")
	fd+=("$(fds "$master_pid")")
	listing="$(pmesh agents ls -o json)"
	not_up="$(jq -r '.[] | select(.status != "up") | .name' <<<"$listing")"
	listed="$(jq length <<<"$listing")"
	[ "$listed" -eq "$agents" ] || echo "soak: sample $sample lists $listed agents" >&2
	for name in $not_up; do
		false_downs=$((false_downs + 1))
		ever_down[$name]=1
	done
	if [ $((sample % 6)) -eq 0 ]; then
		echo "soak: minute $((sample / 6)): master RSS ${rss[-1]} KiB, ${fd[-1]} fds, $(wc -w <<<"$not_up") not up"
	fi
done
elapsed=$((SECONDS - begin))
cpu=$(($(cpu_ticks "$master_pid") - cpu_start))
sim_cpu=$(($(cpu_ticks "$sim_pid") - sim_cpu_start))
sim_rss="$(rss_kib "$sim_pid")"
downs_in_log=$(($(grep -c "agent is down" "$tmp/master.log" || true) - downs_in_log_before))

stats() { printf '%s\n' "$@" | sort -n | awk 'NR == 1 { min = $1 } { max = $1 } END { print min, max }'; }
read -r rss_min rss_max <<<"$(stats "${rss[@]}")"
read -r fd_min fd_max <<<"$(stats "${fd[@]}")"
rss_warm="${rss[$((warm - 1))]}"
fd_warm="${fd[$((warm - 1))]}"
rss_last="${rss[-1]}"
fd_last="${fd[-1]}"
drift="$(awk -v a="$rss_warm" -v b="$rss_last" 'BEGIN { printf "%+.1f", (b - a) * 100 / a }')"
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

echo
echo "| Master, $agents agents, $minutes min, heartbeat 10 s | first | after warm-up (sample $warm) | last | min | max |"
echo "| --- | --- | --- | --- | --- | --- |"
echo "| RSS (MiB) | $(mib "${rss[0]}") | $(mib "$rss_warm") | $(mib "$rss_last") | $(mib "$rss_min") | $(mib "$rss_max") |"
echo "| open fds | ${fd[0]} | $fd_warm | $fd_last | $fd_min | $fd_max |"
echo
echo "| Over the run | value |"
echo "| --- | --- |"
echo "| samples | $samples, every 10 s, over $elapsed s |"
echo "| false downs (agent-samples not up / distinct agents) | $false_downs / ${#ever_down[@]} |"
echo "| \"agent is down\" lines in the master's log | $downs_in_log |"
echo "| master CPU | $(awk -v t="$cpu" -v h="$ticks" -v e="$elapsed" 'BEGIN { printf "%.1f s (%.1f%% of one core)", t / h, t * 100 / h / e }') |"
echo "| master RSS ÷ agents (last sample, its own baseline included) | $(awk -v k="$rss_last" -v n="$agents" 'BEGIN { printf "%.1f KiB", k / n }') |"
echo "| simulated agents' process: CPU, RSS | $(awk -v t="$sim_cpu" -v h="$ticks" -v e="$elapsed" 'BEGIN { printf "%.1f s (%.1f%% of one core)", t / h, t * 100 / h / e }'), $(mib "$sim_rss") MiB ($(awk -v k="$sim_rss" -v n="$agents" 'BEGIN { printf "%.1f KiB", k / n }') per identity) |"
echo

failed=0
verdict() {
	if [ "$1" = pass ]; then echo "PASS  $2"; else
		echo "FAIL  $2"
		failed=1
	fi
}
[ "$false_downs" -eq 0 ] && [ "$downs_in_log" -eq 0 ] && ok=pass || ok=fail
verdict "$ok" "no false down ($false_downs agent-samples not up, $downs_in_log down transitions logged)"
awk -v d="$drift" 'BEGIN { exit !(d <= 10 && d >= -10) }' && ok=pass || ok=fail
verdict "$ok" "master RSS flat within 10% ($(mib "$rss_warm") MiB after warm-up → $(mib "$rss_last") MiB at the end, ${drift}%)"
[ "$fd_last" -le "$fd_warm" ] && ok=pass || ok=fail
verdict "$ok" "no fd growth ($fd_warm after warm-up → $fd_last at the end)"
if [ "$downs_in_log" -gt 0 ]; then
	echo "the master's down lines:"
	grep "agent is down" "$tmp/master.log" | tail -20
fi
exit "$failed"
