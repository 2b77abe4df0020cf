"""The catalog of job functions a process knows (orchestrator.catalog), without a store: one
function per name, loaded from the modules named. Registrations in the store are
tests/test_catalog.py."""

from __future__ import annotations

import pytest

from orchestrator import job
from orchestrator.catalog import Catalog
from tests import worker_jobs

CATALOG = Catalog.from_modules(["tests.worker_jobs"])


@job(name="shop.ship")
def ship_v1(order_id: int) -> None:
    """The first version of a job."""


@job(name="shop.ship")
def ship_v2(order_id: int, express: bool = False) -> None:
    """A newer deployment of the same job, with a new parameter."""


def test_catalog_refuses_two_functions_with_one_name() -> None:
    only = Catalog([ship_v1])
    with pytest.raises(ValueError, match=r"shop\.ship"):
        only.add(ship_v2)


def test_catalog_loaded_from_module() -> None:
    assert CATALOG.get("tests.add") is worker_jobs.add
