"""``make demo``: the three strategies on the local cluster, with progress a person can follow.

Expects ``make cluster-up`` (the Makefile runs it): kube-apiserver, the local Seldon data plane and
Prometheus. The demo deploys SeldonDeployment ``digits`` at 1.0.0, drives Locust traffic (with
ground-truth feedback) through the ingress, runs the operator, and rolls out, one after the other:

1. an A/B test of ``2.0.0`` against 1.0.0 on accuracy from feedback: 2.0.0 wins and becomes the stable model;
2. a canary of ``2.1.0-degraded``, trained on corrupted labels: it answers every request (no 5xx, fast), yet
   its accuracy measured from feedback falls below the gate, and it is rolled back;
3. a shadow of ``2.2.0-biased``, blind to the digit 8: it answers a copy of every request, no user gets its
   answers, and it is removed on what it answered (its classes drift from the stable's, and it disagrees
   with the stable's answers to the same images).

It prints each change (weight or mirror, every metric's value and verdict, phase) and ends with a summary
table (strategy, candidate, decision, why, time to decision, failed or slow responses users got, requests
the candidate served), also written to reports/demo-report.md.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from localcluster import controlplane, services
from testkit.kube import Kube, KubectlError
from testkit.locust import Locust
from testkit.processes import OperatorProcess
from testkit.recorder import RolloutRecorder
from testkit.rollouts import model_rollout
from testkit.seldon import wait_available
from testkit.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = os.environ.get("DEMO_NAMESPACE", "models")
KUBE = Kube.local()
LOGS = controlplane.STATE_DIR / "logs"
REPORT = REPO / "reports" / "demo-report.md"
TERMINAL = {"Succeeded", "RolledBack", "Aborted", "Failed"}
SLOW_S = 0.25  # a response slower than this counts against the user experience
LOCUST_SECONDS = 300  # the traffic stops by itself after this, whatever happens
STEPS: list[dict[str, Any]] = [{"setWeight": 10}, {"pause": {"duration": "12s"}}, {"setWeight": 30}, {"analysis": {}},
                                {"pause": {"duration": "12s"}}, {"setWeight": 60}, {"pause": {"duration": "12s"}},
                                {"setWeight": 100}]


@dataclass
class Counts:
    total: float = 0.0
    failed: float = 0.0
    slow: float = 0.0

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.total - other.total, self.failed - other.failed, self.slow - other.slow)


@dataclass
class Outcome:
    strategy: str
    version: str
    result: str
    duration_s: float
    time_to_rollback_s: float | None
    users: Counts
    candidate: Counts
    message: str


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    """kubectl's output; a failure ends the demo with kubectl's message."""
    try:
        return KUBE.run(*args, stdin=stdin, check=check).stdout
    except KubectlError as exc:
        raise SystemExit(str(exc)) from None


def ingress_counts(ingress_url: str, predictor: str | None = None) -> Counts:
    """Requests the ingress answered in NAMESPACE (optionally one predictor's): all, 5xx, slower than SLOW_S.

    The executors' predictions (their series for NAMESPACE), plus the requests the mesh failed itself (no
    ready server: they never reached an executor; the gateway does not tell predictions from feedback)."""
    with urllib.request.urlopen(f"{ingress_url}/metrics/{NAMESPACE}", timeout=5) as resp:
        text = resp.read().decode()
    counts = Counts()
    for family in text_string_to_metric_families(text):
        if family.name != "seldon_api_executor_server_requests_seconds":
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("service") != "predictions":
                continue
            if predictor is not None and labels.get("predictor_name") != predictor:
                continue
            if sample.name.endswith("_count"):
                counts.total += sample.value
                if labels.get("code", "").startswith("5"):
                    counts.failed += sample.value
            elif sample.name.endswith("_bucket") and labels.get("le") == str(SLOW_S):
                counts.slow -= sample.value  # slow = count - within SLOW_S, added below
    counts.slow += counts.total
    with urllib.request.urlopen(f"{ingress_url}/stats/prometheus", timeout=5) as resp:
        mesh = resp.read().decode()
    for family in text_string_to_metric_families(mesh):
        for sample in family.samples:
            labels = sample.labels
            if (sample.name != "istio_requests_total" or labels.get("destination_service_namespace") != NAMESPACE
                    or labels.get("response_flags") == "-"):
                continue
            if predictor is not None and labels.get("destination_service_name") != f"digits-{predictor}":
                continue
            counts.total += sample.value
            counts.failed += sample.value if labels.get("response_code", "").startswith("5") else 0.0
    return counts


def progress_line(status: dict[str, Any]) -> str:
    checks = status.get("analysis", {}).get("lastChecks", [])
    verdicts = "  ".join(
        f"{c['metric']}={'-' if c.get('value') is None else format(c['value'], '.3g')}({c['verdict']})"
        for c in checks) or "no analysis yet"
    traffic = (f"mirror={status['candidateMirror']:>3}%" if status.get("candidateMirror")
               else f"weight={status.get('candidateWeight', 0):>3}%")
    return (f"phase={status.get('phase', '-'):<11} {traffic} step={status.get('stepIndex', 0)}  {verdicts}\n"
            f"           {status.get('message', '')}")


def follow(name: str, strategy: str, version: str, ingress_url: str, deadline_s: float) -> Outcome:
    """Print every change of the rollout until the revision for this version ends. A shadow's requests are
    copies of users' requests, answered to nobody: they are the candidate's, never the users'."""
    started = time.monotonic()
    users_before = ingress_counts(ingress_url)
    candidate_before = ingress_counts(ingress_url, "main-candidate")
    rollout = RolloutRecorder(KUBE, NAMESPACE, name)
    first_failure: float | None = None
    last_line = ""
    status: dict[str, Any] = {}

    def ended() -> bool:
        nonlocal first_failure, last_line, status
        status = rollout.status()
        if status.get("candidateVersion") != version:
            return False
        if first_failure is None and any(c["verdict"] == "Fail"
                                         for c in status.get("analysis", {}).get("lastChecks", [])):
            first_failure = time.monotonic()
        line = progress_line(status)
        if line != last_line:
            print(f"  [{time.monotonic() - started:5.1f}s] {line}", flush=True)
            last_line = line
        return status.get("phase") in TERMINAL
    with contextlib.suppress(AssertionError):  # past the deadline: the outcome says how far it got
        wait_for(ended, f"rollout {name} of {version} to end", timeout=deadline_s, interval=0.5)
    ended_at = time.monotonic()
    rolled_back = status.get("phase") in {"RolledBack", "Aborted"}
    candidate = ingress_counts(ingress_url, "main-candidate") - candidate_before
    users = ingress_counts(ingress_url) - users_before
    if strategy == "shadow":
        users = users - candidate  # mirrored copies (the demo's shadow never goes live)
    return Outcome(strategy=strategy, version=version, result=str(status.get("phase", "unknown")),
                   duration_s=ended_at - started,
                   time_to_rollback_s=(ended_at - first_failure) if rolled_back and first_failure else None,
                   users=users, candidate=candidate, message=str(status.get("message", "")))


def rollout_manifest(strategy: str, version: str) -> str:
    """The example rollout to `version` with a short analysis (a 12 s window): a canary with the demo's steps,
    an A/B test on accuracy (30 s, stopping early on a clear winner), or a shadow judged on its answers."""
    obj = model_rollout(version, STEPS, name="digits", window="12s", interval="4s", minRequests=10, failureLimit=2,
                        inconclusiveLimit=6)
    spec = obj["spec"]
    if strategy == "abTest":
        spec["strategy"] = {"abTest": {"weight": 50, "duration": "30s", "primary": "accuracy", "stopEarly": True}}
        spec["analysis"]["metrics"] = [
            {"name": "accuracy", "template": "model-accuracy", "compare": {"tolerance": 0.01}},
            {"name": "success-rate", "template": "request-success-rate", "min": 0.99, "window": "12s"}]
    elif strategy == "shadow":
        spec["strategy"] = {"shadow": {"mirrorPercent": 100, "duration": "20s", "steps": [{"setWeight": 20}]}}
        spec["analysis"]["metrics"] = [
            {"name": "success-rate", "template": "request-success-rate", "min": 0.99, "window": "12s"},
            {"name": "drift", "template": "prediction-distribution", "compare": {"maxPSI": 0.2}, "window": "12s"},
            {"name": "agreement", "template": "shadow-agreement", "min": 0.95, "confidence": 0.95,
             "window": "12s"}]
    return yaml.safe_dump(obj)


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "-"


def summary(outcomes: list[Outcome]) -> str:
    rows = ["| strategy | candidate | decision | time to decision | time to rollback | users: requests | "
            f"users: failed | users: slower than {SLOW_S:g}s | candidate: requests (failed) | why |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for o in outcomes:
        rollback = f"{o.time_to_rollback_s:.1f}s" if o.time_to_rollback_s is not None else "-"
        rows.append(f"| {o.strategy} | {o.version} | {o.result} | {o.duration_s:.1f}s | {rollback} | "
                    f"{o.users.total:.0f} | "
                    f"{pct(o.users.failed, o.users.total)} | {pct(o.users.slow, o.users.total)} | "
                    f"{o.candidate.total:.0f} ({o.candidate.failed:.0f}) | {o.message} |")
    return "\n".join(rows)


def wait_released(name: str, timeout_s: float = 30.0) -> None:
    """Until the rollout holds no finalizer (the operator releases it once nothing is at stake), so that
    stopping the operator leaves nothing that blocks a later delete."""
    try:
        wait_for(lambda: not kubectl("get", "mro", name, "-n", NAMESPACE, "--ignore-not-found", "-o",
                                     "jsonpath={.metadata.finalizers}").strip(),
                 f"rollout {name} to release its finalizer", timeout=timeout_s, interval=0.5)
    except AssertionError:
        print(f"  (rollout {name} still holds its finalizer after {timeout_s:.0f}s)")


def main() -> int:
    stack = services.up()
    print(f"==> data plane ingress {stack.ingress_url}, Prometheus {stack.prometheus_url}")
    kubectl("create", "namespace", NAMESPACE, check=False)
    # The operator runs before the previous demo's objects go: a rollout interrupted mid-way holds a
    # finalizer, and only the operator (rolling its candidate back) releases it.
    operator = OperatorProcess(KUBE, LOGS / "operator.log", extra_args=(
        "--namespace", NAMESPACE, "--prometheus-url", stack.prometheus_url,
        "--metrics-port", str(services.OPERATOR_METRICS_PORT))).start()
    try:
        return run_demo(stack, operator)
    finally:
        operator.stop(timeout=20)


def run_demo(stack: services.Services, operator: OperatorProcess) -> int:
    kubectl("delete", "mro", "digits", "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
    kubectl("delete", "sdep", "digits", "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
    kubectl("apply", "-n", NAMESPACE, "-f", str(REPO / "examples" / "seldondeployment.yaml"),
            "-f", str(REPO / "examples" / "analysistemplate-accuracy.yaml"))
    try:
        wait_available(KUBE, NAMESPACE, "digits", timeout=90)
    except AssertionError:
        raise SystemExit("SeldonDeployment digits did not become Available; see .localcluster/logs/") from None
    print(f"==> SeldonDeployment digits serves 1.0.0 on predictor main "
          f"({stack.ingress_url}/seldon/{NAMESPACE}/digits/api/v1.0/predictions)")
    locust = Locust(stack.ingress_url, NAMESPACE, LOGS, users=8, duration_s=LOCUST_SECONDS).start()
    assert operator.proc is not None
    print(f"==> Locust: 8 users with feedback for at most {LOCUST_SECONDS}s; operator pid {operator.proc.pid}; "
          f"logs in {LOGS}")
    outcomes: list[Outcome] = []
    try:
        for strategy, version, story in (
            ("abTest", "2.0.0", "an A/B test against 1.0.0 on accuracy: expect 2.0.0 to win and become stable"),
            ("canary", "2.1.0-degraded",
             "trained on corrupted labels; serves fine, answers worse: expect rollback on accuracy"),
            ("shadow", "2.2.0-biased",
             "blind to the digit 8, as a shadow: expect removal on its answers, with no user answered by it"),
        ):
            print(f"\n==> ModelRollout digits -> {version}, strategy {strategy} ({story})")
            kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=rollout_manifest(strategy, version))
            outcomes.append(follow("digits", strategy, version, stack.ingress_url, deadline_s=150))
        print("\n==> kubectl get mro -o wide")
        print(kubectl("get", "mro", "-n", NAMESPACE, "-o", "wide"))
        table = summary(outcomes)
        print(table)
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(f"# modelrollout demo report\n\n{time.strftime('%Y-%m-%d %H:%M:%S')}, namespace "
                          f"{NAMESPACE}, Locust 8 users through the local ingress\n\n{table}\n")
        print(f"\nreport written to {REPORT.relative_to(REPO)}")
        wait_released("digits")
        return 0 if [o.result for o in outcomes] == ["Succeeded", "RolledBack", "RolledBack"] else 1
    finally:
        locust.stop(timeout=20)


if __name__ == "__main__":
    sys.exit(main())
