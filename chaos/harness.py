"""Driving the local cluster for chaos runs, end-to-end tests and benchmarks.

Locust as a bounded process, the digits SeldonDeployment (apply, wait Available, delete and check the
data plane stopped its servers), ModelRollout objects with short intervals, a status recorder and
Prometheus queries. Every wait has a deadline; every process started here is stopped by its own pid.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from chaos import faults  # noqa: E402
from localcluster import controlplane  # noqa: E402
from tests.support import Kube, wait_for  # noqa: E402

SDEP = yaml.safe_load((REPO / "examples" / "seldondeployment.yaml").read_text())
MODELS = REPO / "models" / "digits"
LOCUSTFILE = REPO / "loadtests" / "ingress_locustfile.py"
VERSIONS = ("1.0.0", "2.0.0", "2.1.0-degraded", "2.2.0-biased")


def kube() -> Kube:
    """The shared control plane (it must already be up: chaos runs and benchmarks never start it)."""
    state = controlplane.State.load()
    if not controlplane.healthy(state):
        raise SystemExit("the local control plane is not running: `make cluster-up` first")
    return Kube(kubeconfig=controlplane.KUBECONFIG, kubectl=str(controlplane.BIN_DIR / "current" / "kubectl"),
                server=state.server if state else "")


def ensure_models() -> None:
    missing = [v for v in VERSIONS if not (MODELS / v).is_dir()]
    if missing:
        python = REPO / ".venv-model-server" / "bin" / "python"
        subprocess.run([str(python), "-m", "modelserver.train", "--out", str(REPO / "models")], cwd=REPO,
                       check=True, timeout=600)


def model_uri(version: str) -> str:
    return f"file:///models/digits/{version}"


# --------------------------------------------------------------------------------------------------
# SeldonDeployments


def digits_sdep(version: str = "1.0.0", name: str = "digits") -> dict[str, Any]:
    sdep: dict[str, Any] = copy.deepcopy(SDEP)
    sdep["metadata"] = {"name": name}
    main = sdep["spec"]["predictors"][0]
    main["graph"]["modelUri"] = model_uri(version)
    main["annotations"] = {"modelrollout.dev/version": version}
    return sdep


def deploy(kube: Kube, namespace: str, sdep: dict[str, Any], timeout: float = 90) -> dict[str, Any]:
    """Apply a SeldonDeployment and wait until the data plane reports it Available."""
    kube.apply(sdep, namespace)
    name = sdep["metadata"]["name"]

    def available() -> dict[str, Any] | None:
        obj = kube.get("sdep", name, namespace)
        return obj if (obj.get("status") or {}).get("state") == "Available" else None
    result: dict[str, Any] = wait_for(available, f"SeldonDeployment {namespace}/{name} Available",
                                      timeout=timeout, interval=0.5)
    return result


def delete_deployments(kube: Kube, ingress_url: str, namespace: str, timeout: float = 60) -> None:
    """Delete every ModelRollout and SeldonDeployment of the namespace; wait until no server runs there."""
    for kind in ("modelrollouts.modelrollout.dev", "analysistemplates.modelrollout.dev",
                 "seldondeployments.machinelearning.seldon.io"):
        kube.run("delete", kind, "--all", "-n", namespace, "--wait=false", check=False)
    wait_for(lambda: not faults.servers(ingress_url, namespace), f"the data plane to stop every server in {namespace}",
             timeout=timeout, interval=0.5)


def traffic(kube: Kube, namespace: str, name: str = "digits") -> dict[str, int]:
    sdep = kube.get("sdep", name, namespace)
    return {p["name"]: int(p.get("traffic") or 0) for p in sdep["spec"]["predictors"]}


# --------------------------------------------------------------------------------------------------
# ModelRollouts


def rollout(candidate: str, steps: Sequence[Any], name: str | None = None,
            **analysis: Any) -> dict[str, Any]:
    """A ModelRollout of digits to `candidate` with short intervals (seconds, not minutes)."""
    settings: dict[str, Any] = {
        "interval": "3s", "failureLimit": 2, "inconclusiveLimit": 8, "minRequests": 15,
        "metrics": [{"name": "success-rate", "template": "request-success-rate", "min": 0.99, "window": "8s"},
                    {"name": "latency-p99", "template": "request-duration-p99", "max": 0.5, "window": "8s"}]}
    settings.update(analysis)
    return {
        "apiVersion": "modelrollout.dev/v1alpha1", "kind": "ModelRollout",
        "metadata": {"name": name or f"digits-{uuid.uuid4().hex[:5]}"},
        "spec": {"targetRef": {"kind": "SeldonDeployment", "name": "digits"}, "stablePredictor": "main",
                 "candidate": {"modelUri": model_uri(candidate), "version": candidate},
                 "strategy": {"canary": {"steps": copy.deepcopy(list(steps))}}, "analysis": settings},
    }


@dataclass
class Sample:
    t: float  # monotonic
    wall: float  # time.time(), to line up with Locust's history
    phase: str
    weight: int
    step: int
    revision: int
    verdicts: dict[str, str]
    message: str


@dataclass
class RolloutRecorder:
    """Polls a rollout's status in a bounded background thread and keeps every change it saw."""

    kube: Kube
    namespace: str
    name: str
    poll_s: float = 0.3
    max_seconds: float = 600.0
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RolloutRecorder:
        self._thread = threading.Thread(target=self._run, name=f"recorder-{self.name}", daemon=True)
        self._thread.start()
        return self

    def status(self) -> dict[str, Any]:
        return dict(self.kube.get("mro", self.name, self.namespace).get("status") or {})

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                status = self.status()
            except Exception:
                self.errors += 1
            else:
                checks = (status.get("analysis") or {}).get("lastChecks") or []
                sample = Sample(time.monotonic(), time.time(), str(status.get("phase") or ""),
                                int(status.get("candidateWeight") or 0), int(status.get("stepIndex") or 0),
                                int(status.get("revision") or 0), {c["metric"]: c["verdict"] for c in checks},
                                str(status.get("message") or ""))
                last = self.samples[-1] if self.samples else None
                if last is None or (last.phase, last.weight, last.step, last.revision, last.verdicts,
                                    last.message) != (sample.phase, sample.weight, sample.step, sample.revision,
                                                      sample.verdicts, sample.message):
                    self.samples.append(sample)
            self._stop.wait(self.poll_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait(self, condition: Callable[[dict[str, Any]], bool], what: str, timeout: float = 90) -> dict[str, Any]:
        try:
            return wait_for(lambda: (lambda s: s if condition(s) else None)(self.status()), what, timeout=timeout,
                            interval=0.3)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstatus: {yaml.safe_dump(self.status())}") from None

    def wait_phase(self, *phases: str, timeout: float = 90) -> dict[str, Any]:
        """Wait for one of the phases; returns the status once the recorder has a sample of it too."""
        status = self.wait(lambda s: s.get("phase") in phases, f"{self.name} to reach {'/'.join(phases)}", timeout)
        wait_for(lambda: self.first(lambda s: s.phase == status["phase"]), f"the recorder to see {status['phase']}",
                 timeout=10, interval=0.1)
        return status

    def phases(self) -> list[str]:
        return [s.phase for s in self.samples]

    def first(self, predicate: Callable[[Sample], bool]) -> Sample | None:
        return next((s for s in self.samples if predicate(s)), None)

    def timeline(self) -> str:
        if not self.samples:
            return "(no samples)"
        t0 = self.samples[0].t
        return "\n".join(f"  +{s.t - t0:5.1f}s rev {s.revision} {s.phase:<11} step {s.step} weight {s.weight:>3} "
                         f"{s.verdicts} {s.message[:90]}" for s in self.samples)


# --------------------------------------------------------------------------------------------------
# Locust


@dataclass
class LocustStats:
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p99_ms: float
    by_name: dict[str, dict[str, float]]

    @property
    def failure_share(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


class Locust:
    """``locust --headless`` through the ingress, as its own process, bounded by -t and killed on stop()."""

    def __init__(self, host: str, namespace: str, workdir: Path, users: int = 4, duration_s: int = 120,
                 deployment: str = "digits", env: dict[str, str] | None = None,
                 locustfile: Path = LOCUSTFILE) -> None:
        if not host.startswith("http://127."):
            raise ValueError(f"refusing a non-loopback host {host!r}")
        self.host, self.namespace, self.deployment = host, namespace, deployment
        self.workdir, self.users, self.duration_s = workdir, users, duration_s
        self.env = {"SELDON_NAMESPACE": namespace, "SELDON_DEPLOYMENT": deployment, **(env or {})}
        self.locustfile = locustfile
        self.prefix = workdir / f"locust-{uuid.uuid4().hex[:6]}"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str:
        local = Path(sys.executable).parent / "locust"
        return str(local if local.exists() else REPO / ".venv" / "bin" / "locust")

    def start(self) -> Locust:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(f"{self.prefix}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary(), "-f", str(self.locustfile), "--headless", "-u", str(self.users), "-r",
                 str(self.users), "-t", f"{self.duration_s}s", "--stop-timeout", "2", "--host", self.host,
                 "--csv", str(self.prefix), "--csv-full-history", "--only-summary", "--loglevel", "WARNING"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                env={**os.environ, **self.env}, start_new_session=True)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (Locust writes its final CSV), then SIGKILL after a deadline."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def wait(self, timeout: float) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()

    def stats(self) -> LocustStats:
        path = Path(f"{self.prefix}_stats.csv")
        if not path.exists():
            raise AssertionError(f"Locust wrote no stats ({path}); log:\n{self.log()[-2000:]}")
        by_name: dict[str, dict[str, float]] = {}
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                by_name[row["Name"]] = {
                    "requests": float(row["Request Count"]), "failures": float(row["Failure Count"]),
                    "rps": float(row["Requests/s"]), "p50_ms": _num(row.get("50%")), "p99_ms": _num(row.get("99%"))}
        total = by_name.get("Aggregated") or {"requests": 0, "failures": 0, "rps": 0, "p50_ms": 0, "p99_ms": 0}
        return LocustStats(int(total["requests"]), int(total["failures"]), total["rps"], total["p50_ms"],
                           total["p99_ms"], by_name)

    def failures(self) -> list[dict[str, str]]:
        path = Path(f"{self.prefix}_failures.csv")
        if not path.exists():
            return []
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))

    def history(self) -> list[tuple[float, int, int]]:
        """(unix time, cumulative requests, cumulative failures) of all requests, about once a second."""
        path = Path(f"{self.prefix}_stats_history.csv")
        if not path.exists():
            return []
        with open(path, newline="") as handle:
            return [(float(row["Timestamp"]), int(row["Total Request Count"]), int(row["Total Failure Count"]))
                    for row in csv.DictReader(handle) if row["Name"] == "Aggregated"]

    def counts_between(self, start: float, end: float) -> tuple[int, int]:
        """(requests, failures) Locust counted between two unix times (to its 1 s resolution)."""
        def at(moment: float) -> tuple[int, int]:
            before = [(r, f) for t, r, f in self.history() if t <= moment]
            return before[-1] if before else (0, 0)
        (r0, f0), (r1, f1) = at(start), at(end)
        return r1 - r0, f1 - f0

    def log(self) -> str:
        path = Path(f"{self.prefix}.log")
        return path.read_text(errors="replace") if path.exists() else ""


def _num(value: str | None) -> float:
    try:
        return float(value or "nan")
    except ValueError:
        return float("nan")


# --------------------------------------------------------------------------------------------------
# Prometheus


def prom_query(prometheus_url: str, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return list(json.loads(resp.read())["data"]["result"])


def prom_value(prometheus_url: str, promql: str) -> float | None:
    """The single value of an instant query, None when it has no result."""
    result = prom_query(prometheus_url, promql)
    return float(result[0]["value"][1]) if result else None


def ingress_requests(prometheus_url: str, namespace: str, predicate: str = "", window: str = "") -> float:
    """Predictions served through the ingress for a namespace (total, or increase over a window)."""
    selector = f'namespace="{namespace}",service="predictions"' + (f",{predicate}" if predicate else "")
    metric = f"seldon_api_executor_server_requests_seconds_count{{{selector}}}"
    query = f"sum(increase({metric}[{window}]))" if window else f"sum({metric})"
    return prom_value(prometheus_url, query) or 0.0


# --------------------------------------------------------------------------------------------------
# Scenario scaffolding for the chaos scripts


class Scenario:
    """A namespace of its own with the digits SeldonDeployment, cleaned up however the scenario ends.

    ``check`` records an invariant and whether it held; ``finish`` prints them and gives the exit code.
    """

    def __init__(self, title: str, prefix: str = "chaos") -> None:
        from localcluster import services
        self.title = title
        self.kube = kube()
        self.services = services.up()
        self.namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.workdir = Path(controlplane.STATE_DIR) / "chaos" / self.namespace
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.results: list[tuple[str, bool, str]] = []
        self.cleanups: list[Callable[[], None]] = []

    def __enter__(self) -> Scenario:
        ensure_models()
        print(f"== {self.title} (namespace {self.namespace}, logs {self.workdir})", flush=True)
        self.kube.run("create", "namespace", self.namespace)
        return self

    def __exit__(self, *exc: object) -> None:
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as error:
                print(f"cleanup step failed: {error}", flush=True)
        try:
            delete_deployments(self.kube, self.services.ingress_url, self.namespace)
        finally:
            self.kube.run("delete", "namespace", self.namespace, "--wait=false", check=False)

    def deploy(self, sdep: dict[str, Any] | None = None) -> dict[str, Any]:
        return deploy(self.kube, self.namespace, sdep or digits_sdep("1.0.0"))

    def locust(self, users: int = 4, duration_s: int = 120, **env: str) -> Locust:
        proc = Locust(self.services.ingress_url, self.namespace, self.workdir, users=users,
                      duration_s=duration_s, env=env).start()
        self.cleanups.append(proc.stop)
        wait_for(lambda: ingress_requests(self.services.prometheus_url, self.namespace) >= 20,
                 "Locust traffic in Prometheus", timeout=40, interval=0.5)
        return proc

    def operator(self, prometheus_url: str | None = None) -> Any:
        from tests.support import OperatorProcess
        proc = OperatorProcess(self.kube, self.workdir / "operator.log", extra_args=(
            "--namespace", self.namespace, "--prometheus-url", prometheus_url or self.services.prometheus_url))
        proc.start()
        self.cleanups.append(proc.stop)
        return proc

    def start_rollout(self, obj: dict[str, Any]) -> RolloutRecorder:
        self.kube.create(obj, self.namespace)
        recorder = RolloutRecorder(self.kube, self.namespace, obj["metadata"]["name"]).start()
        self.cleanups.append(recorder.stop)
        return recorder

    def check(self, invariant: str, held: bool, detail: str = "") -> bool:
        self.results.append((invariant, bool(held), detail))
        print(f"  [{'PASS' if held else 'FAIL'}] {invariant}" + (f": {detail}" if detail else ""), flush=True)
        return bool(held)

    def check_no_failures_before_promotion(self, mro: RolloutRecorder, locust: Locust, invariant: str) -> None:
        """Users got no failed answer from the rollout's start until it began promoting."""
        promoting = mro.first(lambda s: s.phase in ("Promoting", "Succeeded"))
        if promoting is None:  # nothing to judge is a failed check, not a silent pass
            self.check(invariant, False, "the rollout never began promoting")
            return
        requests, failures = locust.counts_between(mro.samples[0].wall, promoting.wall - 1)
        self.check(invariant, failures == 0 and requests > 0, f"{failures} of {requests}")

    def finish(self) -> int:
        failed = [r for r in self.results if not r[1]]
        print(f"== {self.title}: {len(self.results) - len(failed)}/{len(self.results)} invariants held", flush=True)
        return 1 if failed or not self.results else 0


def run_scenario(title: str, body: Callable[[Scenario], None],
                 errors: tuple[type[BaseException], ...] = (AssertionError,)) -> int:
    """Run one scenario in its own namespace; an error cut it short is a failed invariant. The exit code."""
    with Scenario(title) as sc:
        try:
            body(sc)
        except errors as exc:
            sc.check("scenario ran to the end", False, str(exc))
    return sc.finish()
