"""The local cluster's control plane: etcd and a real kube-apiserver as plain processes on loopback.

Like envtest, it runs the upstream binaries (built from the Go module proxy by ``build-controlplane.sh``)
without kubelets or a controller manager: enough for an operator, its CRDs, RBAC and admission.

    python -m localcluster.controlplane up|down|status|restart-apiserver

State (certificates, etcd data, logs, PIDs, the admin kubeconfig) lives in ``.localcluster/``.
Only the standard library is used so this runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from localcluster import processes
from localcluster.processes import free_port, pid_alive, stop_pid

REPO = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("LOCALCLUSTER_DIR", REPO / ".localcluster"))
BIN_DIR = REPO / ".cache" / "bin"
BUILD_SCRIPT = Path(__file__).resolve().parent / "build-controlplane.sh"
KUBECONFIG = STATE_DIR / "kubeconfig"
STATE_FILE = STATE_DIR / "state.json"
READY_DEADLINE_S = 90.0
BINARIES = ("kube-apiserver", "etcd", "kubectl")


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


@dataclass
class State:
    etcd_client_port: int
    etcd_peer_port: int
    apiserver_port: int
    pids: dict[str, int] = field(default_factory=dict)
    binaries: dict[str, str] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    def save(self) -> None:
        STATE_FILE.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls) -> State | None:
        try:
            return cls(**json.loads(STATE_FILE.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None


def log(message: str) -> None:
    print(f"[localcluster] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- binaries


def ensure_binaries() -> dict[str, Path]:
    """Build (or reuse from the cache) kube-apiserver, etcd and kubectl; fail loudly when that is impossible."""
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ControlPlaneError(
            f"building the control plane failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
        )
    paths = {}
    for line in result.stdout.splitlines():
        name, _, path = line.partition("=")
        if name in BINARIES:
            paths[name] = Path(path)
    missing = set(BINARIES) - paths.keys()
    if missing:
        raise ControlPlaneError(f"build script did not report binaries: {sorted(missing)}")
    return paths


# ---------------------------------------------------------------- certificates


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def ensure_pki(pki: Path) -> None:
    """A CA, the API server's serving cert, an admin client cert and the service-account key pair."""
    if (pki / "admin.crt").exists() and (pki / "sa.pub").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
             "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.crt"), "-subj", "/CN=modelrollout-local-ca")
    ext = pki / "apiserver.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,IP:10.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    _issue(pki, "apiserver", "/CN=kube-apiserver", ext)
    client_ext = pki / "client.ext"
    client_ext.write_text("extendedKeyUsage=clientAuth\n")
    _issue(pki, "admin", "/O=system:masters/CN=admin", client_ext)
    _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def _issue(pki: Path, name: str, subject: str, ext: Path) -> None:
    key, csr, crt = (pki / f"{name}.{suffix}" for suffix in ("key", "csr", "crt"))
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", subject)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
             "-CAcreateserial", "-days", "3650", "-out", str(crt), "-extfile", str(ext))


def write_kubeconfig(state: State, pki: Path) -> None:
    KUBECONFIG.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {state.server}
    certificate-authority: {pki / "ca.crt"}
users:
- name: admin
  user:
    client-certificate: {pki / "admin.crt"}
    client-key: {pki / "admin.key"}
contexts:
- name: local
  context: {{cluster: local, user: admin, namespace: default}}
current-context: local
"""
    )


# ---------------------------------------------------------------- processes


def spawn(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    # A new session: the process outlives `make` and is stopped by `down`.
    return processes.spawn(argv, STATE_DIR / "logs" / f"{name}.log")


def stop(name: str, state: State, timeout: float = 20.0) -> None:
    pid = state.pids.get(name)
    if pid:
        stop_pid(pid, timeout, binary=state.binaries.get(name), group=False)
    state.pids.pop(name, None)


def wait_until(check: Callable[[], bool], what: str, deadline_s: float,
               proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + deadline_s
    last_error = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ControlPlaneError(f"{what}: process {proc.pid} exited with {proc.returncode}; "
                                    f"see {STATE_DIR / 'logs'}")
        try:
            if check():
                return
        except Exception as exc:  # any failure to connect just means "not yet"
            last_error = str(exc)
        time.sleep(0.25)
    raise ControlPlaneError(f"{what}: not ready after {deadline_s:.0f}s ({last_error})")


def _etcd_healthy(state: State) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{state.etcd_client_port}/health", timeout=2) as resp:
        return bool(json.loads(resp.read()).get("health") == "true")


def _apiserver_context() -> ssl.SSLContext:
    pki = STATE_DIR / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def answers(url: str, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> bool:
    """The URL answers 200 now (anything else, or no answer, is "not yet")."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def apiserver_ready(state: State) -> bool:
    return answers(f"{state.server}/readyz", timeout=3, context=_apiserver_context())


def start_etcd(state: State, etcd: Path) -> None:
    data = STATE_DIR / "etcd"
    peer = f"http://127.0.0.1:{state.etcd_peer_port}"
    client = f"http://127.0.0.1:{state.etcd_client_port}"
    state.binaries["etcd"] = str(etcd)
    proc = spawn("etcd", [
        str(etcd), "--name=local", f"--data-dir={data}",
        f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=local={peer}", "--unsafe-no-fsync=true", "--log-level=warn",
    ])
    state.pids["etcd"] = proc.pid
    wait_until(lambda: _etcd_healthy(state), "etcd", 30, proc)


def start_apiserver(state: State, apiserver: Path) -> None:
    pki = STATE_DIR / "pki"
    state.binaries["kube-apiserver"] = str(apiserver)
    proc = spawn("kube-apiserver", [
        str(apiserver),
        f"--etcd-servers=http://127.0.0.1:{state.etcd_client_port}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={state.apiserver_port}",
        f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--api-audiences=https://kubernetes.default.svc.cluster.local",
        "--authorization-mode=RBAC",
        "--service-cluster-ip-range=10.0.0.0/24",
        # No controller manager runs, so no service-account tokens controller: skip that admission step.
        "--disable-admission-plugins=ServiceAccount",
        f"--cert-dir={pki}",
        # The only address is loopback, which the "kubernetes" Service's endpoints may not hold.
        "--endpoint-reconciler-type=none",
        "--v=1",
    ])
    state.pids["kube-apiserver"] = proc.pid
    wait_until(lambda: apiserver_ready(state), "kube-apiserver /readyz", READY_DEADLINE_S, proc)


# ---------------------------------------------------------------- commands


def running(state: State | None) -> bool:
    """Our etcd and kube-apiserver processes are alive (whether or not they answer yet)."""
    return state is not None and all(pid_alive(state.pids.get(n, 0), state.binaries.get(n))
                                     for n in ("etcd", "kube-apiserver"))


def healthy(state: State | None) -> bool:
    return running(state) and state is not None and apiserver_ready(state)


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """One `up`, `down` or restart at a time: two at once would start two clusters on one etcd data dir."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up() -> State:
    with exclusive():
        return _up()


def _up() -> State:
    """Start the control plane, or reuse a healthy one; a dead or half-dead one is replaced."""
    started = time.monotonic()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    binaries = ensure_binaries()
    state = State.load()
    if state is not None and running(state):
        # A busy machine can make /readyz slow: wait for it rather than throw a live cluster's data away.
        alive = state
        try:
            wait_until(lambda: apiserver_ready(alive), "kube-apiserver /readyz", READY_DEADLINE_S)
        except ControlPlaneError as exc:
            log(f"{exc}; replacing it")
    if healthy(state) and state is not None:
        if state.binaries.get("kube-apiserver") != str(binaries["kube-apiserver"]):
            log("a newer kube-apiserver build exists; `make cluster-down cluster-up` switches to it")
        log(f"reusing healthy control plane at {state.server} ({time.monotonic() - started:.1f}s)")
        return state
    if state is not None:
        log("replacing a stopped or unhealthy control plane")
        _down(quiet=True)
    pki = STATE_DIR / "pki"
    ensure_pki(pki)
    state = State(etcd_client_port=free_port(), etcd_peer_port=free_port(), apiserver_port=free_port())
    state.save()
    try:
        start_etcd(state, binaries["etcd"])
        state.save()
        start_apiserver(state, binaries["kube-apiserver"])
        state.save()
    except ControlPlaneError:
        state.save()
        _down(quiet=True)
        raise
    write_kubeconfig(state, pki)
    log(f"control plane ready at {state.server} in {time.monotonic() - started:.1f}s; KUBECONFIG={KUBECONFIG}")
    return state


def restart_apiserver() -> State:
    """Stop and start only kube-apiserver (same etcd, same port): for chaos scenarios."""
    with exclusive():
        return _restart_apiserver()


def _restart_apiserver() -> State:
    state = State.load()
    if state is None:
        raise ControlPlaneError("no local cluster is running")
    stop("kube-apiserver", state)
    start_apiserver(state, Path(state.binaries["kube-apiserver"]))
    state.save()
    return state


def down(quiet: bool = False) -> None:
    """Stop only the processes this cluster started, then forget its data."""
    with exclusive():
        _down(quiet)


def _down(quiet: bool = False) -> None:
    state = State.load()
    if state is not None:
        for name in ("kube-apiserver", "etcd"):
            stop(name, state)
    for path in (STATE_FILE, KUBECONFIG):
        path.unlink(missing_ok=True)
    subprocess.run(["rm", "-rf", str(STATE_DIR / "etcd")], check=False)
    if not quiet:
        log("control plane stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.controlplane", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "restart-apiserver", "build"])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        elif args.command == "restart-apiserver":
            restart_apiserver()
        elif args.command == "build":
            for name, path in ensure_binaries().items():
                print(f"{name}={path}")
        else:
            state = State.load()
            ok = healthy(state)
            print(json.dumps({"healthy": ok, "server": state.server if state else None,
                              "kubeconfig": str(KUBECONFIG), "pids": state.pids if state else {}}))
            return 0 if ok else 1
    except ControlPlaneError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
