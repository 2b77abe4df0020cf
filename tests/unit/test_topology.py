"""The broker's topology as data (orchestrator.topology): which delay levels a delay takes, the
routing key that spells it, and the arguments every queue is declared with. Real delays through
the levels are tests/retries/test_delay_levels.py."""

from __future__ import annotations

import pytest

from orchestrator.topology import MAX_DELAY_PASS, Topology, delay_levels, delay_routing_key


@pytest.mark.parametrize(
    ("seconds", "levels"),
    [
        (1, [0]),
        (2, [1]),
        (3, [1, 0]),
        (37, [5, 2, 0]),  # 32 + 4 + 1
        (100_000, [16, 15, 10, 9, 7, 5]),  # 65536 + 32768 + 1024 + 512 + 128 + 32
        (0.2, [0]),  # rounds up to whole seconds
        (2.5, [1, 0]),
        (0, []),
        (10**9, list(reversed(range(18)))),  # capped at one pass; the worker sends it round again
    ],
)
def test_levels_a_delay_takes(seconds: float, levels: list[int]) -> None:
    assert delay_levels(seconds) == levels
    assert sum(2**k for k in levels) == min(MAX_DELAY_PASS, -(-seconds // 1))


def test_routing_key_spells_the_delay_in_binary_then_the_queue() -> None:
    assert delay_routing_key(37, "default") == "0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.1.0.1.default"
    assert MAX_DELAY_PASS == 2**18 - 1


def test_levels_are_fixed_ttl_quorum_queues_dead_lettering_at_least_once() -> None:
    topology = Topology("x")
    for level in (0, 5, 17):
        args = dict(topology.delay_queue(level).arguments)
        assert args["x-message-ttl"] == 2**level * 1000
        assert args["x-queue-type"] == "quorum"
        assert args["x-dead-letter-strategy"] == "at-least-once"
        assert args["x-overflow"] == "reject-publish"
        below = "x.delay.out" if level == 0 else f"x.delay.{level - 1}"
        assert args["x-dead-letter-exchange"] == below
    assert ("x.delay.out", "#.default") in topology.work_queue("default").bindings


def test_the_quorum_group_size_reaches_every_quorum_queue() -> None:
    sized = Topology(quorum_group_size=3)
    queues = [sized.work_queue("default"), sized.dead_letter_queue, sized.delay_queue(4)]
    for spec in queues:
        assert ("x-quorum-initial-group-size", 3) in spec.arguments
    # Unset, nothing is sent: queues declared before keep matching their arguments.
    unsized = Topology()
    assert all(
        name != "x-quorum-initial-group-size" for name, _ in unsized.work_queue("a").arguments
    )
