#!/usr/bin/env bash
# Sets up and runs collect-agent end to end on a fresh Debian machine:
# installs what the demo needs, builds, starts a local nats-server on
# 127.0.0.1:4222 and, unless DEMO_KUBECONFIG points at a real cluster, the
# simulated Kubernetes API server; runs the agent against them, creates a few
# Warning events in the simulated cluster, and prints everything the agent
# publishes on agent.> for DEMO_SECONDS seconds (default 20). Ctrl-C stops
# everything. A helper that does not start stops the demo at once with the
# helper's own error message.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
seconds=${DEMO_SECONDS:-20}
nats_port=${DEMO_NATS_PORT:-4222}
http_port=${DEMO_HTTP_PORT:-18080}
work=$(mktemp -d /tmp/collect-agent-demo.XXXXXX)
pids=()
started=$(date +%s)
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	echo "demo files (logs, kubeconfig) kept in $work"
}
trap cleanup EXIT INT TERM

step() { printf '== [%3ss] %s\n' "$(($(date +%s) - started))" "$*"; }

# fail HELPER LOG: the helper did not start; show why and stop.
fail() {
	echo "demo: $1 did not start; its output ($2):" >&2
	tail -n 30 "$2" | sed 's/^/   | /' >&2
	exit 1
}

# wait_until SECONDS PID LOG NAME COMMAND...: poll COMMAND until it succeeds;
# fail at once when PID exits, or after SECONDS.
wait_until() {
	local limit=$1 pid=$2 log=$3 name=$4
	shift 4
	local deadline=$(($(date +%s) + limit))
	until "$@" >/dev/null 2>&1; do
		kill -0 "$pid" 2>/dev/null || fail "$name (exited)" "$log"
		[ "$(date +%s)" -lt "$deadline" ] || fail "$name (not up after ${limit}s)" "$log"
		sleep 0.1
	done
}

port_open() { # host port
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

step "checking Debian packages (build, nats-server, Python for the simulated cluster)"
scripts/install-deps.sh demo

step "building collect-agent (meson + ninja)"
if [ ! -f build/build.ninja ]; then
	meson setup build >"$work/meson-setup.log" 2>&1 || fail "meson setup" "$work/meson-setup.log"
fi
# ninja prints "[n/N] ..." per step: keep one line per step visible.
set +o pipefail
ninja -C build 2>&1 | tee "$work/ninja.log" | grep --line-buffered -E '^\[[0-9]+/[0-9]+\]' |
	awk -F'[][/]' '{ if ($2 == $3 || $2 % 20 == 0) { printf "   %s/%s build steps\n", $2, $3; fflush() } }'
built=${PIPESTATUS[0]}
set -o pipefail
[ "$built" -eq 0 ] || fail "the build" "$work/ninja.log"

if port_open 127.0.0.1 "$nats_port"; then
	echo "demo: 127.0.0.1:$nats_port is already in use (another nats-server?); set DEMO_NATS_PORT" >&2
	exit 1
fi
step "nats-server on 127.0.0.1:$nats_port"
nats-server -a 127.0.0.1 -p "$nats_port" >"$work/nats.log" 2>&1 &
pids+=($!)
wait_until 10 "$!" "$work/nats.log" nats-server port_open 127.0.0.1 "$nats_port"

kubeconfig=${DEMO_KUBECONFIG:-}
if [ -z "$kubeconfig" ]; then
	step "simulated Kubernetes API server"
	$PY tests/kubesim/kubesim.py --state-dir "$work/kubesim" --metrics-api >"$work/kubesim.out" 2>"$work/kubesim.log" &
	pids+=($!)
	wait_until 20 "$!" "$work/kubesim.log" "the simulated API server" grep -q READY "$work/kubesim.out"
	read -r _ api control <"$work/kubesim.out"
	echo "   API $api, control $control"
	kubeconfig="$work/kubesim/kubeconfig"
fi

step "collect-agent (probes and metrics on http://127.0.0.1:$http_port)"
COLLECT_AGENT_HTTP_LISTEN=127.0.0.1:$http_port COLLECT_AGENT_HEARTBEAT_INTERVAL=5s COLLECT_AGENT_METRICS_INTERVAL=10s \
COLLECT_AGENT_LOG_FORMAT=text NODE_NAME=node-a \
	build/collect-agent --kubeconfig "$kubeconfig" --nats "nats://127.0.0.1:$nats_port" >"$work/agent.log" 2>&1 &
agent=$!
pids+=($agent)
wait_until 30 "$agent" "$work/agent.log" collect-agent curl -sf "http://127.0.0.1:$http_port/health/ready"
echo "   ready: $(curl -s "http://127.0.0.1:$http_port/health/ready")"

step "what the agent publishes on agent.> (${seconds}s)"
$PY scripts/nats_tail.py --server "nats://127.0.0.1:$nats_port" --seconds "$seconds" 'agent.>' &
tail_pid=$!
sleep 2
if [ -z "${DEMO_KUBECONFIG:-}" ]; then
	step "emitting 3 Warning events in namespace demo"
	curl -sf -X POST "$control/emit-events" -H 'Content-Type: application/json' \
		-d '{"namespace":"demo","count":3,"type":"Warning","reason":"BackOff","message":"Back-off restarting failed container"}' >/dev/null
	step "a pod crash-looping on node-a (the next metrics sample lists it as unhealthy)"
	curl -sf -X POST "$control/objects" -H 'Content-Type: application/json' -d '{"resource":"pods","object":{
		"metadata":{"name":"web-0","namespace":"default"},
		"spec":{"nodeName":"node-a","containers":[{"name":"web","image":"nginx:1.25","resources":{"requests":{"cpu":"250m","memory":"64Mi"}}}]},
		"status":{"phase":"Running","containerStatuses":[{"name":"web","ready":false,"restartCount":5,"image":"nginx:1.25",
			"state":{"waiting":{"reason":"CrashLoopBackOff"}}}]}}}' >/dev/null
fi
wait $tail_pid || true
step "metrics (excerpt)"
curl -s "http://127.0.0.1:$http_port/metrics" | grep -E '^agent_(connected|events_published_total|nats_reconnects_total|metrics_samples_total|metrics_objects)' || true
kill -0 "$agent" 2>/dev/null || fail "collect-agent (exited during the demo)" "$work/agent.log"
