"""Waiting with deadlines: poll a condition until it holds (``wait_for``), or watch a while (``sample_during``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.2) -> T:
    """Poll until condition() is truthy and return it; fail with the last value seen after the deadline.

    An exception from condition() counts as "not yet" (the object may not exist yet) and is the last value
    seen. The failure is an AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = condition()
        except Exception as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


def sample_during(sample: Callable[[], T], seconds: float, interval: float = 0.5,
                  start: float | None = None) -> list[T]:
    """sample() every interval from now until `seconds` after start (monotonic; default now): what was seen
    over a period, to check what never happened in it. Exceptions propagate."""
    end = (time.monotonic() if start is None else start) + seconds
    seen: list[T] = []
    while time.monotonic() < end:
        seen.append(sample())
        time.sleep(min(interval, max(0.0, end - time.monotonic())))
    return seen
