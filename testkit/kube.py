"""A kubectl handle on one kubeconfig: run, apply, create, get, events, delete what a test made."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localcluster import controlplane

# What a namespace of ours may hold; no controller manager deletes it with the namespace.
OBJECT_KINDS = ("modelrollouts.modelrollout.dev", "analysistemplates.modelrollout.dev",
                "seldondeployments.machinelearning.seldon.io")


class KubectlError(RuntimeError):
    def __init__(self, args: tuple[str, ...], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        self.stderr = result.stderr


@dataclass
class Kube:
    kubeconfig: Path
    kubectl: str
    server: str = ""

    @classmethod
    def local(cls, server: str = "") -> Kube:
        """The local cluster's admin kubeconfig and the kubectl built with it."""
        return cls(kubeconfig=controlplane.KUBECONFIG, kubectl=str(controlplane.BIN_DIR / "current" / "kubectl"),
                   server=server)

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

    def delete_objects(self, namespace: str) -> None:
        """Delete every ModelRollout, AnalysisTemplate and SeldonDeployment of the namespace, not waiting."""
        for kind in OBJECT_KINDS:
            self.run("delete", kind, "--all", "-n", namespace, "--wait=false", check=False)


def running_cluster() -> Kube:
    """The shared local cluster, which must be up already (chaos runs and benchmarks never start it)."""
    state = controlplane.State.load()
    if not controlplane.healthy(state):
        raise SystemExit("the local control plane is not running: `make cluster-up` first")
    return Kube.local(server=state.server if state else "")
