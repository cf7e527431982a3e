"""The Kopf wiring that is not the tick: liveness follows the scheduler's loop."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import kopf
import pytest
from modelrollout import handlers
from modelrollout.scheduler import TickScheduler


@pytest.mark.asyncio
async def test_liveness_fails_once_the_scheduler_loop_has_stopped() -> None:
    async def tick(namespace: str, name: str) -> float | None:
        return None

    stop = asyncio.Event()
    runtime = handlers.Runtime(reconciler=cast(Any, None), scheduler=TickScheduler(tick))
    runtime.loop_task = asyncio.create_task(runtime.scheduler.run(stop))
    memo = kopf.Memo(runtime=runtime)
    assert handlers.tick_loop_alive(memo=memo) == "running"
    stop.set()
    await runtime.loop_task
    with pytest.raises(RuntimeError, match="not running"):
        handlers.tick_loop_alive(memo=memo)


def test_handlers_refuse_to_run_before_start_up() -> None:
    with pytest.raises(RuntimeError, match="has not started"):
        handlers.tick_loop_alive(memo=kopf.Memo())
