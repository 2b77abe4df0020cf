"""myapp's jobs. A worker started with ORCHESTRATOR_JOBS=myapp.jobs imports this module and
registers each job's name, queue and argument schema; the API then accepts them."""

from __future__ import annotations

from collections import Counter

from orchestrator import job


@job
def word_count(text: str) -> dict[str, int]:
    """How often each word occurs in ``text``; its name is "myapp.jobs.word_count"."""
    return dict(Counter(text.lower().split()))


@job(name="myapp.shout", retries=3)
async def shout(text: str) -> str:
    """An async job with a name of its own, retried up to 3 times if it fails."""
    return text.upper() + "!"
