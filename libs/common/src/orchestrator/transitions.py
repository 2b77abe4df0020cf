"""The one writer of ``jobs.state``: a :class:`Transitions` object each role builds at start-up.

Every change is a compare-and-set on the states the caller expects (checked against
:data:`orchestrator.lifecycle.ALLOWED`), appends a history row in the same transaction, and then
runs the *applied* hooks with an :class:`Applied` (the rows moved, the target, the connection):

- ``follow``: what follows a job's ending (continuations, batch progress; see
  :mod:`orchestrator.endings`). It moves further jobs through :attr:`Applied.mover`, a view of
  this object without ``follow`` (it walks a chain of endings itself, one level a turn);
- ``hooks``: the other built-in hooks (state counting), then the filters' ``applied`` hooks.

Each role's composition root builds it with the built-in hooks
(:func:`orchestrator.composition.transitions`), so no change escapes them. With filters that
elect, a move asks them first, per job, which state to enter.

The SQL of a move is in :mod:`orchestrator.store.moves`; this module decides what is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator import outbox
from orchestrator.commit_hooks import after_commit
from orchestrator.lifecycle import (
    FINAL,
    Change,
    Choice,
    Election,
    RowChange,
    State,
    StoredJob,
    check_allowed,
)
from orchestrator.outbox import Pending
from orchestrator.store import moves
from orchestrator.store.tables import Row

if TYPE_CHECKING:  # the filters are only called here
    from orchestrator.filters import Filters

_T = TypeVar("_T")


class Moved(list[_T]):
    """The jobs moved, and in ``pending`` the outbox entries of jobs their ending enqueued
    (continuations, batch completion); the caller publishes those after commit."""

    def __init__(self, items: Iterable[_T] = (), pending: Sequence[Pending] = ()) -> None:
        super().__init__(items)
        self.pending: list[Pending] = list(pending)
        #: The state each job entered when election filters replaced the target (else empty).
        self.elected: dict[uuid.UUID, State] = {}

    def entered(self, job_id: uuid.UUID, target: State) -> bool:
        """Whether the moved job ``job_id`` entered ``target`` (the target the caller asked)."""
        return self.elected.get(job_id, target) is target


class Mover(Protocol):
    """What a hook may use to move further jobs in the same transaction (continuations)."""

    async def move_each(
        self,
        conn: AsyncConnection,
        items: Sequence[RowChange],
        *,
        expected: Iterable[State],
        target: State,
        now: datetime,
    ) -> Moved[uuid.UUID]: ...


@dataclass
class Applied:
    """A state change just written, for the applied hooks (inside its transaction)."""

    conn: AsyncConnection
    #: The rows moved: ``id``, ``expire_after_seconds``, ``batch_id`` (and a move's ``returning``).
    rows: Sequence[Row]
    target: State
    changes: Sequence[tuple[uuid.UUID, Change]]
    now: datetime
    #: Moves further jobs (without following their endings again; see the module's docstring).
    mover: Mover
    #: Outbox entries of jobs the hooks enqueued; the caller publishes them after commit.
    pending: list[Pending] = field(default_factory=list)
    #: The change committed on its own already (one statement, :meth:`Transitions.claim_now`):
    #: only hooks that write nothing for its target run, and ``after_commit`` runs at once.
    committed: bool = False

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this transaction commits (never if it rolls back)."""
        if self.committed:
            callback()
        else:
            after_commit(self.conn, callback)


class AppliedHook(Protocol):
    async def applied(self, context: Applied) -> None: ...

    def writes(self, target: State) -> bool:
        """Whether :meth:`applied` writes to the store for a move into ``target``."""
        ...


@dataclass(frozen=True)
class Move:
    """One call's request: which jobs, from which states, to which state, with what."""

    expected: frozenset[State]
    target: State
    #: Extra condition on the rows (written against ``store.tables.jobs``).
    where: sa.ColumnElement[bool] | None = None
    returning: Sequence[sa.ColumnElement[Any]] = ()


class Transitions:
    """Moves jobs between states; built once per role with its retention, hooks and filters."""

    def __init__(
        self,
        retention: timedelta,
        *,
        follow: AppliedHook | None = None,
        hooks: Sequence[AppliedHook] = (),
        filters: Filters | None = None,
    ) -> None:
        self.retention = retention
        self.follow = follow
        self.hooks = tuple(hooks)
        self.filters = filters

    @property
    def elects(self) -> bool:
        return self.filters is not None and self.filters.elects

    def writes_only_rows(self, target: State) -> bool:
        """Whether a move into ``target`` writes nothing but the moved rows and their history
        rows: no hook writes for it (no ending to follow, nothing counted in the store) and no
        filter watches changes or elects. Such a move may be one statement that commits on its
        own (:meth:`claim_now`)."""
        hooks = [self.follow, *self.hooks] if self.follow is not None else list(self.hooks)
        if any(hook.writes(target) for hook in hooks):
            return False
        return self.filters is None or not (self.filters.watches or self.filters.elects)

    def _following_nothing(self) -> _Followers:
        return _Followers(Transitions(self.retention, hooks=self.hooks, filters=self.filters))

    async def lock(
        self, conn: AsyncConnection, job_ids: Iterable[uuid.UUID], in_states: Iterable[State]
    ) -> set[uuid.UUID] | None:
        """Lock the rows of ``job_ids`` in ``in_states`` in ascending id order until the
        transaction ends; the caller then moves only the ids returned (None: no lock needed).
        See :func:`orchestrator.store.moves.lock`."""
        return await moves.lock(conn, job_ids, in_states)

    async def lock_at_clock(
        self, conn: AsyncConnection, job_ids: Iterable[uuid.UUID], in_states: Iterable[State]
    ) -> tuple[datetime, set[uuid.UUID] | None]:
        """The database's time and :meth:`lock`, in one round trip on PostgreSQL."""
        return await moves.lock_at_clock(conn, job_ids, in_states)

    async def move(
        self,
        conn: AsyncConnection,
        job_ids: Sequence[uuid.UUID],
        *,
        expected: Iterable[State],
        target: State,
        change: Change,
        now: datetime,
        where: sa.ColumnElement[bool] | None = None,
        returning: Sequence[sa.ColumnElement[Any]] = (),
        elect: bool = True,
    ) -> Moved[Row]:
        """Move every listed job that is in an ``expected`` state to ``target``, in one statement.

        Returns the rows moved (``id``, ``expire_after_seconds``, ``batch_id`` and any
        ``returning`` columns); jobs in another state are left alone and simply not returned.
        With election filters (and ``elect``) each job is first put to them and moved on its
        own to the state they chose (:class:`~orchestrator.errors.IllegalTransitionError` when
        that is not allowed from its state); ``Moved.elected`` tells which entered another.
        """
        request = Move(frozenset(expected), target, where, returning)
        check_allowed(request.expected, target)
        if not job_ids:
            return Moved()
        if elect and self.elects:
            return await self._move_elected(conn, dict.fromkeys(job_ids, change), {}, request, now)
        values = {**self._state_columns(target, now), **change.values}
        entered = moves.Entered(target, now, change)
        rows = await moves.update_many(
            conn, job_ids, request.expected, values, where, returning, entered
        )
        pending = await self._after_move(conn, rows, target, now, [(r.id, change) for r in rows])
        return Moved(rows, pending)

    async def move_each(
        self,
        conn: AsyncConnection,
        items: Sequence[RowChange],
        *,
        expected: Iterable[State],
        target: State,
        now: datetime,
        elect: bool = True,
    ) -> Moved[uuid.UUID]:
        """Like :meth:`move`, but each job gets its own values and guards; returns the ids."""
        request = Move(frozenset(expected), target)
        check_allowed(request.expected, target)
        if not items:
            return Moved()
        if elect and self.elects:
            by_job = {item.job_id: item.change for item in items}
            guards = {item.job_id: item.guard for item in items}
            elected = await self._move_elected(conn, by_job, guards, request, now)
            result: Moved[uuid.UUID] = Moved([row.id for row in elected], elected.pending)
            result.elected = elected.elected
            return result
        base = self._state_columns(target, now)
        rows = await moves.update_each(conn, items, request.expected, base, target, now)
        by_id = {item.job_id: item.change for item in items}
        changes = [(row.id, by_id[row.id]) for row in rows]
        pending = await self._after_move(conn, rows, target, now, changes)
        return Moved([row.id for row in rows], pending)

    async def _move_elected(
        self,
        conn: AsyncConnection,
        changes: Mapping[uuid.UUID, Change],
        guards: Mapping[uuid.UUID, Mapping[str, Any]],
        request: Move,
        now: datetime,
    ) -> Moved[Row]:
        """Each job to the state its election chose, one job at a time (only with election
        filters configured; the set-based path is untouched otherwise)."""
        moved: Moved[Row] = Moved()
        locked = await moves.lock(conn, changes, request.expected)  # in order, first
        for choice in await self._elect(conn, changes, request, now):
            if locked is not None and choice.job_id not in locked:
                continue  # entered an expected state since: its lock would come out of order
            guard = guards.get(choice.job_id, {})
            clauses = [moves.column(name) == value for name, value in guard.items()]
            clauses += [request.where] if request.where is not None else []
            one = await self.move(
                conn,
                [choice.job_id],
                expected={choice.source},
                target=choice.state,
                change=choice.change,
                now=now,
                where=sa.and_(*clauses) if clauses else None,
                returning=request.returning,
                elect=False,
            )
            moved.extend(one)
            moved.pending.extend(one.pending)
            if one and choice.state is not request.target:
                moved.elected[choice.job_id] = choice.state
        moved.pending += await self._publish_elected(conn, moved.elected, now)
        return moved

    async def claim_now(
        self,
        engine: AsyncEngine,
        job_ids: Sequence[uuid.UUID],
        *,
        worker_id: str,
        lease: timedelta,
        reason: str,
        data: Mapping[str, Any],
    ) -> tuple[datetime, list[Row]]:
        """``Enqueued`` (or a due ``Scheduled``) → ``Processing`` for the listed jobs, as
        :meth:`move` with :func:`orchestrator.store.claims.started`'s values would, but in one
        statement that commits on its own (PostgreSQL; only when
        :meth:`writes_only_rows` for ``Processing``): the rows locked in ascending id order,
        the compare-and-set, the history rows, all stamped by the database's clock. Returns
        that clock's time and the rows moved (``id``, ``expire_after_seconds``, ``batch_id``
        and :data:`orchestrator.store.claims.CLAIMED_COLUMNS`); the hooks then see the
        committed move."""
        target = State.PROCESSING
        check_allowed(frozenset({State.ENQUEUED, State.SCHEDULED}), target)
        if not self.writes_only_rows(target):
            raise RuntimeError("claim_now: a hook or filter writes for Processing; use move")
        async with engine.connect() as conn:
            now, rows = await moves.claim_now(conn, job_ids, worker_id, lease, reason, data)
            change = Change(reason, {}, data)
            applied = Applied(
                conn,
                rows,
                target,
                [(row.id, change) for row in rows],
                now,
                mover=self._following_nothing(),
                committed=True,
            )
            if rows:
                await self._run_hooks(applied)
        return now, rows

    async def _elect(
        self,
        conn: AsyncConnection,
        changes: Mapping[uuid.UUID, Change],
        request: Move,
        now: datetime,
    ) -> list[Choice]:
        """Put each stored job in an expected state to the filters' elections."""
        assert self.filters is not None
        choices = []
        stored = await moves.read_for_election(
            conn, list(changes), request.expected, request.where
        )
        for row in stored:
            change = changes[row.id]
            job = StoredJob(
                row.id, row.name, row.queue, row.attempt, row.retries, row.retries_used, row.options
            )
            data = dict(change.data) if change.data is not None else None
            source = State(row.state)
            election = Election(
                job, request.target, change.reason, now, dict(change.values), data, source=source
            )
            self.filters.elect(election)
            choices.append(Choice.of(election, row.id, source))
        return choices

    async def _publish_elected(
        self, conn: AsyncConnection, elected: Mapping[uuid.UUID, State], now: datetime
    ) -> list[Pending]:
        """A job an election sent to ``Enqueued`` instead of another state gets its message here
        (a caller sends messages only for the target it asked for)."""
        enqueued = [job_id for job_id, state in elected.items() if state is State.ENQUEUED]
        if not enqueued:
            return []
        rows = await moves.read_routing(conn, enqueued)
        publications = [outbox.Publication(r.id, r.queue, r.trace_context or {}) for r in rows]
        return await outbox.add(conn, publications, now)

    def _state_columns(self, target: State, now: datetime) -> dict[str, Any]:
        return moves.state_columns(target, now, self.retention, final=target in FINAL)

    async def _after_move(
        self,
        conn: AsyncConnection,
        rows: Sequence[Row],
        target: State,
        now: datetime,
        changes: Sequence[tuple[uuid.UUID, Change]],
    ) -> list[Pending]:
        """Expiry of the moved rows (their history rows were written with them); then the
        applied hooks, built-in ones first."""
        if not rows:
            return []
        if target in FINAL:
            await moves.set_own_expiry(conn, rows, now)
        applied = Applied(conn, rows, target, changes, now, mover=self._following_nothing())
        await self._run_hooks(applied)
        return applied.pending

    async def _run_hooks(self, applied: Applied) -> None:
        # Continuations, batch progress and counting: in this transaction, whoever moves the
        # job, so no ending is ever missed; the filters' hooks after them.
        if self.follow is not None:
            await self.follow.applied(applied)
        for hook in self.hooks:
            await hook.applied(applied)
        if self.filters is not None:
            await self.filters.applied(applied)



class _Followers:
    """Moves the jobs an ending releases or deletes: the hooks and the filters' ``applied`` see
    them, but neither ``follow`` (the ending walks the chain itself) nor elections (a
    continuation's fate follows its parent's)."""

    def __init__(self, transitions: Transitions) -> None:
        self._transitions = transitions

    async def move_each(
        self,
        conn: AsyncConnection,
        items: Sequence[RowChange],
        *,
        expected: Iterable[State],
        target: State,
        now: datetime,
    ) -> Moved[uuid.UUID]:
        return await self._transitions.move_each(
            conn, items, expected=expected, target=target, now=now, elect=False
        )
