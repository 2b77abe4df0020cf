"""The order of ``around`` filters (orchestrator.filters): the first listed is the outermost.
Filters in a running worker and API are tests/retries/test_filters.py."""

from __future__ import annotations

from orchestrator.filters import Filters, JobFilter


async def test_around_chain_order_first_is_outermost():
    seen: list[str] = []

    class Mark(JobFilter):
        def __init__(self, name: str) -> None:
            self.name = name

        async def around(self, call_next, context):
            seen.append(f"{self.name} in")
            result = await call_next()
            seen.append(f"{self.name} out")
            return result

    async def job() -> str:
        seen.append("job")
        return "done"

    result = await Filters([Mark("a"), Mark("b")]).perform(job, None)  # type: ignore[arg-type]
    assert result == "done"
    assert seen == ["a in", "b in", "job", "b out", "a out"]
