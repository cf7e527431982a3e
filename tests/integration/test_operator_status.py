"""The operator as a real process against the real kube-apiserver: it writes the initial status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.kube import Kube
from testkit.processes import OperatorProcess
from testkit.rollouts import model_rollout
from testkit.waiting import wait_for


@pytest.fixture
def operator(cluster: Kube, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(cluster, tmp_path / "operator.log", extra_args=("--namespace", namespace)).start()
    yield proc
    proc.stop()


def test_operator_initialises_status(cluster: Kube, namespace: str, operator: OperatorProcess) -> None:
    obj = model_rollout(name_prefix="r")
    name = obj["metadata"]["name"]
    cluster.create(obj, namespace)
    status = wait_for(lambda: cluster.get("mro", name, namespace).get("status", {}).get("phase") and
                      cluster.get("mro", name, namespace)["status"], "initial status", timeout=60)
    assert status["observedGeneration"] == 1
    assert status["candidateVersion"] == "2.0.0"
    conditions = {c["type"]: c for c in status["conditions"]}
    # No SeldonDeployment "digits" exists in this namespace: reported, and no traffic is touched.
    assert conditions["Progressing"]["status"] == "False"
    assert conditions["Progressing"]["reason"] == "TargetNotFound"
    assert "SeldonDeployment digits not found" in conditions["Progressing"]["message"]
    assert all(c["lastTransitionTime"] for c in conditions.values())
    assert status["candidateWeight"] == 0
    events = wait_for(lambda: [e for e in cluster.events(name, namespace) if e["reason"] == "TargetNotFound"],
                      "a TargetNotFound event")
    assert events[0]["type"] == "Warning"


def test_spec_the_schema_cannot_judge_is_reported_not_crashed(
    cluster: Kube, namespace: str, operator: OperatorProcess
) -> None:
    # An analysis step naming a metric that spec.analysis does not define: valid YAML, unusable spec.
    obj = model_rollout(name_prefix="r")
    obj["spec"]["strategy"]["canary"]["steps"].append({"analysis": {"metrics": ["calibration"]}})
    name = obj["metadata"]["name"]
    cluster.create(obj, namespace)
    status = wait_for(lambda: cluster.get("mro", name, namespace).get("status", {}).get("phase") == "Failed" and
                      cluster.get("mro", name, namespace)["status"], "Failed phase", timeout=60)
    spec_valid = next(c for c in status["conditions"] if c["type"] == "SpecValid")
    assert spec_valid["status"] == "False" and spec_valid["reason"] == "InvalidSpec"
    assert "steps[6].analysis.metrics" in spec_valid["message"] and "calibration" in spec_valid["message"]
    events = wait_for(lambda: [e for e in cluster.events(name, namespace) if e["reason"] == "InvalidSpec"],
                      "an InvalidSpec event")
    assert events[0]["type"] == "Warning" and "calibration" in events[0]["message"]
    assert operator.proc is not None and operator.proc.poll() is None, "the operator died:\n" + operator.log()


def test_printer_columns(cluster: Kube, namespace: str, operator: OperatorProcess) -> None:
    obj = model_rollout(name_prefix="r")
    name = obj["metadata"]["name"]
    cluster.create(obj, namespace)
    wait_for(lambda: cluster.get("mro", name, namespace).get("status", {}).get("phase"), "status", timeout=60)
    table = cluster.run("get", "mro", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "WEIGHT", "STEP", "CANDIDATE", "AGE"]
    row = next(line.split() for line in table[1:] if line.startswith(name))
    assert row[4] == "2.0.0" and row[1] in {"Idle", "Progressing", "Failed"}
    wide = cluster.run("get", "mro", name, "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert "STABLE" in wide and "MESSAGE" in wide
    assert name in cluster.run("get", "rollouts", "-n", namespace).stdout  # the category
