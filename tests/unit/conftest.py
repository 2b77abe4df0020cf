"""The unit tier: what needs no service (``make unit``, seconds). Nothing here may need
PostgreSQL or RabbitMQ: a test asking for one of their fixtures fails at set-up, and a test
connecting to either's port fails whatever the library made of the refusal
(:mod:`tests.support.service_guard`). A test that needs them belongs in another folder.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.support.service_guard import refusing_service_ports, service_fixtures


def _guarded(item: pytest.Item, phase: str) -> Generator[None, None, None]:
    with refusing_service_ports() as attempts:
        yield
    if attempts:
        pytest.fail(
            f"{item.nodeid} connected to PostgreSQL or RabbitMQ during {phase} "
            f"({', '.join(attempts)}): a unit test needs no service"
        )


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    needed = service_fixtures(getattr(item, "fixturenames", ()))
    if needed:
        pytest.fail(
            f"{item.nodeid} asks for {', '.join(sorted(needed))}: a unit test needs no "
            "service; move it out of tests/unit"
        )
    return (yield from _guarded(item, "set-up"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _guarded(item, "the test"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    if nextitem is None:
        # The run's last tear-down also ends the session fixtures of every other folder (a
        # template database is dropped then): not this test's doing.
        return (yield)
    return (yield from _guarded(item, "tear-down"))
