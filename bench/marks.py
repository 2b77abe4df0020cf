"""What every system's job and producer do in ``bench.peers``, written once (standard library only).

The same job body runs in Orchestrator, Dramatiq and Celery: ``record(tag, ref)`` notes the tag,
the reference time the producer passed (when it sent the job, or when the job was due) and the
wall-clock time the job started. A thread writes the notes to ``$PEERS_OUT`` in batches, so the
job itself costs one list append in every system alike.

``python -m bench.marks SYSTEM WORKLOAD N [options]`` is the producer: it sends N jobs through the
system's ordinary per-job client (or Orchestrator's ``enqueue_many``), prints progress to stderr
and a JSON summary to stdout. It runs in the project's environment for Orchestrator and in the
throwaway one for the peers, so every producer is a process of its own running this same loop.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_notes: list[str] = []
_flusher: threading.Thread | None = None


def _flush_forever(path: str) -> None:
    while True:
        time.sleep(0.05)
        if _notes:
            taken = len(_notes)
            lines = _notes[:taken]
            del _notes[:taken]
            with open(path, "a") as out:
                out.write("".join(lines))


def record(tag: str, ref: float) -> None:
    """The job body: note when it started (list.append is atomic across threads)."""
    global _flusher
    _notes.append(f"{tag} {ref!r} {time.time()!r}\n")
    if _flusher is None:
        _flusher = threading.Thread(
            target=_flush_forever, args=(os.environ["PEERS_OUT"],), daemon=True
        )
        _flusher.start()


#: send(tag, ref, delay, at): enqueue one job; delay in seconds from now, or due at epoch ``at``.
Send = Callable[[str, float, float | None, float | None], None]


def _orchestrator(client: Any) -> tuple[Send, Callable[[list[tuple[str, float]]], None]]:
    """Through ``client``: a ``Client`` (HTTP to the API) or a ``DirectClient`` (the store)."""
    from orchestrator import JobCall

    def send(tag: str, ref: float, delay: float | None, at: float | None) -> None:
        call = JobCall.named("bench.mark", tag, ref)
        if at is not None:
            client.schedule(call, run_at=datetime.fromtimestamp(at, UTC))
        elif delay is not None:
            client.schedule(call, delay=delay)
        else:
            client.enqueue(call)

    def send_many(items: list[tuple[str, float]]) -> None:
        client.enqueue_many([JobCall.named("bench.mark", tag, ref) for tag, ref in items])

    return send, send_many


def _orchestrator_client(system: str, url: str) -> Any:
    if system == "orchestrator-direct":
        from orchestrator.direct import DirectClient

        return DirectClient()  # ORCHESTRATOR_DATABASE_URL, _AMQP_URL, … from the environment
    from orchestrator import Client

    return Client(url, timeout=60)


def _dramatiq(url: str, queue: str, confirm: bool) -> Send:
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    dramatiq.set_broker(RabbitmqBroker(url=url, confirm_delivery=confirm))

    @dramatiq.actor(actor_name="mark", queue_name=queue, max_retries=0)
    def mark(tag: str, ref: float) -> None:
        """Never runs here: the producer only needs the actor to send."""

    def send(tag: str, ref: float, delay: float | None, at: float | None) -> None:
        if at is not None:
            delay = max(0.0, at - time.time())
        if delay is None:
            mark.send(tag, ref)
        else:
            mark.send_with_options(args=(tag, ref), delay=int(delay * 1000))

    return send


def _celery(url: str, queue: str) -> Send:
    from celery import Celery

    app = Celery("peers", broker=url)
    app.conf.task_default_queue = queue

    @app.task(name="peers.mark", ignore_result=True)
    def mark(tag: str, ref: float) -> None:
        """Never runs here."""

    def send(tag: str, ref: float, delay: float | None, at: float | None) -> None:
        if at is not None:
            mark.apply_async((tag, ref), eta=datetime.fromtimestamp(at, UTC))
        elif delay is not None:
            mark.apply_async((tag, ref), countdown=delay)
        else:
            mark.delay(tag, ref)

    return send


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values = sorted(values)
    return {
        "p50_ms": round(values[len(values) // 2] * 1000, 3),
        "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 3),
        "max_ms": round(values[-1] * 1000, 3),
    }


def _progress(label: str, done: int, total: int) -> None:
    if done == total or done % max(1, total // 5) == 0:
        print(f"    {label}: sent {done}/{total}", file=sys.stderr, flush=True)


def produce(send: Send, workload: str, n: int, tag: str, rate: float) -> dict[str, Any]:
    """The producer loop of every workload but the bulk one; times each call."""
    calls: list[float] = []
    started = time.time()
    if workload == "w3b":
        plan = [(f"{tag}-6", 6.0)] * n + [(f"{tag}-3", 3.0)] * n + [(f"{tag}-0.5", 0.5)] * n
    else:
        plan = [(tag, 0.0)] * n
    due = started + 5.0
    for i, (job_tag, delay) in enumerate(plan):
        if workload == "w2":
            pause = started + i / rate - time.time()
            if pause > 0:
                time.sleep(pause)
        before = time.time()
        if workload == "w3":
            send(job_tag, due, None, due)
        elif workload == "w3b":
            send(job_tag, before + delay, delay, None)
        else:
            send(job_tag, before, None, None)
        calls.append(time.time() - before)
        _progress(workload, i + 1, len(plan))
    finished = time.time()
    return {
        "started": started,
        "finished": finished,
        "sent": len(plan),
        "send_jobs_per_s": round(len(plan) / (finished - started), 1),
        "call": _percentiles(calls),
    }


def produce_many(send_many: Callable[[list[tuple[str, float]]], None], n: int, tag: str,
                 chunk: int) -> dict[str, Any]:
    started = time.time()
    for first in range(0, n, chunk):
        now = time.time()
        send_many([(tag, now)] * min(chunk, n - first))
        _progress("bulk", min(n, first + chunk), n)
    finished = time.time()
    return {
        "started": started,
        "finished": finished,
        "sent": n,
        "send_jobs_per_s": round(n / (finished - started), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="bench.peers' producer (one system, one load)")
    parser.add_argument("system", choices=["orchestrator", "orchestrator-direct", "dramatiq",
                                           "dramatiq-confirms", "celery"])
    parser.add_argument("workload", choices=["w1", "w1d", "w1-bulk", "w2", "w3", "w3b"])
    parser.add_argument("n", type=int, help="jobs to send (per delay class for w3b)")
    parser.add_argument("--tag", required=True, help="tag the jobs record")
    parser.add_argument("--url", required=True, help="API URL or AMQP URL")
    parser.add_argument("--queue", default="default", help="the peers' queue name")
    parser.add_argument("--rate", type=float, default=200.0, help="w2: jobs per second")
    parser.add_argument("--chunk", type=int, default=500, help="enqueue_many: jobs per call")
    args = parser.parse_args()
    if args.system.startswith("orchestrator"):
        client = _orchestrator_client(args.system, args.url)
        send, send_many = _orchestrator(client)
        try:
            if args.workload in ("w1-bulk", "w1d"):
                print(json.dumps(produce_many(send_many, args.n, args.tag, args.chunk)))
            else:
                print(json.dumps(produce(send, args.workload, args.n, args.tag, args.rate)))
        finally:
            client.close()  # a DirectClient publishes what it committed before it returns
        return
    elif args.system == "celery":
        send = _celery(args.url, args.queue)
    else:
        send = _dramatiq(args.url, args.queue, confirm=args.system == "dramatiq-confirms")
    print(json.dumps(produce(send, args.workload, args.n, args.tag, args.rate)))


if __name__ == "__main__":
    main()
