"""Child processes for tests and tools, each in its own session: start, stop (SIGTERM, bounded wait,
SIGKILL), kill (SIGKILL, as when a node dies), read its log. ``OperatorProcess`` is the operator as it
runs in a pod. Starting and stopping is ``localcluster.processes``'s, the one way to do it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

from localcluster import processes
from testkit import REPO
from testkit.kube import Kube


class ChildProcess:
    """A command as its own process (its own session: stopping it stops its children), output to log_path."""

    def __init__(self, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path = REPO, stop_timeout: float = 15.0) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.proc = processes.spawn(self.argv, self.log_path, env=self.env, cwd=self.cwd)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM to its process group, then SIGKILL if it has not exited within the timeout."""
        processes.stop(self.proc, self.stop_timeout if timeout is None else timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        processes.kill(self.proc)

    def wait(self, timeout: float) -> None:
        """Until it exits by itself; stopped if it has not within the timeout."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class OperatorProcess(ChildProcess):
    """``python -m modelrollout`` as its own process, as it runs in a pod: kill it, restart it.

    The local cluster's Prometheus scrapes every second (query windows must hold 4 scrapes), no metrics
    port, no health endpoint; ``extra_args`` come after these, and argparse keeps the last value."""

    def __init__(self, kube: Kube, log_path: Path, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.kube = kube
        self.extra_args = extra_args
        self.extra_env = env or {}
        super().__init__([sys.executable, "-m", "modelrollout", "--metrics-port", "0", "--health-endpoint", "",
                          "--scrape-interval", "1s", *extra_args], log_path, env={**kube.env, **self.extra_env})
