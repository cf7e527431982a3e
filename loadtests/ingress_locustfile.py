"""Locust traffic through the Seldon ingress: digits predictions, with ground-truth feedback.

Each user posts a small batch of real digits images to
``/seldon/<namespace>/<deployment>/api/v1.0/predictions`` and, for a share of the answers, sends the
true labels back to ``/feedback`` with the answer, as delayed labels would come back in production.
Seldon routes feedback by the same weights as predictions (the route has no header match), so it can
reach any predictor; the answer's tags name the model version that produced it.

    locust -f loadtests/ingress_locustfile.py --headless -u 10 -r 10 -t 60s \
        --host http://127.0.0.1:<ingress port>

Environment: SELDON_NAMESPACE (models), SELDON_DEPLOYMENT (digits), BATCH_SIZE (4), FEEDBACK_SHARE (0.5),
WAIT_MIN_S/WAIT_MAX_S (0.05/0.15), RECORD_FILE (unset: nothing recorded; else one CSV line per prediction,
appended: unix time sent, HTTP status, milliseconds, the version that answered (its served_model_version
tag, empty when none did), rows, rows answered wrong). Run it as its own process: its gevent patching does not mix with
asyncio. Always bound it with -t (and the target must be on loopback).
"""

from __future__ import annotations

import os
import random
import time
from urllib.parse import urlparse

from locust import HttpUser, between, events, task
from sklearn.datasets import load_digits

NAMESPACE = os.environ.get("SELDON_NAMESPACE", "models")
DEPLOYMENT = os.environ.get("SELDON_DEPLOYMENT", "digits")
BATCH_SIZE = int(os.environ.get("BATCH_SIZE", "4"))
FEEDBACK_SHARE = float(os.environ.get("FEEDBACK_SHARE", "0.5"))
BASE = f"/seldon/{NAMESPACE}/{DEPLOYMENT}/api/v1.0"
_DIGITS = load_digits()
IMAGES: list[list[float]] = _DIGITS.data.tolist()
LABELS: list[int] = _DIGITS.target.tolist()
# ROWS=heldout: only the rows the model cards measured accuracy on (the training split's test part:
# stratified, test_size 0.25, random_state SPLIT_SEED), so accuracy from feedback estimates the card's.
if os.environ.get("ROWS", "all") == "heldout":
    from sklearn.model_selection import train_test_split

    _, _HELDOUT = train_test_split(list(range(len(LABELS))), test_size=0.25,
                                   random_state=int(os.environ.get("SPLIT_SEED", "42")), stratify=LABELS)
    POOL: list[int] = sorted(_HELDOUT)
else:
    POOL = list(range(len(IMAGES)))
# Per-request records for whoever needs to know which version answered what (loadtests.decisions).
_RECORD_PATH = os.environ.get("RECORD_FILE", "")
_RECORD = open(_RECORD_PATH, "a", buffering=1) if _RECORD_PATH else None  # noqa: SIM115 (lives as long as Locust)


def _record(sent: float, status: int, version: str, rows: list[int], answers: list[object] | None) -> None:
    if _RECORD is None:
        return
    wrong = sum(1 for i, answer in zip(rows, answers or [], strict=False) if _label(answer) != LABELS[i])
    safe = "".join(ch for ch in version if ch.isalnum() or ch in "._-")[:63]
    _RECORD.write(f"{sent:.3f},{status},{(time.time() - sent) * 1000:.1f},{safe},{len(rows)},"
                  f"{wrong if answers is not None else 0}\n")


def _label(answer: object) -> int:
    """An answer row as a class: a plain class, or a one-element row."""
    value = answer[0] if isinstance(answer, list) and answer else answer
    try:
        return int(value) if isinstance(value, int | float | str) else -1
    except ValueError:
        return -1


def _answer(payload: object) -> tuple[str, list[object] | None]:
    """The version an answer names (meta.tags.served_model_version) and its rows."""
    if not isinstance(payload, dict):
        return "", None
    tags = (payload.get("meta") or {}).get("tags") or {}
    rows = (payload.get("data") or {}).get("ndarray")
    return str(tags.get("served_model_version") or ""), rows if isinstance(rows, list) else None


@events.test_start.add_listener
def loopback_only(environment: object, **_: object) -> None:
    host = urlparse(getattr(environment, "host", "") or "").hostname or ""
    if not host.startswith("127.") and host != "localhost":
        raise SystemExit(f"refusing to load {host!r}: this load test only targets loopback")


class DigitsUser(HttpUser):
    wait_time = between(float(os.environ.get("WAIT_MIN_S", "0.05")), float(os.environ.get("WAIT_MAX_S", "0.15")))

    @task
    def predict(self) -> None:
        rows = random.sample(POOL, BATCH_SIZE)
        request = {"data": {"ndarray": [IMAGES[i] for i in rows]}}
        sent = time.time()
        with self.client.post(f"{BASE}/predictions", json=request, name="predictions", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                _record(sent, resp.status_code, "", rows, None)
                return
            resp.success()
            if _RECORD is not None:
                try:
                    version, answers = _answer(resp.json())
                    _record(sent, resp.status_code, version, rows, answers)
                except ValueError:
                    _record(sent, resp.status_code, "", rows, None)
            if random.random() >= FEEDBACK_SHARE:
                return
            truth = {"data": {"ndarray": [LABELS[i] for i in rows]}}
            feedback = {"request": request, "response": resp.json(), "truth": truth}
            self.client.post(f"{BASE}/feedback", json=feedback, name="feedback")
