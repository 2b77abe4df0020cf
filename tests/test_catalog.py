"""The catalog in the store: the newest registration of a name wins."""

from __future__ import annotations

from datetime import timedelta

from orchestrator import job
from orchestrator.catalog import Registration
from orchestrator.db import db_now
from orchestrator.store import registrations


@job(name="shop.ship")
def ship_v1(order_id: int) -> None:
    """The first version of a job."""


@job(name="shop.ship")
def ship_v2(order_id: int, express: bool = False) -> None:
    """A newer deployment of the same job, with a new parameter."""


async def test_newest_registration_of_a_name_wins(engine) -> None:  # type: ignore[no-untyped-def]
    old, new = Registration.of(ship_v1), Registration.of(ship_v2)
    assert old.schema_hash != new.schema_hash
    async with engine.begin() as conn:
        now = await db_now(conn)
        await registrations.save(conn, [old], now - timedelta(minutes=5))
        await registrations.save(conn, [new], now)
        assert (await registrations.newest(conn))["shop.ship"].parameters == [
            "order_id",
            "express",
        ]
        # The old deployment restarting later makes it the newest again.
        await registrations.save(conn, [old], now + timedelta(minutes=1))
        assert (await registrations.newest(conn))["shop.ship"].parameters == ["order_id"]


