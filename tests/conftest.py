"""Shared fixtures: the local control plane (brought up once per session) and a running operator."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the localcluster package lives at the repository root

from localcluster import controlplane  # noqa: E402
from testkit.kube import Kube  # noqa: E402


@pytest.fixture(scope="session")
def cluster() -> Iterator[Kube]:
    """The real kube-apiserver with our CRDs; started for this session unless one is already healthy.

    There is no skip: when the control plane cannot be built or started the tests fail, loudly.
    """
    was_running = controlplane.running(controlplane.State.load())
    state = controlplane.up()
    kube = Kube.local(server=state.server)
    kube.run("apply", "--server-side", "-f", str(REPO / "crds"), "-f", str(REPO / "localcluster" / "fixtures"))
    kube.run("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    yield kube
    if not was_running and not os.environ.get("KEEP_CLUSTER"):
        from localcluster import services  # imported here: the model server's test env lacks its deps

        services.down()  # the data plane and Prometheus, if an end-to-end test started them
        controlplane.down()


@pytest.fixture
def namespace(cluster: Kube) -> Iterator[str]:
    """A fresh namespace per test; its objects are deleted afterwards (no controller manager runs to do it)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.run("create", "namespace", name)
    yield name
    cluster.delete_objects(name)
    cluster.run("delete", "namespace", name, "--wait=false", check=False)

