#!/usr/bin/env bash
# Installs what collect-agent needs to build, test and run its demo on a
# Debian 12 machine. Uses sudo when not root. Safe to run again.
set -euo pipefail

packages=(
	# build
	gcc meson ninja-build pkg-config protobuf-c-compiler
	libnats-dev libcurl4-openssl-dev libyaml-dev libjansson-dev libprotobuf-c-dev
	libmicrohttpd-dev libseccomp-dev libprotobuf-dev
	# tests and demo: real NATS, Prometheus' promtool, Python test runner
	nats-server prometheus python3 python3-pytest python3-yaml python3-cryptography
	python3-protobuf protobuf-compiler openssl curl valgrind
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi
echo "installing: ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
