"""The digits SeldonDeployment on the local cluster: its manifest, deploying it (until Available),
deleting what a namespace holds (until the data plane stopped its model servers), its traffic, and the
model versions it serves (trained on demand)."""

from __future__ import annotations

import copy
import subprocess
from typing import Any, Final

import yaml

from testkit import REPO
from testkit.faults import servers
from testkit.kube import Kube
from testkit.rollouts import model_uri
from testkit.waiting import wait_for

SDEP: Final[dict[str, Any]] = yaml.safe_load((REPO / "examples" / "seldondeployment.yaml").read_text())
MODELS = REPO / "models" / "digits"
VERSIONS = ("1.0.0", "2.0.0", "2.1.0-degraded", "2.2.0-biased")
CANDIDATE = "main-candidate"  # the candidate predictor of a rollout on stable predictor "main"
# The local data plane serves a SeldonDeployment unless told not to (metrics then come from elsewhere).
NOT_SERVED = {"localcluster.modelrollout.dev/serve": "false"}


def ensure_models() -> None:
    """Train the digits versions the local data plane serves, when one is missing."""
    missing = [v for v in VERSIONS if not (MODELS / v).is_dir()]
    if missing:
        python = REPO / ".venv-model-server" / "bin" / "python"
        subprocess.run([str(python), "-m", "modelserver.train", "--out", str(REPO / "models")], cwd=REPO,
                       check=True, timeout=600)


def digits_sdep(version: str = "1.0.0", name: str = "digits", served: bool = True) -> dict[str, Any]:
    """The example SeldonDeployment: stable predictor main serving `version`. ``served=False``: the local
    data plane leaves it alone (its metrics come from localcluster.executor_exporter)."""
    sdep: dict[str, Any] = copy.deepcopy(SDEP)
    sdep["metadata"] = {"name": name} if served else {"name": name, "annotations": dict(NOT_SERVED)}
    main = sdep["spec"]["predictors"][0]
    main["graph"]["modelUri"] = model_uri(version)
    main["annotations"] = {"modelrollout.dev/version": version}
    return sdep


def wait_available(kube: Kube, namespace: str, name: str = "digits", timeout: float = 90) -> dict[str, Any]:
    """Until the data plane reports the SeldonDeployment Available; returns it."""
    def available() -> dict[str, Any] | None:
        obj = kube.get("sdep", name, namespace)
        return obj if (obj.get("status") or {}).get("state") == "Available" else None
    return wait_for(available, f"SeldonDeployment {namespace}/{name} Available", timeout=timeout, interval=0.5)


def deploy(kube: Kube, namespace: str, sdep: dict[str, Any], timeout: float = 90) -> dict[str, Any]:
    """Apply a SeldonDeployment and wait until the data plane reports it Available."""
    kube.apply(sdep, namespace)
    return wait_available(kube, namespace, sdep["metadata"]["name"], timeout)


def delete_deployments(kube: Kube, ingress_url: str, namespace: str, timeout: float = 60) -> None:
    """Delete every ModelRollout and SeldonDeployment of the namespace; wait until no server runs there."""
    kube.delete_objects(namespace)
    wait_for(lambda: not servers(ingress_url, namespace), f"the data plane to stop every server in {namespace}",
             timeout=timeout, interval=0.5)


def traffic(kube: Kube, namespace: str, name: str = "digits") -> dict[str, int]:
    """Each predictor's traffic share as the SeldonDeployment's spec holds it."""
    sdep = kube.get("sdep", name, namespace)
    return {p["name"]: int(p.get("traffic") or 0) for p in sdep["spec"]["predictors"]}
