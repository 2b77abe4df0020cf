"""``orchestrator.broker.connect()`` when no address answers: it raises instead of waiting
forever. Failover between live brokers is tests/faults/test_failover.py."""

from __future__ import annotations

import pytest

from orchestrator.broker import connect
from tests.support.system import free_port


async def test_connect_raises_when_no_address_answers() -> None:
    down = [f"amqp://guest:guest@127.0.0.1:{free_port()}/" for _ in range(2)]
    with pytest.raises(ConnectionError):
        await connect(down, name="test-failover", timeout=5)
