"""Running a role made of periodic loops: one short loop per maintenance concern.

The scheduler and the janitor are each a handful of loops plus a heartbeat and an ops server;
this module is the part they share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import ops_server, servers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loop:
    """Call ``tick`` every ``interval`` seconds; a tick returning True runs again at once
    (there was more work than one batch)."""

    name: str
    interval: float
    tick: Callable[[], Awaitable[bool]]


async def run_loop(loop: Loop, stop: asyncio.Event) -> None:
    while not stop.is_set():
        more = False
        try:
            more = await loop.tick()
        except Exception:
            log.exception("%s failed; next try in %.1f s", loop.name, loop.interval)
        if more:
            await asyncio.sleep(0)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), loop.interval)


async def store_reachable(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as conn:
            await asyncio.wait_for(conn.execute(sa.text("SELECT 1")), 2.0)
    except Exception:
        return False
    return True


async def run_role(
    engine: AsyncEngine,
    info: servers.ServerInfo,
    loops: Sequence[Loop],
    stop: asyncio.Event,
    *,
    heartbeat_seconds: float,
    ops_host: str,
    ops_port: int,
    readiness: ops_server.ReadinessCheck | None = None,
) -> None:
    """Announce the instance, run its loops and heartbeat until ``stop``, then withdraw."""

    async def ready() -> dict[str, bool]:
        checks = {"store": await store_reachable(engine)}
        if readiness is not None:
            checks.update(await readiness())
        return checks

    async def beat() -> bool:
        await servers.heartbeat(engine, info)
        return False

    ops = await ops_server.serve(ops_host, ops_port, ready)
    while not stop.is_set():
        try:
            await servers.announce(engine, info)
            break
        except Exception as exc:
            log.warning("store unreachable at start (%r); retrying in 2 s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
    tasks = [
        asyncio.create_task(run_loop(loop, stop), name=loop.name)
        for loop in [*loops, Loop("heartbeat", heartbeat_seconds, beat)]
    ]
    try:
        await stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if ops is not None:
            await ops.stop()
        with contextlib.suppress(Exception):
            await servers.withdraw(engine, info)
