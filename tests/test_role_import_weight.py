"""A role's start imports what it runs, not what only a request needs.

``import jsonschema`` loads every format checker's package (isoduration, arrow, dateutil, attrs,
referencing): about a tenth of a worker's or scheduler's imports. Only the API's (and the
scheduler's recurring runs') argument checks use it, so it is imported at the first check.
No time is asserted: docs/performance.md has the figures.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: jsonschema and what its format checkers import.
SCHEMA_CHECKING = ("jsonschema", "isoduration", "arrow", "dateutil", "referencing")


def _loaded_by(code: str) -> set[str]:
    listing = "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    probe = f"{code}\nimport json, sys\n{listing}"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("role", ["api", "worker", "scheduler", "janitor"])
def test_starting_a_role_imports_no_json_schema_checking(role: str) -> None:
    loaded = _loaded_by(f"import orchestrator_cli.main, orchestrator_{role}.main")
    assert f"orchestrator_{role}" in loaded and "sqlalchemy" in loaded  # the probe did import
    assert loaded.isdisjoint(SCHEMA_CHECKING), sorted(loaded & set(SCHEMA_CHECKING))


def test_the_first_argument_check_still_checks_formats() -> None:
    loaded = _loaded_by(
        "from orchestrator.catalog import Registration, validate_with_schema\n"
        "from orchestrator.errors import JobValidationError\n"
        "schema = {'type': 'object', 'properties': {'when': {'type': 'string', "
        "'format': 'date-time'}}, 'required': ['when'], 'additionalProperties': False}\n"
        "registration = Registration(name='t.when', queue='default', parameters=['when'], "
        "json_schema=schema, schema_hash='h', options={})\n"
        "validate_with_schema(registration, ['2026-01-02T03:04:05Z'], {})\n"
        "try:\n"
        "    validate_with_schema(registration, ['yesterday'], {})\n"
        "except JobValidationError as exc:\n"
        "    assert 'date-time' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('an invalid date-time passed')"
    )
    assert "jsonschema" in loaded
