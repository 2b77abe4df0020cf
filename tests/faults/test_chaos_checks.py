"""The chaos test's own checks catch what they are for: mark files of attempts that overlap
(also through an attempt cut off without its end mark), and delayed jobs started early."""

from __future__ import annotations

from pathlib import Path

from tests.faults.chaos import Sent
from tests.faults.chaos_checks import check_delayed, check_overlaps, read_attempts


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
