"""Test helpers: a kubectl wrapper, waiting with deadlines, and the operator as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


class KubectlError(RuntimeError):
    def __init__(self, args: tuple[str, ...], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        self.stderr = result.stderr


@dataclass
class Kube:
    kubeconfig: Path
    kubectl: str
    server: str = ""

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.kubectl, *args], input=stdin, capture_output=True, text=True,
                                env=self.env, timeout=60)
        if check and result.returncode != 0:
            raise KubectlError(args, result)
        return result

    def apply(self, obj: dict[str, Any], namespace: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(obj), check=check)

    def create(self, obj: dict[str, Any], namespace: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("create", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(obj), check=check)

    def events(self, name: str, namespace: str) -> list[dict[str, Any]]:
        """Events about the named object, oldest first."""
        out = self.run("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
                       "--sort-by", ".metadata.creationTimestamp", "-o", "json").stdout
        return list(json.loads(out)["items"])

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        return dict(json.loads(self.run("get", kind, name, "-n", namespace, "-o", "json").stdout))


def wait_for(condition: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.2) -> T:
    """Poll until condition() is truthy and return it; fail with the last value seen after the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = condition()
        except Exception as exc:  # the object may not exist yet
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


class OperatorProcess:
    """``python -m modelrollout`` as its own process, as it runs in a pod: kill it, restart it."""

    def __init__(self, kube: Kube, log_path: Path, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.kube = kube
        self.log_path = log_path
        self.extra_args = extra_args
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process for its lifetime
        self.proc = subprocess.Popen(
            # The local cluster's Prometheus scrapes every second (query windows must hold 4 scrapes).
            [sys.executable, "-m", "modelrollout", "--metrics-port", "0", "--health-endpoint", "",
             "--scrape-interval", "1s", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env={**self.kube.env, **self.extra_env}, cwd=REPO,
            start_new_session=True)
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to clean up, as when its node dies."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class TrafficWatch:
    """Every version of a SeldonDeployment's predictor traffic, from a real watch (``kubectl get -w``), so
    a test can say what never happened, not only what it saw when it looked. Bounded in time."""

    def __init__(self, kube: Kube, namespace: str, name: str, max_seconds: float = 600.0) -> None:
        self.kube, self.namespace, self.name, self.max_seconds = kube, namespace, name, max_seconds
        self.history: list[dict[str, int]] = []
        self.versions: list[list[dict[str, Any]]] = []  # every version's predictors, whole
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TrafficWatch:
        self._proc = subprocess.Popen(
            [self.kube.kubectl, "get", "sdep", self.name, "-n", self.namespace, "-w", "-o", "json",
             f"--request-timeout={int(self.max_seconds)}s"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=self.kube.env)
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
            self.history.append({str(p.get("name")): int(p.get("traffic") or 0) for p in predictors})

    def max_share(self, predictor: str) -> int:
        return max((version.get(predictor, 0) for version in self.history), default=0)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)
