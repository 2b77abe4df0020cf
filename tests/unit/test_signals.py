"""The stop-signal rule: the first asks for a graceful stop, a person's second one for a stop at
once, and the echo of the first (within SAME_PERSON_SECONDS) counts for nothing."""

from __future__ import annotations

from orchestrator.signals import SAME_PERSON_SECONDS, Request, SignalCount


def counted(times: list[float]) -> list[Request]:
    clock = iter(times)
    count = SignalCount(lambda: next(clock))
    return [count.received() for _ in times]


def test_the_first_signal_asks_for_a_graceful_stop() -> None:
    assert counted([10.0]) == [Request.GRACEFUL]


def test_the_echo_of_a_ctrl_c_is_not_a_second_request() -> None:
    # orchestrator dev: the terminal's SIGINT, then the supervisor's forwarded SIGTERM.
    assert counted([10.0, 10.05]) == [Request.GRACEFUL, Request.NONE]


def test_a_second_signal_later_asks_for_a_stop_at_once() -> None:
    later = 10.0 + SAME_PERSON_SECONDS
    assert counted([10.0, 10.05, later, later + 0.01]) == [
        Request.GRACEFUL,
        Request.NONE,
        Request.AT_ONCE,
        Request.AT_ONCE,
    ]
