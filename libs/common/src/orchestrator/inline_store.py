"""The private store of :class:`orchestrator.testing.InlineClient`: a temporary SQLite file with
the real schema, and the event loop (in a thread of its own) that every store call runs on.

The schema is migrated once per process (Alembic, as ``orchestrator db upgrade``) into a template
file; each store starts as a copy of it. The loop has its own thread because the client's
methods are blocking and may be called from inside a running event loop (an async test).
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from orchestrator import migrate
from orchestrator.db import create_engine

_T = TypeVar("_T")
_template_lock = threading.Lock()
_template: Path | None = None


def _schema() -> Path:
    """A store file migrated to the newest schema, made once per process."""
    global _template
    with _template_lock:
        if _template is None:
            folder = Path(tempfile.mkdtemp(prefix="orchestrator-inline-schema-"))
            atexit.register(shutil.rmtree, folder, True)
            path = folder / "schema.db"
            # Alembic's environment runs its own event loop: not in a thread that has one.
            with ThreadPoolExecutor(max_workers=1) as thread:
                thread.submit(migrate.upgrade, f"sqlite:///{path}").result()
            conn = sqlite3.connect(path)
            try:  # one file to copy: out of WAL mode
                conn.execute("PRAGMA journal_mode=DELETE")
            finally:
                conn.close()
            _template = path
        return _template


class InlineStore:
    def __init__(self) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="orchestrator-inline-"))
        path = self._folder / "store.db"
        shutil.copyfile(_schema(), path)
        self.engine = create_engine(f"sqlite:///{path}")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="orchestrator-inline-store", daemon=True
        )
        self._thread.start()
        self._closed = False

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the store's loop and wait for its result."""
        if self._closed:
            coroutine.close()
            raise RuntimeError("this InlineClient is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.run(self.engine.dispose())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            shutil.rmtree(self._folder, ignore_errors=True)
