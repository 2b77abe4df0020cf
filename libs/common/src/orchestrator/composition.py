"""The state machine as every role builds it: one place that says which built-in hooks run.

Each role's composition root (its ``main``, the API's lifespan, a test's fixture) calls
:func:`transitions` once; the built-in hooks are always installed, so no change escapes them.
"""

from __future__ import annotations

from datetime import timedelta

from orchestrator.counting import CountStates
from orchestrator.endings import FollowEndings
from orchestrator.filters import Filters
from orchestrator.transitions import Transitions


def transitions(retention: timedelta, filters: Filters | None = None) -> Transitions:
    """Continuations and batch progress, then state counting, then the filters' hooks."""
    return Transitions(retention, follow=FollowEndings(), hooks=(CountStates(),), filters=filters)
