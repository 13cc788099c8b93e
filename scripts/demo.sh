#!/usr/bin/env bash
# The tour of collect-agent, on a fresh Debian machine: installs what it
# needs, builds, starts a local nats-server and a simulated Kubernetes API
# server holding failing workloads (scripts/demo_cluster.py), runs the agent
# against them, and shows with agentctl what the orchestrator side sees:
#   1. the agent online, with the cluster ID it found   (agentctl agents)
#   2. failure events arriving, with their categories   (agentctl tail events)
#   3. a metrics sample, summarised                     (agentctl tail metrics)
#   4. a diagnostic command run through the agent       (agentctl exec -- kubectl get pods -A)
# Every process it starts is stopped when it ends, fails or is interrupted.
#
# Knobs (environment):
#   DEMO_KUBECONFIG=PATH    a real cluster instead of the simulated one; the
#                           tour only reads there (the agent's watches, and
#                           `kubectl get pods -A`)
#   DEMO_SECONDS=N          the longest wait for the events and for a metrics
#                           sample (default 30); on a real cluster, how long
#                           it listens for Warning events
#   DEMO_EVENTS=N           real cluster: stop listening after N events (10)
#   DEMO_NATS_PORT=P        nats-server's port (4222)
#   DEMO_NATS_MONITOR_PORT=P  its monitoring port (8222)
#   DEMO_HTTP_PORT=P        the agent's probes and /metrics (18080)
#   DEMO_WORK_DIR=DIR       logs, kubeconfig, pids (default a new /tmp/collect-agent-tour.*)
#   DEMO_BUILD_DIR=DIR      the meson build directory (build, in the repository)
#   DEMO_INSTALL=yes|check  install missing Debian packages (yes), or only
#                           check and stop naming them (check: no apt-get)
#   DEMO_KEEP=1             after the tour, keep everything running for you to
#                           try agentctl yourself, until Ctrl-C
set -Eeuo pipefail
# Paths the caller gave are relative to where the tour was started.
[ -z "${DEMO_KUBECONFIG:-}" ] || DEMO_KUBECONFIG=$(realpath -m -- "$DEMO_KUBECONFIG")
[ -z "${DEMO_WORK_DIR:-}" ] || DEMO_WORK_DIR=$(realpath -m -- "$DEMO_WORK_DIR")
cd "$(dirname "$0")/.."
# Debian installs nats-server in /usr/sbin, which a user's PATH may lack.
PATH=$PATH:/usr/sbin
PY=/usr/bin/python3
seconds=${DEMO_SECONDS:-30}
max_events=${DEMO_EVENTS:-10}
nats_port=${DEMO_NATS_PORT:-4222}
monitor_port=${DEMO_NATS_MONITOR_PORT:-8222}
http_port=${DEMO_HTTP_PORT:-18080}
build=${DEMO_BUILD_DIR:-build}
install=${DEMO_INSTALL:-yes}
kubeconfig=${DEMO_KUBECONFIG:-}
nats="nats://127.0.0.1:$nats_port"

current="checking the settings"
pids=()
names=()
work=""

# ------------------------------------------------------------ helpers

say() { printf '%s\n' "$*"; }

# step HEADING: what the tour does next, for a person reading along.
step() {
	current=$1
	printf '\n== %s\n' "$1"
}

# fail WHY [LOG]: the current step failed; say which and why, show the
# end of LOG, and stop (the EXIT trap stops what was started).
fail() {
	{
		printf '\ntour: step "%s" failed: %s\n' "$current" "$1"
		if [ -n "${2:-}" ] && [ -s "$2" ]; then
			echo "   last lines of $2:"
			tail -n 25 "$2" | sed 's/^/   | /'
		fi
	} >&2
	exit 1
}

on_error() { # status command
	fail "\`$2\` exited with status $1"
}

alive() { # PID: running (not gone, not a zombie)
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) } # after "pid (comm) ": the state letter
	[ -n "$stat" ] && [ "${stat%% *}" != Z ]
}

cleanup() {
	local rc=$? i p deadline status
	trap - EXIT INT TERM ERR
	set +e
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		alive "${pids[i]}" && kill -TERM "${pids[i]}" 2>/dev/null
	done
	deadline=$((SECONDS + 15))
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		p=${pids[i]}
		while alive "$p" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
		if alive "$p"; then
			echo "tour: ${names[i]} (pid $p) did not stop on SIGTERM; killing it" >&2
			kill -KILL "$p" 2>/dev/null
		fi
		wait "$p" 2>/dev/null
		status=$?
		echo "${names[i]} $status" >>"$work/exit-statuses"
		# The agent shuts down cleanly on SIGTERM; anything else is a
		# failure of the tour even when every step went well.
		if [ "${names[i]}" = collect-agent ] && [ "$status" -ne 0 ] && [ "$rc" -eq 0 ]; then
			echo "tour: collect-agent exited with status $status when stopped; see $work/agent.log" >&2
			rc=1
		fi
	done
	if [ ${#pids[@]} -gt 0 ]; then
		printf '\n== stopped what the tour started (%s); logs in %s\n' "${names[*]}" "$work"
	elif [ -n "$work" ]; then
		printf '\n== logs in %s\n' "$work"
	fi
	exit "$rc"
}

# start NAME OUT CMD...: run CMD in the background, its output to OUT, and
# remember it for the clean-up (and in $work/pids, "NAME PID" a line).
start() {
	local name=$1 out=$2
	shift 2
	"$@" >"$out" 2>&1 </dev/null &
	pids+=($!)
	names+=("$name")
	echo "$name $!" >>"$work/pids"
	last_pid=$!
}

# wait_until SECONDS PID LOG NAME COMMAND...: poll COMMAND until it
# succeeds; fail at once when PID exits, or after SECONDS.
wait_until() {
	local limit=$1 pid=$2 log=$3 name=$4
	shift 4
	local deadline=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		alive "$pid" || fail "$name exited" "$log"
		[ $SECONDS -lt $deadline ] || fail "$name is not up after ${limit}s" "$log"
		sleep 0.1
	done
}

# wait_exit PID SECONDS: wait for a background process to end; its exit
# status, or 124 when it is still running after SECONDS.
wait_exit() {
	local pid=$1 deadline=$((SECONDS + $2)) rc=0
	while alive "$pid"; do
		[ $SECONDS -lt $deadline ] || return 124
		sleep 0.1
	done
	wait "$pid" || rc=$?
	return $rc
}

port_open() { # port
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# subscribed SUBJECT: nats-server has a subscription on exactly SUBJECT
# (so a listener started in the background will not miss what comes next).
subscribed() {
	curl -sf "http://127.0.0.1:$monitor_port/subsz?subs=1" | grep -qF "\"subject\": \"$1\""
}

ctl() { "$build/agentctl" --nats "$nats" "$@"; }
# show ARGS...: the agentctl command line as a reader would type it
show() { printf '$ %s/agentctl --nats %s %s\n' "$build" "$nats" "$*"; }

trap cleanup EXIT
trap 'echo "tour: interrupted" >&2; exit 130' INT
trap 'echo "tour: terminated" >&2; exit 143' TERM
trap 'on_error $? "$BASH_COMMAND"' ERR

# ------------------------------------------------------------ settings

for knob in seconds:DEMO_SECONDS max_events:DEMO_EVENTS nats_port:DEMO_NATS_PORT \
	monitor_port:DEMO_NATS_MONITOR_PORT http_port:DEMO_HTTP_PORT; do
	var=${knob%%:*}
	[[ "${!var}" =~ ^[1-9][0-9]*$ ]] || fail "${knob#*:}='${!var}' is not a positive number"
done
case "$install" in yes | check) ;; *) fail "DEMO_INSTALL='$install' is not yes or check" ;; esac
if [ -n "$kubeconfig" ] && [ ! -r "$kubeconfig" ]; then
	fail "DEMO_KUBECONFIG: cannot read '$kubeconfig'"
fi
for p in "$nats_port:DEMO_NATS_PORT" "$monitor_port:DEMO_NATS_MONITOR_PORT" "$http_port:DEMO_HTTP_PORT"; do
	if port_open "${p%%:*}"; then
		fail "127.0.0.1:${p%%:*} is already in use (another nats-server or tour?); choose another port with ${p#*:}"
	fi
done
if [ -n "${DEMO_WORK_DIR:-}" ]; then
	work=$DEMO_WORK_DIR
	mkdir -p "$work"
else
	work=$(mktemp -d /tmp/collect-agent-tour.XXXXXX)
fi
: >"$work/pids"
: >"$work/exit-statuses"

# ------------------------------------------------------------ setting up

step "Setting up: Debian packages (compiler and libraries, nats-server, Python for the simulated cluster)"
if [ "$install" = check ]; then
	scripts/install-deps.sh --check demo || fail "Debian packages are missing (DEMO_INSTALL=check installs nothing)"
else
	scripts/install-deps.sh demo
fi
say "   all there"

step "Setting up: building collect-agent and agentctl (meson + ninja in $build/)"
if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" >"$work/meson-setup.log" 2>&1 || fail "meson setup failed" "$work/meson-setup.log"
fi
# ninja prints "[n/N] ..." per step: keep a line every 20 steps.
set +o pipefail
ninja -C "$build" collect-agent agentctl 2>&1 | tee "$work/ninja.log" | grep --line-buffered -E '^\[[0-9]+/[0-9]+\]' |
	awk -F'[][/]' '{ if ($2 == $3 || $2 % 20 == 0) { printf "   %s/%s build steps\n", $2, $3; fflush() } }'
built=${PIPESTATUS[0]}
set -o pipefail
[ "$built" -eq 0 ] || fail "the build failed" "$work/ninja.log"
say "   $build/collect-agent and $build/agentctl are built"

step "Setting up: nats-server on 127.0.0.1:$nats_port, the bus between agents and the orchestrator"
start nats-server "$work/nats.log" nats-server -a 127.0.0.1 -p "$nats_port" -m "$monitor_port"
wait_until 10 "$last_pid" "$work/nats.log" nats-server port_open "$nats_port"
wait_until 10 "$last_pid" "$work/nats.log" "nats-server's monitoring port" port_open "$monitor_port"
say "   up (monitoring on http://127.0.0.1:$monitor_port)"

events_expected=0
if [ -z "$kubeconfig" ]; then
	step "Setting up: a simulated Kubernetes cluster (tests/kubesim) with failing workloads"
	start kubesim "$work/kubesim.out" $PY tests/kubesim/kubesim.py --state-dir "$work/kubesim" --metrics-api
	wait_until 30 "$last_pid" "$work/kubesim.out" "the simulated API server" grep -q '^READY ' "$work/kubesim.out"
	read -r _ api control < <(grep '^READY ' "$work/kubesim.out")
	say "   API server $api (kubeconfig $work/kubesim/kubeconfig)"
	$PY scripts/demo_cluster.py "$control" >"$work/seed.out" 2>&1 || fail "seeding the workloads failed" "$work/seed.out"
	sed 's/^/   /' "$work/seed.out"
	events_expected=$(awk '/ Warning events /{ print $1 }' "$work/seed.out")
	kubeconfig="$work/kubesim/kubeconfig"
	cluster_env=(NODE_NAME=node-a)
else
	step "Setting up: the cluster of $kubeconfig (only read: nothing is created there)"
	cluster_env=()
fi

# Listening before the agent starts: agentctl then sees it register (with
# its version) and the Warning events it publishes as soon as it is up.
start agentctl-agents "$work/agents.out" "$build/agentctl" --nats "$nats" agents --window 8s
wait_until 10 "$last_pid" "$work/agents.out" "agentctl agents" subscribed 'agent.register.*'
agents_pid=$last_pid
if [ "$events_expected" -gt 0 ]; then
	events_count=$events_expected
else
	events_count=$max_events
fi
start agentctl-events "$work/events.out" "$build/agentctl" --nats "$nats" tail events --count "$events_count"
wait_until 10 "$last_pid" "$work/events.out" "agentctl tail events" subscribed 'agent.event.*'
events_pid=$last_pid

step "Setting up: collect-agent (probes and /metrics on http://127.0.0.1:$http_port)"
start collect-agent "$work/agent.log" env COLLECT_AGENT_HTTP_LISTEN="127.0.0.1:$http_port" \
	COLLECT_AGENT_HEARTBEAT_INTERVAL=2s COLLECT_AGENT_METRICS_INTERVAL=5s \
	COLLECT_AGENT_LOG_FORMAT=text COLLECT_AGENT_EXEC_WORK_DIR="$work" "${cluster_env[@]}" \
	"$build/collect-agent" --kubeconfig "$kubeconfig" --nats "$nats"
agent_pid=$last_pid
wait_until 60 "$agent_pid" "$work/agent.log" collect-agent curl -sf "http://127.0.0.1:$http_port/health/ready"
say "   ready: $(curl -s "http://127.0.0.1:$http_port/health/ready")"

# ------------------------------------------------------------ the tour

step "1. Is the agent online? Agents register and send heartbeats on NATS"
show "agents --window 8s     # listening since before the agent started"
rc=0
wait_exit "$agents_pid" 30 || rc=$?
if [ "$rc" -eq 1 ]; then
	# The agent came up after the window closed: its heartbeats still tell.
	show "agents --window 3s"
	ctl agents --window 3s >"$work/agents.out" 2>&1 || fail "no agent answered" "$work/agents.out"
elif [ "$rc" -ne 0 ]; then
	fail "agentctl agents exited with status $rc" "$work/agents.out"
fi
cat "$work/agents.out"
cluster=$(awk 'NR == 2 { print $1 }' "$work/agents.out")
[ -n "$cluster" ] || fail "agentctl agents listed no agent" "$work/agents.out"
source=$(curl -s "http://127.0.0.1:$http_port/health" |
	$PY -c 'import json, sys; print(json.load(sys.stdin)["cluster"]["source"])' 2>/dev/null || echo "?")
say "   The agent named its cluster '$cluster' (found by: $source; docs/CLUSTER_ID.md)."
say "   The orchestrator addresses it by that ID: agent.<kind>.$cluster on NATS."

step "2. Failure events arriving, each with a category (crash, image, oom, scheduling, ...)"
show "tail events --count $events_count"
rc=0
wait_exit "$events_pid" "$seconds" || rc=$?
if [ "$rc" -eq 124 ]; then
	[ "$events_expected" -eq 0 ] || {
		cat "$work/events.out"
		fail "fewer than the $events_expected seeded events arrived within ${seconds}s (DEMO_SECONDS)" "$work/agent.log"
	}
	kill -TERM "$events_pid"
	rc=0
	wait_exit "$events_pid" 10 || rc=$?
fi
[ "$rc" -eq 0 ] || fail "agentctl tail events exited with status $rc" "$work/events.out"
cat "$work/events.out"
[ -s "$work/events.out" ] || say "   (no Warning event in ${seconds}s: the agent publishes those of the last 5 minutes, then new ones)"
say "   Fields: last seen, cluster, severity, category, type, namespace/kind/name, reason: message (xcount)."

step "3. A metrics sample, summarised (the agent sends one every metrics.interval: 5s here, 60s by default)"
show "tail metrics --cluster $cluster --count 1"
start agentctl-metrics "$work/metrics.out" "$build/agentctl" --nats "$nats" tail metrics --cluster "$cluster" --count 1
rc=0
wait_exit "$last_pid" "$seconds" || rc=$?
[ "$rc" -ne 124 ] || fail "no metrics sample within ${seconds}s (DEMO_SECONDS)" "$work/agent.log"
[ "$rc" -eq 0 ] || fail "agentctl tail metrics exited with status $rc" "$work/metrics.out"
cat "$work/metrics.out"
say "   -o json prints the whole MetricsSample: every node, namespace and unhealthy pod (docs/MESSAGES.md)."

step "4. A diagnostic command, run in the cluster by the agent (read-only kubectl, sandboxed)"
show "exec --cluster $cluster -- kubectl get pods -A"
rc=0
ctl exec --cluster "$cluster" -- kubectl get pods -A 2>"$work/exec.err" || rc=$?
[ "$rc" -eq 0 ] || fail "agentctl exec exited with status $rc: $(cat "$work/exec.err")" "$work/agent.log"
cat "$work/exec.err" >&2
alive "$agent_pid" || fail "collect-agent exited during the tour" "$work/agent.log"

if [ -n "${DEMO_KEEP:-}" ]; then
	step "Everything keeps running (DEMO_KEEP): try agentctl yourself; Ctrl-C stops it all"
	say "   $build/agentctl --nats $nats tail heartbeats"
	if [ "$events_expected" -gt 0 ]; then
		crashing=$(awk '/ CrashLoopBackOff/ { print $1; exit }' "$work/seed.out")
		say "   $build/agentctl --nats $nats exec --cluster $cluster --namespace shop -- kubectl describe pod $crashing"
	else
		say "   $build/agentctl --nats $nats exec --cluster $cluster -- kubectl get events -A"
	fi
	say "   $build/agentctl --nats $nats -o json tail metrics --count 1"
	say "   curl -s http://127.0.0.1:$http_port/metrics      # the agent's own metrics"
	current="keeping everything running"
	while alive "$agent_pid"; do sleep 1; done
	fail "collect-agent exited" "$work/agent.log"
fi
