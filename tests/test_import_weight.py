"""``import orchestrator`` stays light: every CLI call, worker and application that only defines
or enqueues jobs pays for it. What only some paths need is imported on first use there."""

from __future__ import annotations

import json
import subprocess
import sys

#: Never loaded by ``import orchestrator`` (nor by defining a job): the store, the broker, the
#: settings, JSON Schema validation, the HTTP client, and the grammar jsonschema's "iri"
#: format would build (rfc3987_syntax on lark; not even installed).
HEAVY = (
    "jsonschema",
    "sqlalchemy",
    "aio_pika",
    "pydantic_settings",
    "httpx",
    "opentelemetry",
    "rfc3987_syntax",
    "lark",
)

_PROBE = """
import json, sys
import orchestrator
from orchestrator import job

@job(name="light.add")
def add(a: int, b: int) -> int:
    return a + b

print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _loaded_by(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout))


def test_import_orchestrator_and_defining_a_job_load_nothing_heavy() -> None:
    loaded = _loaded_by(_PROBE)
    assert "orchestrator" in loaded and "pydantic" in loaded  # the probe did run
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_the_lazy_names_still_resolve() -> None:
    loaded = _loaded_by(
        "import json, sys\nfrom orchestrator import AsyncClient, Client, Cron\n"
        "assert Client.__module__ == 'orchestrator.client' and Cron.__name__ == 'Cron'\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    assert "jsonschema" not in loaded and "sqlalchemy" not in loaded
