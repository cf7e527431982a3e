"""Test helpers: a kubectl wrapper, waiting with deadlines, and the operator as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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
            [sys.executable, "-m", "modelrollout", "--metrics-port", "0", "--health-endpoint", "",
             *self.extra_args],
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
