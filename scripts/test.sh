#!/usr/bin/env bash
# Sets up and runs every test of collect-agent on a fresh Debian machine:
#   1. installs the build and test dependencies (apt-get; sudo when not root)
#   2. builds (build/) and runs the unit and fuzz suites (meson test),
#      the unit suite again under valgrind, and the Python integration
#      tests (pytest) against real nats-server and the simulated API server
#   3. builds again with ASan+UBSan (build-asan/) and runs everything again
# and ends with one line "N passed, N failed" for the whole run.
# Exit status is non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PY=/usr/bin/python3

scripts/install-deps.sh || { echo "dependency installation failed"; echo "0 passed, 1 failed"; exit 1; }

results="$root/build-test-results"
rm -rf "$results"
mkdir -p "$results"
status=0

build() { # dir, extra meson args...
	local dir=$1
	shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >"$results/setup-$(basename "$dir").log" 2>&1 ||
			{ cat "$results/setup-$(basename "$dir").log"; return 1; }
	fi
	ninja -C "$dir" >"$results/ninja-$(basename "$dir").log" 2>&1 ||
		{ tail -50 "$results/ninja-$(basename "$dir").log"; return 1; }
}

meson_suites() { # dir, name, log, extra meson test args...
	# meson names its log after the wrapper: testlog-valgrind.json for
	# --wrap=valgrind..., testlog.json without one. A missing log counts as
	# a failure, never as the previous run's results.
	local dir=$1 name=$2 log=$3
	shift 3
	rm -f "$dir/meson-logs/$log"
	meson test -C "$dir" --no-rebuild --print-errorlogs "$@" || status=1
	cp "$dir/meson-logs/$log" "$results/meson-$name.json" 2>/dev/null ||
		{ echo "no $log after the $name run"; echo 1 >"$results/meson-$name-failed"; status=1; }
}

pytest_run() { # agent binary, name
	# tests/envtest runs against a real kube-apiserver when
	# COLLECT_AGENT_ENVTEST_ASSETS names its directory, and is skipped
	# (counted as skipped) otherwise.
	local dirs=()
	for d in tests/integration tests/faults tests/envtest tests/lib tests/kubesim; do
		[ -d "$d" ] && dirs+=("$d")
	done
	AGENT_BIN="$1" BUILD_DIR="$(dirname "$1")" $PY -m pytest -q -p no:cacheprovider -rs \
		--junitxml="$results/pytest-$2.xml" "${dirs[@]}" || status=1
}

if build build; then
	meson_suites build plain testlog.json --suite unit --suite fuzz --suite lint
	meson_suites build valgrind testlog-valgrind.json --suite unit \
		--wrap='valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 --quiet' \
		--timeout-multiplier 4
	pytest_run "$root/build/collect-agent" plain
else
	echo "build failed"
	echo "1" >"$results/build-failed"
	status=1
fi

# The image is built with --buildtype=release, where -O3 enables warnings
# (format truncation) that a debug build does not: compile it too.
if build build-release --buildtype=release; then
	echo "ok" >"$results/build-release-ok"
else
	echo "release build failed"
	echo "1" >"$results/build-release-failed"
	status=1
fi

if build build-asan -Db_sanitize=address,undefined -Db_lundef=false; then
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	meson_suites build-asan asan testlog.json --suite unit --suite fuzz
	pytest_run "$root/build-asan/collect-agent" asan
	unset ASAN_OPTIONS UBSAN_OPTIONS
else
	echo "ASan build failed"
	echo "1" >"$results/build-asan-failed"
	status=1
fi

$PY scripts/summarize_tests.py "$results" || status=1
exit $status
