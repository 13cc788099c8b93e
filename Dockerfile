# syntax=docker/dockerfile:1
#
# collect-agent container image: build with Debian 12's toolchain and
# libraries, ship only the binaries (the agent, and agentctl for debugging
# with `kubectl exec`), their shared libraries, CA certificates and kubectl.
# Runs as nobody (65534) with a read-only root filesystem: the agent writes
# only under exec.work_dir (/tmp) and events.state_file's directory
# (/var/lib/collect-agent), both emptyDirs in deploy/deployment.yaml
# (tests/lib/test_image_paths.py checks the two agree; the agent runs that
# way in tests/integration/test_readonly_root.py).
#
#   docker build --build-arg GIT_SHA=$(git rev-parse --short=12 HEAD) -t collect-agent:0.1.0 .
#
# Both stages use the same Debian release so the runtime libraries are the
# exact versions the binary was linked against.

ARG DEBIAN_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev meson ninja-build pkg-config python3 \
      protobuf-c-compiler libprotobuf-dev \
      libnats-dev libcurl4-openssl-dev libyaml-dev libjansson-dev \
      libprotobuf-c-dev libmicrohttpd-dev libseccomp-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# .git is not in the build context (.dockerignore): pass the commit with
# --build-arg GIT_SHA=..., or the version reports git sha "unknown".
ARG GIT_SHA=""
RUN meson setup build --buildtype=release -Dgit_sha="${GIT_SHA}" \
 && ninja -C build collect-agent agentctl \
 && strip build/collect-agent build/agentctl \
 && build/collect-agent --version \
 && build/agentctl --version

# ---------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE}

# Runtime libraries only (the -dev packages' runtime counterparts), CA
# certificates for the API server and NATS over TLS, and kubectl for the
# command executor. Debian 12's kubernetes-client package is kubectl 1.20
# (1.20.5+really1.20.2-1.1+deb12u1); kubectl supports clusters one minor
# version either side, so for newer clusters copy a matching kubectl binary
# from https://dl.k8s.io into /usr/bin/kubectl in a derived image.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates \
      libnats3.4 libcurl4 libyaml-0-2 libjansson4 libprotobuf-c1 \
      libmicrohttpd12 libseccomp2 libssl3 \
      kubernetes-client \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/collect-agent /var/lib/collect-agent \
 && chown 65534:65534 /var/lib/collect-agent

COPY --from=build /src/build/collect-agent /usr/bin/collect-agent
# agentctl links a subset of the agent's libraries (tests/lib/test_image_libs.py):
#   kubectl exec -n collect-agent deploy/collect-agent -- agentctl --nats URL agents
COPY --from=build /src/build/agentctl /usr/bin/agentctl
COPY --from=build /src/config/collect-agent.yaml /etc/collect-agent/collect-agent.yaml

USER 65534:65534
EXPOSE 8080
ENTRYPOINT ["/usr/bin/collect-agent"]
CMD ["--config=/etc/collect-agent/collect-agent.yaml"]
