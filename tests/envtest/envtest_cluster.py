"""A real kube-apiserver with etcd on loopback, for the envtest tier (the
same idea as controller-runtime's envtest).

    missing = Cluster.missing()        # None, or a sentence naming what is missing
    with Cluster(workdir, assets) as c:
        c.admin.get_json("/api/v1/namespaces/kube-system")
        c.kubeconfig                   # the agent's ServiceAccount token + the CA
        c.agent_api                    # an ApiClient with the agent's token

Stdlib + python3-yaml only. Processes run in their own process groups and
are killed as groups; every wait is bounded, and a server that does not
come up is reported with the last lines of its own log."""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid

import yaml

from lib.nats import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy", "base")
ASSETS_ENV = "COLLECT_AGENT_ENVTEST_ASSETS"
ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
# Published in the `kubernetes` Endpoints object only, never contacted; it
# must not be a loopback address (the server refuses one there).
ADVERTISE_ADDRESS = "192.0.2.10"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
START_TIMEOUT = 60.0


class ClusterError(Exception):
    pass


def _tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


def _kill_group(proc, timeout=10):
    """SIGTERM the process group of proc, SIGKILL it when it lingers."""
    if proc is None:
        return
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if proc.poll() is None and pgid is not None:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGKILL)  # whatever is left of the group
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


def _run(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout


# ------------------------------------------------------------------ REST

class ApiError(Exception):
    def __init__(self, method, path, status, body):
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]!r}")
        self.status = status
        self.body = body


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers      # list of (name, value), in order
        self.body = body            # bytes

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)


class ApiClient:
    """HTTPS to the API server with one bearer token (None: anonymous)."""

    def __init__(self, host, port, ca_file, token=None, timeout=15.0):
        self.host, self.port, self.token, self.timeout = host, port, token, timeout
        self.ctx = ssl.create_default_context(cafile=ca_file)
        # Like client-go over HTTP/1.1 (watch framing is compared per chunk).
        self.ctx.set_alpn_protocols(["http/1.1"])

    def connection(self, timeout=None):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                           timeout=timeout or self.timeout)

    def headers(self, extra=None):
        h = {"Accept": "application/json", "User-Agent": "collect-agent-envtest/1"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if extra:
            h.update(extra)
        return h

    def request(self, method, path, body=None, headers=None, timeout=None):
        data = None
        h = self.headers(headers)
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def _json(self, method, path, body=None, ok=(200, 201)):
        r = self.request(method, path, body)
        if r.status not in ok:
            raise ApiError(method, path, r.status, r.body)
        return r.json()

    def get_json(self, path):
        return self._json("GET", path)

    def post_json(self, path, body):
        return self._json("POST", path, body)

    def put_json(self, path, body):
        return self._json("PUT", path, body)

    def patch_merge(self, path, body):
        r = self.request("PATCH", path, body, headers={"Content-Type": "application/merge-patch+json"})
        if r.status != 200:
            raise ApiError("PATCH", path, r.status, r.body)
        return r.json()

    def watch_raw(self, path, timeout=30.0):
        """(status, headers, [chunk bytes...]) of a WATCH read to its end,
        one list item per HTTP/1.1 chunk as the server framed it."""
        conn = self.connection(timeout)
        try:
            conn.request("GET", path, headers=self.headers())
            r = conn.getresponse()
            headers = r.getheaders()
            if r.getheader("Transfer-Encoding", "").lower() != "chunked":
                return r.status, headers, [r.read()]
            chunks = []
            fp = r.fp   # read the chunk framing ourselves
            r.chunked = False
            while True:
                line = fp.readline(65537)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    fp.readline()
                    break
                chunks.append(fp.read(size))
                fp.read(2)
            return r.status, headers, chunks
        finally:
            conn.close()


# ------------------------------------------------------------------ cluster

# REST collection paths of the kinds deploy/ holds that the tier applies.
_KIND_PATHS = {
    ("v1", "Namespace"): "/api/v1/namespaces",
    ("v1", "ServiceAccount"): "/api/v1/namespaces/{ns}/serviceaccounts",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"):
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    ("rbac.authorization.k8s.io/v1", "Role"): "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"):
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
}


def load_deploy(name):
    with open(os.path.join(DEPLOY, name)) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    assert len(docs) == 1, f"deploy/base/{name}: expected one object, found {len(docs)}"
    return docs[0]


class Cluster:
    """etcd + kube-apiserver in a temporary directory under workdir."""

    def __init__(self, workdir, assets):
        self.assets = assets
        self.apiserver_bin = os.path.join(assets, "kube-apiserver")
        self.dir = tempfile.mkdtemp(prefix="envtest-", dir=workdir)
        self.etcd_proc = self.api_proc = None
        self.etcd_log = os.path.join(self.dir, "etcd.log")
        self.api_log = os.path.join(self.dir, "kube-apiserver.log")
        self.admin_token = uuid.uuid4().hex
        self.etcd_port = self.api_port = None
        self.admin = self.agent_api = None
        self.agent_token = None
        self.agent_namespace = self.agent_sa = None
        self.kubeconfig = os.path.join(self.dir, "agent.kubeconfig")
        self.ca_file = os.path.join(self.dir, "ca.crt")

    @staticmethod
    def missing(env=None):
        """None when everything the tier needs is here, else what is missing."""
        env = os.environ if env is None else env
        assets = env.get(ASSETS_ENV, "")
        if not assets:
            return f"{ASSETS_ENV} is not set (it names the directory holding kube-apiserver)"
        binary = os.path.join(assets, "kube-apiserver")
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            return f"no executable kube-apiserver in {ASSETS_ENV}={assets}"
        if not os.access(ETCD, os.X_OK):
            return f"{ETCD} is missing (apt-get install etcd-server)"
        if not shutil.which("openssl"):
            return "openssl is missing (apt-get install openssl)"
        return None

    # ---- lifecycle ----

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self._pki()
        self._start_etcd()
        self._start_apiserver()
        self._apply_deploy()

    def stop(self):
        _kill_group(self.api_proc)
        _kill_group(self.etcd_proc)
        self.api_proc = self.etcd_proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- PKI ----

    def _pki(self):
        d = self.dir
        _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
              "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=collect-agent-envtest-ca",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
        _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key",
              "-out", "apiserver.csr", "-subj", "/CN=kube-apiserver"], d)
        with open(os.path.join(d, "apiserver.ext"), "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n")
        _run(["openssl", "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
              "-CAcreateserial", "-days", "2", "-extfile", "apiserver.ext", "-out", "apiserver.crt"], d)
        _run(["openssl", "genrsa", "-out", "sa.key", "2048"], d)
        _run(["openssl", "rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], d)
        with open(os.path.join(d, "tokens.csv"), "w") as f:
            f.write(f'{self.admin_token},envtest-admin,envtest-admin-uid,"system:masters"\n')
        os.chmod(os.path.join(d, "tokens.csv"), 0o600)

    # ---- etcd ----

    def _spawn(self, cmd, log_path):
        with open(log_path, "ab") as log:
            return subprocess.Popen(cmd, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def etcd_url(self):
        return f"http://127.0.0.1:{self.etcd_port}"

    def _start_etcd(self):
        self.etcd_port, peer = free_port(), free_port()
        while peer == self.etcd_port:
            peer = free_port()
        peer_url = f"http://127.0.0.1:{peer}"
        self.etcd_proc = self._spawn(
            [ETCD, "--name", "envtest", "--data-dir", os.path.join(self.dir, "etcd"),
             "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"envtest={peer_url}", "--initial-cluster-state", "new",
             "--logger", "zap", "--log-outputs", "stderr"], self.etcd_log)

        def healthy():
            conn = http.client.HTTPConnection("127.0.0.1", self.etcd_port, timeout=2)
            try:
                conn.request("GET", "/health")
                r = conn.getresponse()
                return r.status == 200 and json.loads(r.read()).get("health") == "true"
            finally:
                conn.close()
        self._wait(self.etcd_proc, healthy, "etcd", self.etcd_log, 30.0)

    def etcd_revision(self):
        """etcd's current revision (through its v3 JSON gateway)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.etcd_port, timeout=5)
        try:
            conn.request("POST", "/v3/kv/range", body=json.dumps({"key": "AA==", "limit": 1}),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            return int(json.loads(r.read())["header"]["revision"])
        finally:
            conn.close()

    def compact(self, revision=None):
        """etcdctl compact at revision (default: the current one); returns it."""
        rev = revision or self.etcd_revision()
        _run([ETCDCTL, f"--endpoints={self.etcd_url}", "compact", str(rev)], self.dir)
        return rev

    # ---- kube-apiserver ----

    def _start_apiserver(self):
        self.api_port = free_port()
        d = self.dir
        self.api_proc = self._spawn(
            [self.apiserver_bin,
             "--bind-address=127.0.0.1", f"--secure-port={self.api_port}",
             f"--advertise-address={ADVERTISE_ADDRESS}",
             f"--etcd-servers={self.etcd_url}",
             f"--cert-dir={os.path.join(d, 'certs')}",
             f"--tls-cert-file={os.path.join(d, 'apiserver.crt')}",
             f"--tls-private-key-file={os.path.join(d, 'apiserver.key')}",
             f"--client-ca-file={os.path.join(d, 'ca.crt')}",
             f"--token-auth-file={os.path.join(d, 'tokens.csv')}",
             "--authorization-mode=RBAC",
             "--service-cluster-ip-range=10.96.0.0/16",
             f"--service-account-issuer={SA_ISSUER}",
             f"--service-account-key-file={os.path.join(d, 'sa.pub')}",
             f"--service-account-signing-key-file={os.path.join(d, 'sa.key')}",
             f"--api-audiences={SA_ISSUER}",
             "--allow-privileged=false",
             ], self.api_log)
        self.admin = ApiClient("127.0.0.1", self.api_port, self.ca_file, self.admin_token)

        def ready():
            r = self.admin.request("GET", "/readyz", timeout=3)
            if r.status != 200:
                return False
            # the system namespaces controller creates kube-system after start
            return self.admin.request("GET", "/api/v1/namespaces/kube-system", timeout=3).status == 200
        self._wait(self.api_proc, ready, "kube-apiserver", self.api_log, START_TIMEOUT)

    def _wait(self, proc, pred, name, log, timeout):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with {proc.returncode}; its log ends with:\n{_tail(log)}")
            try:
                if pred():
                    return
            except (OSError, ssl.SSLError, http.client.HTTPException, ValueError, KeyError) as e:
                last = e
            time.sleep(0.2)
        raise ClusterError(f"{name} not ready within {timeout:.0f}s (last: {last!r}); "
                           f"its log ends with:\n{_tail(log)}")

    @property
    def server(self):
        return f"https://127.0.0.1:{self.api_port}"

    # ---- deploy/ ----

    def _create(self, obj):
        kind_path = _KIND_PATHS[(obj["apiVersion"], obj["kind"])]
        path = kind_path.format(ns=obj.get("metadata", {}).get("namespace", ""))
        r = self.admin.request("POST", path, obj)
        if r.status not in (201, 409):   # 409 AlreadyExists: created before
            raise ApiError("POST", path, r.status, r.body)

    def _apply_deploy(self):
        namespace = load_deploy("namespace.yaml")
        account = load_deploy("serviceaccount.yaml")
        role = load_deploy("clusterrole.yaml")
        binding = load_deploy("clusterrolebinding.yaml")
        self._create(namespace)
        self._create(role)
        sa_subjects = [s for s in binding.get("subjects", []) if s.get("kind") == "ServiceAccount"]
        if not sa_subjects:
            raise ClusterError("deploy/base/clusterrolebinding.yaml binds no ServiceAccount")
        for s in sa_subjects:
            ns = s.get("namespace") or account["metadata"].get("namespace")
            if ns != namespace["metadata"]["name"]:
                self._create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            sa = dict(account)
            sa["metadata"] = dict(account["metadata"], name=s["name"], namespace=ns)
            self._create(sa)
        self._create(binding)
        self.agent_namespace, self.agent_sa = sa_subjects[0].get("namespace"), sa_subjects[0]["name"]
        # The Lease rights of leader election, in the agent's namespace only.
        for name in ("role.yaml", "rolebinding.yaml"):
            obj = load_deploy(name)
            obj["metadata"]["namespace"] = self.agent_namespace
            self._create(obj)

        tr = self.admin.post_json(
            f"/api/v1/namespaces/{self.agent_namespace}/serviceaccounts/{self.agent_sa}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"expirationSeconds": 3600}})
        self.agent_token = tr["status"]["token"]
        self.agent_api = ApiClient("127.0.0.1", self.api_port, self.ca_file, self.agent_token)
        # RBAC reads bindings through an informer: wait until the new one counts.
        self._wait(self.api_proc,
                   lambda: self.agent_api.request("GET", "/api/v1/events?limit=1", timeout=3).status == 200,
                   "the agent's ClusterRoleBinding", self.api_log, 20.0)

        self._write_kubeconfig(self.kubeconfig, self.server)

    def token_for(self, namespace, name, seconds=3600):
        """A bound token of ServiceAccount namespace/name (created when
        missing; it has no role unless a test binds one)."""
        r = self.admin.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                               {"apiVersion": "v1", "kind": "ServiceAccount",
                                "metadata": {"name": name, "namespace": namespace}})
        if r.status not in (201, 409):
            raise ApiError("POST", "serviceaccounts", r.status, r.body)
        tr = self.admin.post_json(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                                  {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                   "spec": {"expirationSeconds": seconds}})
        return tr["status"]["token"]

    def client(self, token):
        return ApiClient("127.0.0.1", self.api_port, self.ca_file, token)

    def _write_kubeconfig(self, path, server):
        user = f"{self.agent_sa}@envtest"
        kubeconfig = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "envtest", "cluster": {"server": server,
                                                         "certificate-authority": self.ca_file}}],
            "users": [{"name": user, "user": {"token": self.agent_token}}],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": user,
                                                         "namespace": self.agent_namespace}}],
            "current-context": "envtest",
        }
        with open(path, "w") as f:
            yaml.safe_dump(kubeconfig, f, default_flow_style=False)
        os.chmod(path, 0o600)

    def kubeconfig_via(self, port):
        """A kubeconfig like self.kubeconfig whose server is 127.0.0.1:port
        (a relay in front of the API server; the certificate names 127.0.0.1)."""
        path = os.path.join(self.dir, f"agent-via-{port}.kubeconfig")
        self._write_kubeconfig(path, f"https://127.0.0.1:{port}")
        return path

    def log_tail(self, lines=40):
        return _tail(self.api_log, lines)


def closed_port_url():
    """http://127.0.0.1:P where nothing listens (a port that refused a
    connection just now): cloud metadata endpoints for the agent."""
    for _ in range(20):
        p = free_port()
        try:
            socket.create_connection(("127.0.0.1", p), timeout=0.5).close()
        except OSError:
            return f"http://127.0.0.1:{p}"
    raise ClusterError("no closed loopback port found")


# ------------------------------------------------------------------ relay

class TcpRelay:
    """A TCP relay on 127.0.0.1 in front of the API server (TLS passes
    through untouched). pause() stops moving bytes in both directions (the
    agent's streams go silent; what the server sends waits in the kernel's
    buffers); cut() closes every relayed connection, dropping whatever was
    held; resume() moves bytes again. It lets a test open a gap in a watch
    stream the way a network would, against the real server."""

    def __init__(self, upstream_port):
        import threading
        self._threading = threading
        self.upstream_port = upstream_port
        self.port = free_port()
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", self.port))
        self._lsock.listen(64)
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns = []
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept_loop, name="envtest-relay", daemon=True)
        self._thread.start()

    def pause(self):
        self._running.clear()
        time.sleep(0.2)   # pumps look at the flag every 50 ms: none is mid-transfer after this

    def resume(self):
        self._running.set()

    def cut(self):
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            _shut(s)
            try:
                s.close()
            except OSError:
                pass
        return len(conns) // 2

    def stop(self):
        self._stop.set()
        self._running.set()
        self.cut()
        _shut(self._lsock)
        self._lsock.close()
        self._thread.join(timeout=5)

    def _accept_loop(self):
        self._lsock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                c, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                _shut(c)
                c.close()
                continue
            u.settimeout(None)
            c.settimeout(None)
            with self._lock:
                self._conns += [c, u]
            for a, b in ((c, u), (u, c)):
                self._threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        import select
        try:
            while not self._stop.is_set():
                if not self._running.is_set():
                    self._running.wait(0.05)
                    continue
                if src.fileno() < 0:
                    return
                ready, _, _ = select.select([src], [], [], 0.05)
                if not ready or not self._running.is_set():
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            _shut(src)
            _shut(dst)


def _shut(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
