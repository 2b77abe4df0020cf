"""The state-counting applied hook: per-hour counters in the store (in the transaction) and
``orchestrator_state_changes_total`` (after commit, so a change rolled back is never counted)."""

from __future__ import annotations

from collections import Counter

from orchestrator import metrics
from orchestrator.lifecycle import COUNTED, State
from orchestrator.store import counters
from orchestrator.transitions import Applied


class CountStates:
    def writes(self, target: State) -> bool:
        return target in COUNTED

    async def applied(self, context: Applied) -> None:
        moved = len(context.rows)
        if context.target in COUNTED:
            await counters.add(context.conn, context.now, Counter({context.target: moved}))
        counter = metrics.STATE_CHANGES.labels(context.target.value)
        context.after_commit(lambda: counter.inc(moved))
