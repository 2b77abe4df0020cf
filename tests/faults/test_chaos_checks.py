"""The chaos test's own checks catch what they are for: mark files of attempts that overlap
(also through an attempt cut off without its end mark), delayed jobs started early, a fault that
never recovered (or too late), and a dead queue whose depth could not be read."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aio_pika
import pytest

from tests.faults.chaos import ChaosConfig, DeadQueueUnreadableError, dead_queue_depth
from tests.faults.chaos_checks import (
    check_dead_letters,
    check_delayed,
    check_overlaps,
    read_attempts,
)
from tests.faults.chaos_clients import Sent
from tests.faults.chaos_fleet import FAULT_KINDS, Fault
from tests.faults.chaos_recovery import Recovery, count_reruns, recovery_limit


def marks(directory: Path, job_id: str, *lines: str) -> None:
    (directory / job_id).write_text("".join(line + "\n" for line in lines))


def test_attempts_one_after_the_other_do_not_overlap(tmp_path: Path) -> None:
    marks(
        tmp_path, "a",
        "start attempt=1 pid=10 t=100.000", "end attempt=1 pid=10 t=100.300",
        "start attempt=2 pid=11 t=100.500", "end attempt=2 pid=11 t=100.700",
    )  # fmt: skip
    assert check_overlaps(read_attempts(tmp_path, {10: 101.0, 11: 102.0})) == []


def test_a_second_attempt_before_the_first_ended_overlaps(tmp_path: Path) -> None:
    # The SIGTERM hand-back: attempt 1's code still ran when attempt 2 started elsewhere.
    marks(
        tmp_path, "b",
        "start attempt=1 pid=10 t=100.000", "start attempt=2 pid=11 t=100.100",
        "end attempt=1 pid=10 t=100.260", "end attempt=2 pid=11 t=100.400",
    )  # fmt: skip
    (found,) = check_overlaps(read_attempts(tmp_path, {10: 101.0, 11: 102.0}))
    assert "attempt 1 (pid 10" in found and "overlap by 0.160 s" in found


def test_an_attempt_without_end_mark_lasts_until_its_process_exited(tmp_path: Path) -> None:
    marks(
        tmp_path, "c",
        "start attempt=1 pid=10 t=100.000", "start attempt=2 pid=11 t=105.000",
        "end attempt=2 pid=11 t=105.100", "end attempt=1 pi",  # cut by kill -9: ignored
    )  # fmt: skip
    assert check_overlaps(read_attempts(tmp_path, {10: 104.9})) == []
    assert len(check_overlaps(read_attempts(tmp_path, {10: 105.05}))) == 1


def test_a_delayed_job_started_before_its_due_time_is_reported(tmp_path: Path) -> None:
    marks(tmp_path, "d", "start attempt=1 pid=10 t=104.000", "end attempt=1 pid=10 t=104.1")
    marks(tmp_path, "e", "start attempt=1 pid=10 t=106.000", "end attempt=1 pid=10 t=106.1")
    attempts = read_attempts(tmp_path, {})
    sent = [
        Sent("d", "delayed", 100.0, 100.1, delay=5.0, due=105.0),
        Sent("e", "delayed", 100.0, 100.1, delay=5.0, due=None),  # due: sent + delay
    ]
    (early,) = check_delayed(sent, attempts)
    assert early.startswith("d: started 1.000 s before")


def _recovery(kind: str, **figures: float | int | None) -> Recovery:
    return Recovery(kind, 10.0, "x.1", recovery_limit(kind, ChaosConfig(seed=1)), **figures)  # type: ignore[arg-type]


def test_a_fault_that_never_recovers_is_a_violation() -> None:
    assert "no replacement took the lease" in (
        _recovery("kill -9 leading scheduler", takeover_s=None).problem() or ""
    )
    assert "answered /readyz" in (_recovery("SIGTERM api", api_back_s=None).problem() or "")
    cut_off = _recovery("kill -9 worker", orphans=2, never_rerun=1, rerun_s=9.0)
    assert "1 of 2 cut-off attempts never ran again" in (cut_off.problem() or "")


def test_a_fault_recovered_after_its_bound_is_a_violation_and_within_it_is_not() -> None:
    limit = recovery_limit("kill -9 leading scheduler", ChaosConfig(seed=1))
    assert _recovery("kill -9 leading scheduler", takeover_s=limit - 1).problem() is None
    late = _recovery("kill -9 leading scheduler", takeover_s=limit + 1).problem()
    assert late is not None and "limit" in late
    # A worker fault that cut nothing off has nothing to recover.
    assert _recovery("SIGTERM worker", orphans=0, rerun_s=None).problem() is None


def test_every_fault_kind_has_a_bound_from_the_settings_and_sigterm_allows_the_stop() -> None:
    config = ChaosConfig(seed=1)
    limits = {kind: recovery_limit(kind, config) for kind in FAULT_KINDS}
    assert set(FAULT_KINDS) == {
        f"{how} {role}"
        for how in ("kill -9", "SIGTERM")
        for role in ("worker", "leading scheduler", "api")
    }
    # Longer leases, longer bounds: derived from the settings, not a fixed figure.
    slower = ChaosConfig(seed=1, lease_seconds=60.0)
    assert recovery_limit("kill -9 worker", slower) > limits["kill -9 worker"]
    for role in ("worker", "leading scheduler", "api"):
        assert limits[f"SIGTERM {role}"] > limits[f"kill -9 {role}"]


def test_an_attempt_cut_off_on_the_victim_and_never_run_again_is_counted(tmp_path: Path) -> None:
    marks(
        tmp_path, "f",
        "start attempt=1 pid=10 t=100.000",  # cut off by the kill of pid 10, never again
    )  # fmt: skip
    marks(
        tmp_path, "g",
        "start attempt=1 pid=10 t=100.000", "start attempt=2 pid=11 t=112.000",
        "end attempt=2 pid=11 t=112.100",
    )  # fmt: skip
    marks(tmp_path, "h", "start attempt=1 pid=10 t=99.000", "end attempt=1 pid=10 t=99.5")
    result = _recovery("kill -9 worker")
    attempts = read_attempts(tmp_path, {10: 101.0, 11: 120.0})
    count_reruns(result, Fault("kill -9 worker", 101.0, "worker-1.1", 10), attempts, set())
    assert (result.orphans, result.never_rerun, result.rerun_s) == (2, 1, 11.0)


def test_a_dead_queue_that_could_not_be_read_is_a_violation() -> None:
    assert check_dead_letters([], 0, None) == []
    (found,) = check_dead_letters([], 0, "ns.dead: depth not readable after 5 attempts")
    assert "could not be read" in found


def test_reading_the_dead_queue_fails_loudly_when_the_broker_does_not_answer() -> None:
    refused = "amqp://guest:guest@127.0.0.1:1/"
    with pytest.raises(DeadQueueUnreadableError, match="after 2 attempts"):
        asyncio.run(dead_queue_depth(refused, "nowhere", attempts=2, pause=0.0))


def test_reading_the_dead_queue_counts_its_messages_and_fails_when_it_is_missing(
    amqp_url: str,
) -> None:
    namespace = f"chaos-check-{uuid.uuid4().hex[:8]}"

    async def fill(n: int) -> None:
        connection = await aio_pika.connect(amqp_url)
        try:
            channel = await connection.channel()
            await channel.declare_queue(f"{namespace}.dead", auto_delete=False)
            for _ in range(n):
                message = aio_pika.Message(b"x")
                await channel.default_exchange.publish(message, f"{namespace}.dead")
        finally:
            await connection.close()

    async def delete() -> None:
        connection = await aio_pika.connect(amqp_url)
        try:
            await (await connection.channel()).queue_delete(f"{namespace}.dead")
        finally:
            await connection.close()

    with pytest.raises(DeadQueueUnreadableError):
        asyncio.run(dead_queue_depth(amqp_url, namespace, attempts=1))
    asyncio.run(fill(2))
    try:
        assert asyncio.run(dead_queue_depth(amqp_url, namespace, attempts=1)) == 2
    finally:
        asyncio.run(delete())
