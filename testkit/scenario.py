"""A namespace on the local cluster with the live data plane, and what runs in it.

``Stage``: Locust, the operator, rollouts (recorded) and fault injection started on demand in one
namespace; ``close()`` stops them (faults and recorders, Locust, the operator, then anything else
registered, newest first), deletes the namespace's rollouts and deployments and waits until the data
plane stopped their model servers. The end-to-end tests build on it.

``Scenario``: a Stage of its own (a fresh namespace, logs under ``.localcluster/chaos/<namespace>/``) for
the chaos scenarios and the benchmarks; ``check`` records an invariant and whether it held, ``finish``
prints the tally and gives the exit code, ``run_scenario`` runs one to the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localcluster import controlplane
from localcluster import services as local_services
from testkit import faults
from testkit.kube import Kube, running_cluster
from testkit.locust import Locust
from testkit.processes import OperatorProcess
from testkit.prometheus import ingress_requests
from testkit.recorder import RolloutRecorder
from testkit.seldon import CANDIDATE, delete_deployments, deploy, digits_sdep, ensure_models
from testkit.waiting import wait_for


class Stage:
    def __init__(self, kube: Kube, namespace: str, services: local_services.Services, workdir: Path) -> None:
        self.kube, self.namespace, self.services, self.workdir = kube, namespace, services, workdir
        self.locust: Locust | None = None  # the latest started
        self.operator: OperatorProcess | None = None  # the latest started
        self.locusts: list[Locust] = []
        self.operators: list[OperatorProcess] = []
        self.recorders: list[RolloutRecorder] = []
        self.armers: list[faults.FaultArmer] = []
        self.cleanups: list[Callable[[], None]] = []  # anything else to stop, run newest first

    @property
    def ingress_url(self) -> str:
        return self.services.ingress_url

    @property
    def prometheus_url(self) -> str:
        return self.services.prometheus_url

    def deploy(self, sdep: dict[str, Any] | None = None) -> dict[str, Any]:
        """A SeldonDeployment (default: digits, main at 1.0.0), once the data plane reports it Available."""
        return deploy(self.kube, self.namespace, sdep or digits_sdep("1.0.0"))

    def start_locust(self, users: int = 4, duration_s: int = 150, **env: str) -> Locust:
        self.locust = Locust(self.ingress_url, self.namespace, self.workdir, users=users, duration_s=duration_s,
                             env=env).start()
        self.locusts.append(self.locust)
        return self.locust

    def wait_traffic(self, predictions: float = 20, timeout: float = 30) -> None:
        """Until Prometheus has seen Locust's predictions for this namespace through the ingress."""
        wait_for(lambda: ingress_requests(self.prometheus_url, self.namespace) >= predictions,
                 f"{predictions:.0f} predictions for {self.namespace} in Prometheus", timeout=timeout, interval=0.5)

    def start_operator(self, prometheus_url: str | None = None, extra: tuple[str, ...] = ()) -> OperatorProcess:
        self.operator = OperatorProcess(
            self.kube, self.workdir / "operator.log",
            extra_args=("--namespace", self.namespace, "--prometheus-url", prometheus_url or self.prometheus_url,
                        *extra),
        ).start()
        self.operators.append(self.operator)
        return self.operator

    def start_rollout(self, obj: dict[str, Any]) -> RolloutRecorder:
        """Create the ModelRollout and record its status from now on."""
        self.kube.create(obj, self.namespace)
        recorder = RolloutRecorder(self.kube, self.namespace, obj["metadata"]["name"]).start()
        self.recorders.append(recorder)
        return recorder

    def arm_faults(self, predictor: str = CANDIDATE, deployment: str = "digits", **knobs: Any) -> faults.FaultArmer:
        """Inject the fault knobs on the predictor's model servers as soon as each is ready."""
        armer = faults.FaultArmer(self.ingress_url, self.namespace, deployment, predictor, knobs).start()
        self.armers.append(armer)
        return armer

    def servers(self, predictor: str | None = None) -> list[dict[str, Any]]:
        return faults.servers(self.ingress_url, self.namespace, "digits", predictor)

    def close(self) -> list[str]:
        """Stop everything started here, each step tried whatever the others did; then delete the
        namespace's objects and wait for the data plane to stop their servers (a failure there raises).
        Returns the stop steps that failed."""
        steps = [*(a.stop for a in self.armers), *(r.stop for r in self.recorders), *(p.stop for p in self.locusts),
                 *(p.stop for p in self.operators), *reversed(self.cleanups)]
        errors: list[str] = []
        for step in steps:
            try:
                step()
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}")
        delete_deployments(self.kube, self.ingress_url, self.namespace)
        return errors


class Scenario(Stage):
    """A namespace of its own with the shared data plane, cleaned up however the scenario ends."""

    def __init__(self, title: str, prefix: str = "chaos") -> None:
        kube, services = running_cluster(), local_services.up()
        namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
        workdir = Path(controlplane.STATE_DIR) / "chaos" / namespace
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(kube, namespace, services, workdir)
        self.title = title
        self.results: list[tuple[str, bool, str]] = []

    def __enter__(self) -> Scenario:
        ensure_models()
        print(f"== {self.title} (namespace {self.namespace}, logs {self.workdir})", flush=True)
        self.kube.run("create", "namespace", self.namespace)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for error in self.close():
                print(f"cleanup step failed: {error}", flush=True)
        finally:
            self.kube.run("delete", "namespace", self.namespace, "--wait=false", check=False)

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
    """Run one scenario in its own namespace; an error that cut it short is a failed invariant. The exit code."""
    with Scenario(title) as sc:
        try:
            body(sc)
        except errors as exc:
            sc.check("scenario ran to the end", False, str(exc))
    return sc.finish()
