"""Work deferred until a transaction commits (counting, publishing), dropped on rollback."""

from __future__ import annotations

import weakref
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection

#: Callbacks waiting for the commit of each connection's transaction.
_waiting: weakref.WeakKeyDictionary[Connection, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)
#: Engines whose every connection reports its commits and rollbacks here (:func:`install`).
_installed: weakref.WeakSet[Engine] = weakref.WeakSet()


def install(engine: Engine) -> None:
    """Listen to the commits of every connection ``engine`` makes from now on, once.

    A listener added to a connection lasts as long as that connection object, which is one
    checkout: adding it per transaction (as :func:`after_commit` must for an engine without
    this) cost a worker's every round two registrations."""
    if engine not in _installed:
        event.listen(engine, "commit", _committed)
        event.listen(engine, "rollback", _rolled_back)
        _installed.add(engine)


def after_commit(conn: AsyncConnection, callback: Callable[[], None]) -> None:
    """Run ``callback`` after the transaction of ``conn`` commits; dropped on rollback."""
    sync = conn.sync_connection
    if sync is None:
        return
    waiting = _waiting.get(sync)
    if waiting is None:
        waiting = _waiting[sync] = []
        if sync.engine not in _installed and not event.contains(sync, "commit", _committed):
            event.listen(sync, "commit", _committed)
            event.listen(sync, "rollback", _rolled_back)
    waiting.append(callback)


def _committed(sync: Connection) -> None:
    for callback in _waiting.pop(sync, []):
        callback()


def _rolled_back(sync: Connection) -> None:
    _waiting.pop(sync, None)
