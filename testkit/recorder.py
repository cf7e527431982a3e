"""Watching a rollout and its target.

``RolloutRecorder`` reads a ModelRollout's status on demand (``status``, ``wait``, ``wait_phase``), its
target's traffic and Events, annotates it, and once started keeps every change of its status it saw
(bounded background polling), so a check can say what happened in between. ``TrafficWatch`` keeps every
version of a SeldonDeployment's predictors from a real watch, so a test can say what never happened."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from localcluster import processes
from testkit.kube import Kube
from testkit.seldon import traffic
from testkit.waiting import wait_for


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

    def key(self) -> tuple[object, ...]:
        return self.phase, self.weight, self.step, self.revision, self.verdicts, self.message


class RolloutRecorder:
    """One ModelRollout: read and waited on with deadlines; recorded in the background once started.

    ``timeout`` is the default deadline of ``wait`` and ``wait_phase``, ``interval`` how often they (and the
    recording) read the status; the recording ends by itself after ``max_seconds``."""

    def __init__(self, kube: Kube, namespace: str, name: str, target: str = "digits", timeout: float = 90.0,
                 interval: float = 0.3, max_seconds: float = 600.0) -> None:
        self.kube, self.namespace, self.name, self.target = kube, namespace, name, target
        self.timeout, self.interval, self.max_seconds = timeout, interval, max_seconds
        self.samples: list[Sample] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------------- reading

    def status(self) -> dict[str, Any]:
        return dict(self.kube.get("mro", self.name, self.namespace).get("status") or {})

    def traffic(self) -> dict[str, int]:
        return traffic(self.kube, self.namespace, self.target)

    def events(self, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.kube.events(self.name, self.namespace) if e["reason"] == reason]

    def annotate(self, action: str) -> None:
        self.kube.run("annotate", "--overwrite", "mro", self.name, "-n", self.namespace,
                      f"modelrollout.dev/action={action}")

    def wait(self, condition: Callable[[dict[str, Any]], bool], what: str,
             timeout: float | None = None) -> dict[str, Any]:
        """Until the status satisfies condition; returns it. The failure shows the last status."""
        def holds() -> dict[str, Any] | None:
            status = self.status()
            return status if condition(status) else None
        try:
            return wait_for(holds, what, timeout=self.timeout if timeout is None else timeout,
                            interval=self.interval)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstatus: {self._status_text()}") from None

    def wait_phase(self, *phases: str, timeout: float | None = None) -> dict[str, Any]:
        """Until one of the phases; returns the status (once recorded too, when recording)."""
        status = self.wait(lambda s: s.get("phase") in phases, f"{self.name} to reach {'/'.join(phases)}", timeout)
        if self._thread is not None:
            wait_for(lambda: self.first(lambda s: s.phase == status["phase"]),
                     f"the recorder to see {status['phase']}", timeout=10, interval=0.1)
        return status

    def _status_text(self) -> str:
        try:
            return yaml.safe_dump(self.status())
        except Exception as exc:  # the failure message must not fail
            return f"(unreadable: {exc})"

    # -------------------------------------------------------------------------------------- recording

    def start(self) -> RolloutRecorder:
        self._thread = threading.Thread(target=self._run, name=f"recorder-{self.name}", daemon=True)
        self._thread.start()
        return self

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
                if not self.samples or self.samples[-1].key() != sample.key():
                    self.samples.append(sample)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

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


class TrafficWatch:
    """Every version of a SeldonDeployment's predictor traffic, from a real watch (``kubectl get -w``), so
    a test can say what never happened, not only what it saw when it looked. Bounded in time."""

    def __init__(self, kube: Kube, namespace: str, name: str, max_seconds: float = 600.0) -> None:
        self.kube, self.namespace, self.name, self.max_seconds = kube, namespace, name, max_seconds
        self.history: list[dict[str, int]] = []
        self.versions: list[list[dict[str, Any]]] = []  # every version's predictors, whole
        self.seen_at: list[float] = []  # when each version arrived (unix time)
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TrafficWatch:
        self._proc = subprocess.Popen(
            [self.kube.kubectl, "get", "sdep", self.name, "-n", self.namespace, "-w", "-o", "json",
             f"--request-timeout={int(self.max_seconds)}s"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
            env=self.kube.env, start_new_session=True)
        self._thread = threading.Thread(target=self._read, daemon=True, name=f"traffic-{self.name}")
        self._thread.start()
        wait_for(lambda: self.history, f"the watch on {self.name} to deliver its first version", timeout=15)
        return self

    def _read(self) -> None:
        """kubectl prints one JSON document per version, back to back: decode them as they complete."""
        assert self._proc is not None and self._proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self._proc.stdout:
            buffer += line
            try:
                obj, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                continue
            buffer = buffer.lstrip()[end:]
            predictors = (obj.get("spec") or {}).get("predictors") or []
            self.versions.append(predictors)
            self.seen_at.append(time.time())
            self.history.append({str(p.get("name")): int(p.get("traffic") or 0) for p in predictors})

    def max_share(self, predictor: str) -> int:
        return max((version.get(predictor, 0) for version in self.history), default=0)

    def stop(self) -> None:
        processes.stop(self._proc, timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)
