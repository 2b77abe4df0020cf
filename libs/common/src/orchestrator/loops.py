"""Running a role made of periodic loops: one short loop per maintenance concern.

The scheduler and the janitor are each a handful of loops plus a heartbeat and an ops server; the
worker is no loop at all but the same presence, probes and stop, with a start and a drain phase
around them. This module is the part they share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from orchestrator import ops_server
from orchestrator.presence import Presence, store_reachable

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


@dataclass(frozen=True)
class Ops:
    """A role's ops server: where it listens (port 0: nowhere) and what its probes check beyond
    the store."""

    host: str
    port: int
    readiness: ops_server.ReadinessCheck | None = None
    liveness: ops_server.LivenessCheck | None = None


@dataclass(frozen=True)
class Phases:
    """What a role does around its loops, beyond its presence in the store."""

    #: After the announce, before the loops (the worker connects and starts consuming); it
    #: returns early once the stop event it is given is set.
    start: Callable[[asyncio.Event], Awaitable[None]] | None = None
    #: After ``stop``, once the loops ended, while the heartbeat still beats: the worker's
    #: grace period, whose leases must outlive its loops until the process exits.
    drain: Callable[[], Awaitable[None]] | None = None


async def run_role(
    presence: Presence,
    loops: Sequence[Loop],
    stop: asyncio.Event,
    *,
    ops: Ops,
    phases: Phases = Phases(),
) -> None:
    """Announce the instance and heartbeat; start, run its loops until ``stop``, drain; then
    end the heartbeat and withdraw."""

    async def ready() -> dict[str, bool]:
        checks = {"store": await store_reachable(presence.engine)}
        if ops.readiness is not None:
            checks.update(await ops.readiness())
        return checks

    server = await ops_server.serve(ops.host, ops.port, ready, live=ops.liveness)
    try:
        await presence.announce(stop)
        presence.start()
        if phases.start is not None:
            await phases.start(stop)
        tasks = [asyncio.create_task(run_loop(loop, stop), name=loop.name) for loop in loops]
        await stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)
        if phases.drain is not None:
            await phases.drain()
    finally:
        await presence.stop()
        if server is not None:
            await server.stop()
