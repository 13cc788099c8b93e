#!/usr/bin/env bash
# Sets up and runs collect-agent end to end on a fresh Debian machine:
# installs dependencies, builds, starts a local nats-server on 127.0.0.1:4222
# and, unless DEMO_KUBECONFIG points at a real cluster, the simulated
# Kubernetes API server; runs the agent against them, creates a few Warning
# events in the simulated cluster, and prints everything the agent publishes
# on agent.> for DEMO_SECONDS seconds (default 20). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PY=/usr/bin/python3
seconds=${DEMO_SECONDS:-20}
work=$(mktemp -d /tmp/collect-agent-demo.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	echo "demo files (logs, kubeconfig) kept in $work"
}
trap cleanup EXIT INT TERM

scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null

echo "== nats-server on 127.0.0.1:4222"
nats-server -a 127.0.0.1 -p 4222 >"$work/nats.log" 2>&1 &
pids+=($!)

kubeconfig=${DEMO_KUBECONFIG:-}
if [ -z "$kubeconfig" ]; then
	echo "== simulated Kubernetes API server"
	$PY tests/kubesim/kubesim.py --state-dir "$work/kubesim" >"$work/kubesim.out" 2>"$work/kubesim.log" &
	pids+=($!)
	for _ in $(seq 100); do grep -q READY "$work/kubesim.out" 2>/dev/null && break; sleep 0.1; done
	read -r _ api control <"$work/kubesim.out"
	echo "   API $api, control $control"
	kubeconfig="$work/kubesim/kubeconfig"
fi

echo "== collect-agent (http://127.0.0.1:18080/metrics)"
COLLECT_AGENT_HTTP_LISTEN=127.0.0.1:18080 COLLECT_AGENT_HEARTBEAT_INTERVAL=5s \
COLLECT_AGENT_LOG_FORMAT=text NODE_NAME=node-a \
	build/collect-agent --kubeconfig "$kubeconfig" --nats nats://127.0.0.1:4222 >"$work/agent.log" 2>&1 &
pids+=($!)

$PY scripts/nats_tail.py --seconds "$seconds" 'agent.>' &
tail_pid=$!
sleep 2
if [ -z "${DEMO_KUBECONFIG:-}" ]; then
	echo "== emitting 3 Warning events in namespace demo"
	curl -sf -X POST "$control/emit-events" -H 'Content-Type: application/json' \
		-d '{"namespace":"demo","count":3,"type":"Warning","reason":"BackOff","message":"Back-off restarting failed container"}' >/dev/null || true
fi
echo "== readiness: $(curl -s http://127.0.0.1:18080/health/ready)"
wait $tail_pid || true
echo "== metrics (excerpt)"
curl -s http://127.0.0.1:18080/metrics | grep -E '^agent_(connected|events_published_total|nats_reconnects_total)' || true
