"""Locust through the local ingress as a bounded process (``-t``, stopped on ``stop()``), and what it
counted: totals, failures and its once-a-second history from the CSV files it writes."""

from __future__ import annotations

import csv
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from testkit import REPO
from testkit.processes import ChildProcess

LOCUSTFILE = REPO / "loadtests" / "ingress_locustfile.py"


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


class Locust(ChildProcess):
    """``locust --headless`` through the ingress, as its own process, bounded by -t and stopped on stop():
    SIGTERM first, so that Locust writes its final CSV."""

    def __init__(self, host: str, namespace: str, workdir: Path, users: int = 4, duration_s: int = 120,
                 deployment: str = "digits", env: dict[str, str] | None = None,
                 locustfile: Path = LOCUSTFILE) -> None:
        if not host.startswith("http://127."):
            raise ValueError(f"refusing a non-loopback host {host!r}")
        self.host, self.namespace, self.deployment = host, namespace, deployment
        self.workdir, self.users, self.duration_s = workdir, users, duration_s
        self.locust_env = {"SELDON_NAMESPACE": namespace, "SELDON_DEPLOYMENT": deployment, **(env or {})}
        self.locustfile = locustfile
        self.prefix = workdir / f"locust-{uuid.uuid4().hex[:6]}"
        super().__init__(
            [self.binary(), "-f", str(locustfile), "--headless", "-u", str(users), "-r", str(users),
             "-t", f"{duration_s}s", "--stop-timeout", "2", "--host", host, "--csv", str(self.prefix),
             "--csv-full-history", "--only-summary", "--loglevel", "WARNING"],
            Path(f"{self.prefix}.log"), env={**os.environ, **self.locust_env})

    @staticmethod
    def binary() -> str:
        local = Path(sys.executable).parent / "locust"
        return str(local if local.exists() else REPO / ".venv" / "bin" / "locust")

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


def _num(value: str | None) -> float:
    try:
        return float(value or "nan")
    except ValueError:
        return float("nan")
