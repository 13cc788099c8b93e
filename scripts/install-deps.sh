#!/usr/bin/env bash
# Installs what collect-agent needs on a Debian 12 machine, for one purpose:
#   scripts/install-deps.sh build   compile the agent
#   scripts/install-deps.sh demo    build + run scripts/demo.sh (nats-server, the simulated API server)
#   scripts/install-deps.sh test    build + every test suite (the default)
#   scripts/install-deps.sh --check PROFILE   only check: name what is missing and exit 1 (no apt-get, no network)
# Uses sudo when not root. Safe to run again: installs only what is missing
# (asked of dpkg, so nothing is fetched when all is there), and says what it
# installs.
set -euo pipefail

check_only=false
if [ "${1:-}" = --check ]; then
	check_only=true
	shift
fi
profile=${1:-test}
build=(gcc meson ninja-build pkg-config protobuf-c-compiler
	libnats-dev libcurl4-openssl-dev libyaml-dev libjansson-dev libprotobuf-c-dev
	libmicrohttpd-dev libseccomp-dev libssl-dev libprotobuf-dev)
# The demo: a real nats-server, the simulated API server (Python with
# python3-cryptography for its certificates), curl for the control API.
demo=(nats-server python3 python3-cryptography openssl curl)
# Tests: promtool lints /metrics and a real prometheus scrapes it; pytest drives processes; protobuf decodes
# messages independently of our codec; valgrind; etcd for the real
# kube-apiserver tier (skipped when its binary is not given).
tests=(prometheus python3-pytest python3-yaml python3-protobuf protobuf-compiler valgrind
	etcd-server etcd-client)

case "$profile" in
build) packages=("${build[@]}") ;;
demo) packages=("${build[@]}" "${demo[@]}") ;;
test) packages=("${build[@]}" "${demo[@]}" "${tests[@]}") ;;
*)
	echo "usage: $0 [--check] [build|demo|test]" >&2
	exit 2
	;;
esac

# The executor runs kubectl from /usr/bin or /usr/local/bin (never $PATH):
# Debian's kubernetes-client when neither is there.
if [ "$profile" != build ] && [ ! -x /usr/bin/kubectl ] && [ ! -x /usr/local/bin/kubectl ]; then
	packages+=(kubernetes-client)
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if $check_only; then
	echo "missing Debian packages: ${missing[*]} (scripts/install-deps.sh $profile installs them)" >&2
	exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi
echo "   installing ${#missing[@]} Debian packages: ${missing[*]}"
echo "   apt-get update..."
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# One line per package as it is set up, so a slow mirror shows progress.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	-o Dpkg::Progress-Fancy=0 "${missing[@]}" |
	{ grep --line-buffered -E '^(Get:|Setting up)' || true; } | sed -u 's/^/   /'
