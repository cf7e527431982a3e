"""Locust user posting valid digits batches to one model server (seldon protocol, REST).

    locust -f loadtests/model_server_locustfile.py --headless -u 20 -r 10 -t 20s --host http://127.0.0.1:9000

Environment:
  MODEL_LOAD_SAMPLES   JSON file with a list of 64-value rows (e.g. the held-out digits); without it,
                       rows of random pixel values 0..16 are sent (valid input, arbitrary digits)
  MODEL_LOAD_BATCH     rows per request (default 8)
  MODEL_LOAD_PATH      request path (default /api/v1.0/predictions; through an ingress use
                       /seldon/<namespace>/<deployment>/api/v1.0/predictions)
  MODEL_LOAD_WAIT_MS   pause between a user's requests (default 0: each user sends back to back)
Only loopback hosts are accepted: this is a local benchmark.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import random
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from locust import FastHttpUser, constant, events, task

N_FEATURES = 64
BATCH = int(os.environ.get("MODEL_LOAD_BATCH", "8"))
PATH = os.environ.get("MODEL_LOAD_PATH", "/api/v1.0/predictions")
WAIT_S = float(os.environ.get("MODEL_LOAD_WAIT_MS", "0")) / 1000.0
logger = logging.getLogger(__name__)


def load_rows() -> list[list[float]]:
    samples = os.environ.get("MODEL_LOAD_SAMPLES")
    if samples:
        rows = json.loads(Path(samples).read_text())
        if not rows or any(len(row) != N_FEATURES for row in rows):
            raise ValueError(f"{samples}: expected a non-empty list of {N_FEATURES}-value rows")
        return rows
    rng = random.Random(0)
    return [[float(rng.randint(0, 16)) for _ in range(N_FEATURES)] for _ in range(512)]


ROWS = load_rows()


def host_is_loopback(url: str | None) -> bool:
    host = urlparse(url or "").hostname
    if not host:
        return False
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


@events.test_start.add_listener
def refuse_non_loopback(environment: Any, **_: Any) -> None:
    if not host_is_loopback(environment.host):
        logger.error("refusing to load %r: this benchmark only targets loopback addresses", environment.host)
        environment.process_exit_code = 2
        if environment.runner is not None:
            environment.runner.quit()


class ModelServerUser(FastHttpUser):
    wait_time = constant(WAIT_S)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task
    def predict_batch(self) -> None:
        start = self.rng.randrange(len(ROWS))
        batch = [ROWS[(start + i) % len(ROWS)] for i in range(BATCH)]
        with self.client.post(
            PATH, json={"data": {"ndarray": batch}}, name="predict", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                labels = response.json()["data"]["ndarray"]
            except (ValueError, KeyError, TypeError) as exc:
                response.failure(f"unreadable answer: {exc}")
                return
            if len(labels) != BATCH:
                response.failure(f"{len(labels)} labels for {BATCH} rows")
