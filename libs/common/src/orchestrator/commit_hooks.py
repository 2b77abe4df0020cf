"""Work deferred until a transaction commits (counting, publishing), dropped on rollback."""

from __future__ import annotations

import weakref
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

#: Callbacks waiting for the commit of each connection's transaction.
_waiting: weakref.WeakKeyDictionary[Connection, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)


def after_commit(conn: AsyncConnection, callback: Callable[[], None]) -> None:
    """Run ``callback`` after the transaction of ``conn`` commits; dropped on rollback."""
    sync = conn.sync_connection
    if sync is None:
        return
    waiting = _waiting.get(sync)
    if waiting is None:
        waiting = _waiting[sync] = []
        if not event.contains(sync, "commit", _committed):
            event.listen(sync, "commit", _committed)
            event.listen(sync, "rollback", _rolled_back)
    waiting.append(callback)


def _committed(sync: Connection) -> None:
    for callback in _waiting.pop(sync, []):
        callback()


def _rolled_back(sync: Connection) -> None:
    _waiting.pop(sync, None)
