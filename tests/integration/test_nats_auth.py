"""NATS authentication through the real agent: NKey seed file (a real
Ed25519 key pair in the NKey encoding) and a token file."""
import base64
import json
import os
import subprocess
import time

import pytest

from lib.agentproc import wait_for
from lib.nats import NatsClient, NatsServer

cryptography = pytest.importorskip("cryptography")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

PREFIX_SEED = 18 << 3
PREFIX_USER = 20 << 3


def crc16(data):
    """CRC-16/XMODEM, the checksum of the NKey encoding."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def encode(raw):
    raw = bytes(raw)
    c = crc16(raw)
    return base64.b32encode(raw + bytes([c & 0xFF, c >> 8])).decode().rstrip("=")


def user_nkey_pair():
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    seed_str = encode([PREFIX_SEED | (PREFIX_USER >> 5), (PREFIX_USER & 31) << 3, *seed])
    pub_str = encode([PREFIX_USER, *pub])
    assert seed_str.startswith("SU") and pub_str.startswith("U")
    return seed_str, pub_str


def assert_refused_for_good(agent):
    """nats.c stops retrying once the server refuses the credentials: the
    agent never connects, is not ready, and liveness asks for a restart
    (which re-reads credential files)."""
    wait_for(lambda: agent.get("/health/live")[0] == 503, timeout=15, what="liveness 503 after refusal")
    live = json.loads(agent.get("/health/live")[1])
    assert "refused the credentials" in live["reason"]
    status, body = agent.get("/health/ready")
    assert status == 503 and "NATS" in json.loads(body)["reason"]
    assert agent.health()["nats"]["connected"] is False


def test_nkey_seed_file(tmp_path, kubesim, agent_factory):
    seed, pub = user_nkey_pair()
    conf = tmp_path / "nats.conf"
    conf.write_text('authorization { users = [ { nkey: "%s" } ] }\n' % pub)
    seed_file = tmp_path / "agent.nk"
    seed_file.write_text(seed + "\n")
    (tmp_path / "agent.nk.pub").write_text(pub + "\n")
    server = NatsServer(args=["-c", str(conf)])
    server.start()
    try:
        agent = agent_factory(["--nats", server.url, "--cluster-id", "c1", "--kubeconfig", kubesim.kubeconfig],
                              env={"COLLECT_AGENT_NATS_AUTH_NKEY_SEED_FILE": str(seed_file)})
        agent.wait_ready(timeout=20)
        assert agent.health()["nats"]["connected"] is True
        logs = agent.logs()
        assert seed not in logs, "the seed must never be logged"
        agent.assert_clean_exit()

        # The same server refuses an agent without the key.
        bad = agent_factory(["--nats", server.url, "--cluster-id", "c1", "--kubeconfig", kubesim.kubeconfig],
                            env={"COLLECT_AGENT_NATS_RECONNECT_WAIT": "100ms"}, wait_live=False)
        assert_refused_for_good(bad)
        bad.assert_clean_exit()
    finally:
        server.stop()


def test_token_file(tmp_path, kubesim, agent_factory):
    server = NatsServer(args=["--auth", "s3cret-token"])
    server.start()
    try:
        token_file = tmp_path / "token"
        token_file.write_text("s3cret-token\n")
        client = NatsClient(server.url, token="s3cret-token")
        reg = client.subscribe("agent.register.c1")
        client.flush()
        agent = agent_factory(["--nats", server.url, "--cluster-id", "c1", "--kubeconfig", kubesim.kubeconfig],
                              env={"COLLECT_AGENT_NATS_AUTH_TOKEN_FILE": str(token_file)})
        assert json.loads(reg.next(timeout=15).data)["cluster_id"] == "c1"
        assert "s3cret-token" not in agent.logs()
        assert "s3cret-token" not in agent.get("/health")[1]
        client.close()
        agent.assert_clean_exit()
    finally:
        server.stop()


def make_pki(tmp_path):
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=str(tmp_path))
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", "san.ext"]), ("client", [])):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "1", "-out", f"{name}.crt", *ext)
    return tmp_path


def test_tls_with_client_certificate(tmp_path, kubesim, agent_factory):
    pki = make_pki(tmp_path)
    server = NatsServer(args=["--tls", "--tlscert", str(pki / "server.crt"), "--tlskey", str(pki / "server.key"),
                              "--tlsverify", "--tlscacert", str(pki / "ca.crt")])
    server.start()
    tls = {"COLLECT_AGENT_NATS_TLS_ENABLED": "true", "COLLECT_AGENT_NATS_TLS_CA_FILE": str(pki / "ca.crt"),
           "COLLECT_AGENT_NATS_RECONNECT_WAIT": "100ms"}
    try:
        agent = agent_factory(["--nats", server.url, "--cluster-id", "c1", "--kubeconfig", kubesim.kubeconfig],
                              env={**tls, "COLLECT_AGENT_NATS_TLS_CERT_FILE": str(pki / "client.crt"),
                                   "COLLECT_AGENT_NATS_TLS_KEY_FILE": str(pki / "client.key")})
        agent.wait_ready(timeout=20)
        assert agent.health()["nats"]["connected"] is True
        agent.assert_clean_exit()

        # The server demands a client certificate: without one, no connection.
        anonymous = agent_factory(["--nats", server.url, "--cluster-id", "c1", "--kubeconfig", kubesim.kubeconfig],
                                  env=tls, wait_live=False)
        assert_refused_for_good(anonymous)
        anonymous.assert_clean_exit()
    finally:
        server.stop()


# ---- decentralized auth: operator -> account -> user JWTs and a .creds file

PREFIX_OPERATOR = 14 << 3
PREFIX_ACCOUNT = 0


def nkey_pair(prefix):
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    seed_str = encode([PREFIX_SEED | (prefix >> 5), (prefix & 31) << 3, *seed])
    return key, seed_str, encode([prefix, *pub])


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(signing_key, issuer, subject, name, nats_claims):
    header = b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    claims = {"jti": b64url(os.urandom(16)).upper(), "iat": int(time.time()), "iss": issuer,
              "name": name, "sub": subject, "nats": nats_claims}
    payload = b64url(json.dumps(claims).encode())
    sig = signing_key.sign(f"{header}.{payload}".encode())
    return f"{header}.{payload}.{b64url(sig)}"


def decentralized_setup(tmp_path):
    """Returns (server config path, good creds path, foreign creds path)."""
    op_key, _, op_pub = nkey_pair(PREFIX_OPERATOR)
    acc_key, _, acc_pub = nkey_pair(PREFIX_ACCOUNT)
    operator_jwt = jwt(op_key, op_pub, op_pub, "test-operator", {"type": "operator", "version": 2})
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                 "wildcards": True, "conn": -1, "leaf": -1}
    account_jwt = jwt(op_key, op_pub, acc_pub, "agents",
                      {"limits": unlimited, "default_permissions": {"pub": {}, "sub": {}},
                       "type": "account", "version": 2})

    def user_creds(signing_key, issuer, path):
        _, seed, pub = nkey_pair(PREFIX_USER)
        user_jwt = jwt(signing_key, issuer, pub, "collect-agent",
                       {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                        "type": "user", "version": 2})
        path.write_text("-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n\n"
                        "-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n" % (user_jwt, seed))
        return path, seed

    good, good_seed = user_creds(acc_key, acc_pub, tmp_path / "agent.creds")
    # Signed by an account the server does not know.
    other_key, _, other_pub = nkey_pair(PREFIX_ACCOUNT)
    foreign, _ = user_creds(other_key, other_pub, tmp_path / "foreign.creds")
    conf = tmp_path / "operator.conf"
    conf.write_text('operator: "%s"\nresolver: MEMORY\nresolver_preload: {\n  %s: "%s"\n}\n'
                    % (operator_jwt, acc_pub, account_jwt))
    return conf, good, good_seed, foreign


def test_credentials_file(tmp_path, kubesim, agent_factory):
    conf, good, good_seed, foreign = decentralized_setup(tmp_path)
    server = NatsServer(args=["-c", str(conf)])
    server.start()
    try:
        agent = agent_factory(["--nats", server.url, "--cluster-id", "c1", "--kubeconfig", kubesim.kubeconfig],
                              env={"COLLECT_AGENT_NATS_AUTH_CREDENTIALS_FILE": str(good)})
        agent.wait_ready(timeout=20)
        health = agent.health()
        assert health["nats"]["connected"] is True
        assert health["registrations"] >= 1
        assert good_seed not in agent.logs()
        agent.assert_clean_exit()

        stranger = agent_factory(["--nats", server.url, "--cluster-id", "c1", "--kubeconfig", kubesim.kubeconfig],
                                 env={"COLLECT_AGENT_NATS_AUTH_CREDENTIALS_FILE": str(foreign),
                                      "COLLECT_AGENT_NATS_RECONNECT_WAIT": "100ms"}, wait_live=False)
        assert_refused_for_good(stranger)
        stranger.assert_clean_exit()
    finally:
        server.stop()
