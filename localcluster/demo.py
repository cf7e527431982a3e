"""``make demo``: a ModelRollout on the local cluster, with progress a person can follow.

Expects ``make cluster-up`` to have run (the Makefile does it). Starts the operator as its own process,
applies the example SeldonDeployment and ModelRollout, and prints the rollout's status as it changes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from localcluster import controlplane

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = os.environ.get("DEMO_NAMESPACE", "models")
KUBECTL = str(controlplane.BIN_DIR / "current" / "kubectl")
ENV = {**os.environ, "KUBECONFIG": str(controlplane.KUBECONFIG)}
LOGS = controlplane.STATE_DIR / "logs"


def kubectl(*args: str, check: bool = True) -> str:
    result = subprocess.run([KUBECTL, *args], capture_output=True, text=True, env=ENV, timeout=60)
    if check and result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def start_operator() -> subprocess.Popen[bytes]:
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / "operator.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "modelrollout", "--namespace", NAMESPACE,
                                 "--metrics-port", "0", "--health-endpoint", ""],
                                stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=REPO, start_new_session=True)


def status_line(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    conditions = ", ".join(f"{c['type']}={c['status']}({c.get('reason', '')})" for c in status.get("conditions", []))
    return (f"phase={status.get('phase', '-'):<12} weight={status.get('candidateWeight', 0):>3}% "
            f"step={status.get('stepIndex', 0)} candidate={status.get('candidateVersion', '-')} | {conditions}"
            f"\n    {status.get('message', '')}")


def watch(name: str, deadline_s: float) -> dict[str, Any]:
    """Print every change of the rollout's status until it settles or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    last = ""
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = json.loads(kubectl("get", "mro", name, "-n", NAMESPACE, "-o", "json"))
        line = status_line(obj)
        if line != last:
            print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)
            last = line
        if (obj.get("status") or {}).get("phase") in {"Idle", "Succeeded", "RolledBack", "Aborted", "Failed"}:
            return obj
        time.sleep(1)
    return obj


def main() -> int:
    print(f"==> namespace {NAMESPACE}")
    kubectl("create", "namespace", NAMESPACE, check=False)
    operator = start_operator()
    print(f"==> operator started (pid {operator.pid}, log {LOGS / 'operator.log'})")
    try:
        kubectl("apply", "-n", NAMESPACE, "-f", str(REPO / "examples" / "seldondeployment.yaml"))
        kubectl("delete", "mro", "digits", "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
        kubectl("apply", "-n", NAMESPACE, "-f", str(REPO / "examples" / "modelrollout.yaml"))
        print("==> ModelRollout digits applied: 1.0.0 -> 2.0.0")
        obj = watch("digits", deadline_s=60)
        print("==> kubectl get mro -o wide")
        print(kubectl("get", "mro", "-n", NAMESPACE, "-o", "wide"))
        phase = (obj.get("status") or {}).get("phase")
        if not phase:
            print("the operator did not write a status; see its log", file=sys.stderr)
            return 1
        print(f"==> status.phase = {phase}")
        return 0
    finally:
        operator.send_signal(signal.SIGTERM)
        try:
            operator.wait(timeout=15)
        except subprocess.TimeoutExpired:
            operator.kill()


if __name__ == "__main__":
    sys.exit(main())
