"""The same lateness scenarios as ``bench.lateness``, for Celery's ``countdown``/``eta``.

Celery is not a project dependency: this creates a throwaway virtual environment under /tmp,
installs celery there, and runs a Celery worker (threads pool, 64) on the local RabbitMQ. Each
task records (due time, start time); lateness = start - due.

Run: ``.venv/bin/python -m bench.celery_lateness [--jobs 1000] [--max-delay 60]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.lateness import report
from tests.support.system import AMQP_URL

VENV = Path("/tmp/orch-celery-venv")
TASKS = """
import os, time
from celery import Celery
app = Celery("lat", broker=os.environ["BROKER"])
app.conf.task_default_queue = os.environ["QUEUE"]
@app.task
def mark(due):
    with open(os.environ["OUT"], "a") as f:
        f.write(f"{due} {time.time()}\\n")
"""
DRIVER = """
import sys, time, datetime
from tasks import mark
jobs, max_delay, scenario = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
if scenario == "mixed":
    for k in range(jobs):
        delay = max_delay - (max_delay - 2.0) * k / max(jobs - 1, 1)
        mark.apply_async(args=[time.time() + delay], countdown=delay)
else:
    due = time.time() + 5
    eta = datetime.datetime.fromtimestamp(due, datetime.timezone.utc)
    for _ in range(jobs):
        mark.apply_async(args=[due], eta=eta)
"""


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "celery"], check=True)
    return python


def run(python: Path, work: Path, scenario: str, jobs: int, max_delay: float) -> list[float]:
    out = work / f"{scenario}.txt"
    env = dict(
        os.environ,
        BROKER=AMQP_URL,
        QUEUE=f"celery-lat-{uuid.uuid4().hex[:8]}",
        OUT=str(out),
        PYTHONPATH=str(work),
    )
    worker = subprocess.Popen(
        [
            str(python),
            "-m",
            "celery",
            "-A",
            "tasks",
            "worker",
            "--pool",
            "threads",
            "-c",
            "64",
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=work,
        env=env,
    )
    try:
        time.sleep(5)
        subprocess.run(
            [str(python), str(work / "driver.py"), str(jobs), str(max_delay), scenario],
            cwd=work,
            env=env,
            check=True,
        )
        deadline = time.monotonic() + max_delay + 30
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_text().splitlines()) >= jobs:
                break
            time.sleep(1)
    finally:
        worker.terminate()
        worker.wait(30)
    lines = out.read_text().splitlines() if out.exists() else []
    return [float(start) - float(due) for due, start in (line.split() for line in lines)]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.celery_lateness", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--jobs", type=int, default=1000, help="tasks in each scenario (default: %(default)s)"
    )
    parser.add_argument(
        "--max-delay",
        type=float,
        default=60.0,
        help="longest countdown in seconds of the mixed scenario, which spreads its tasks from "
        "2 s to this (default: %(default)s)",
    )
    args = parser.parse_args()
    python = ensure_venv()
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        (work / "tasks.py").write_text(TASKS)
        (work / "driver.py").write_text(DRIVER)
        late = run(python, work, "mixed", args.jobs, args.max_delay)
        report(f"celery countdown, mixed 2-{args.max_delay:g} s", late, args.jobs)
        late = run(python, work, "same", args.jobs, args.max_delay)
        report("celery eta, all due in the same second", late, args.jobs)


if __name__ == "__main__":
    main()
