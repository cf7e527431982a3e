"""The local cluster's services beside the control plane: the Seldon data plane and Prometheus.

    python -m localcluster.services up|down|status

``up`` starts (or reuses, when healthy) the data plane (ingress + model-server supervisor) and a
Prometheus that scrapes the ingress, every model server (through a file_sd targets file the data plane
writes) and the operator's metrics port, every second. PIDs and ports go to .localcluster/services.json;
``down`` stops only those processes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass

from localcluster import controlplane, webhook_registration
from localcluster.processes import free_port, pid_alive, spawn, stop_pid
from localcluster.prometheus import PrometheusServer, ScrapeJob, dataplane_jobs

REPO = controlplane.REPO
STATE = controlplane.STATE_DIR / "services.json"
OPERATOR_METRICS_PORT = int(os.environ.get("MODELROLLOUT_METRICS_PORT", "8000"))
STOP_TIMEOUT_S = 30.0


@dataclass
class Services:
    ingress_port: int
    prometheus_port: int
    dataplane_pid: int
    prometheus_pid: int
    webhook_port: int = 0  # Seldon's validating webhook, served by the data plane (HTTPS, registered while up)

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @classmethod
    def load(cls) -> Services | None:
        try:
            return cls(**json.loads(STATE.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None


def healthy(services: Services | None) -> bool:
    return (services is not None and pid_alive(services.dataplane_pid) and pid_alive(services.prometheus_pid)
            and controlplane.answers(f"{services.ingress_url}/dataplane/status")
            and controlplane.answers(f"{services.prometheus_url}/-/ready")
            and webhook_registration.answers(services.webhook_port))


def up() -> Services:
    current = Services.load()
    if healthy(current):
        assert current is not None
        controlplane.log(f"reusing data plane {current.ingress_url} and Prometheus {current.prometheus_url}")
        webhook_registration.register(current.webhook_port)  # again, should the API server have lost it
        return current
    down(quiet=True)
    ingress_port, webhook_port = free_port(), free_port()
    dataplane = spawn([sys.executable, "-m", "localcluster.dataplane", "--port", str(ingress_port),
                       "--kubeconfig", str(controlplane.KUBECONFIG), "--state-dir", str(controlplane.STATE_DIR),
                       *webhook_registration.dataplane_args(webhook_port)],
                      controlplane.STATE_DIR / "logs" / "dataplane.log", cwd=REPO)
    status_url = f"http://127.0.0.1:{ingress_port}/dataplane/status"
    controlplane.wait_until(lambda: controlplane.answers(status_url), "the data plane", 60, dataplane)
    webhook_registration.register(webhook_port)  # after it listens; SeldonDeployment writes now meet Seldon's rules
    targets = controlplane.STATE_DIR / "prometheus" / "targets" / "model-servers.json"
    targets.parent.mkdir(parents=True, exist_ok=True)
    if not targets.exists():
        targets.write_text("[]")
    prometheus = PrometheusServer(controlplane.STATE_DIR / "prometheus", [
        *dataplane_jobs(f"127.0.0.1:{ingress_port}", targets.parent),  # namespace by relabelling (PodMonitor)
        ScrapeJob("modelrollout-operator", [f"127.0.0.1:{OPERATOR_METRICS_PORT}"]),
    ]).start()
    assert prometheus.proc is not None
    services = Services(ingress_port, prometheus.port, dataplane.pid, prometheus.proc.pid, webhook_port)
    STATE.write_text(json.dumps(asdict(services), indent=2))
    controlplane.log(f"data plane ingress {services.ingress_url}; Prometheus {services.prometheus_url}")
    return services


def down(quiet: bool = False) -> None:
    services = Services.load()
    webhook_registration.unregister()  # first: failurePolicy Fail would refuse writes while no webhook answers
    if services is not None:
        # Each process group: the data plane's model servers have groups of their own, which it stops
        # before it exits.
        stop_pid(services.dataplane_pid, STOP_TIMEOUT_S)
        stop_pid(services.prometheus_pid, STOP_TIMEOUT_S)
    STATE.unlink(missing_ok=True)
    if not quiet:
        controlplane.log("data plane and Prometheus stopped")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.services")
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args()
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        else:
            services = Services.load()
            print(json.dumps({"healthy": healthy(services), **(asdict(services) if services else {})}))
            return 0 if healthy(services) else 1
    except controlplane.ControlPlaneError as exc:
        controlplane.log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
