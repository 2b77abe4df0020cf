"""The clients of a chaos run (:mod:`tests.faults.chaos`): seeded mixed load through the HTTP
API, and a ledger of everything they sent and were told.

A request with idempotency keys is sent again, with the same keys, until it is answered (the API
may be down for a minute); one without is sent again only when nothing can have reached the
server, else it is *indeterminate*: its job may or may not exist.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tests.faults.chaos import ChaosConfig

JOB = "faults.chaos"
#: A request with idempotency keys is repeated this long while the API is down (a replacement
#: API takes 15-60 s to start on a loaded 2-core machine).
RETRY_FOR = 240.0

# --------------------------------------------------------------------------------------------
# What the clients were told


@dataclass
class Sent:
    """One job the API acknowledged (2xx with its id)."""

    job_id: str
    kind: str
    sent_at: float
    acked_at: float
    fail: bool = False
    key: str | None = None
    #: Delayed jobs: the delay asked for and the due time the store answered (epoch seconds).
    delay: float | None = None
    due: float | None = None
    parent: str | None = None
    #: Keyed jobs sent twice: the id the second request answered.
    replay_id: str | None = None


@dataclass
class Ledger:
    """Everything the clients sent and were told; shared by the client threads."""

    sent: list[Sent] = field(default_factory=list)
    #: Tags of plain requests cut off mid-flight (the job may or may not exist).
    indeterminate: list[str] = field(default_factory=list)
    #: Requests answered with an unexpected status (a bug in the test or the API).
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    retried: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *sent: Sent) -> None:
        with self.lock:
            self.sent.extend(sent)

    def note(self, *, requests: int = 0, retried: int = 0) -> None:
        with self.lock:
            self.requests += requests
            self.retried += retried


class CutOffError(Exception):
    """The request may or may not have reached the server (the API died while answering)."""


class ApiClient:
    """One client thread's HTTP calls: retry while the API is down, never guess a result."""

    def __init__(self, base_url: str, ledger: Ledger) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=httpx.Timeout(20.0, connect=2.0))
        self._ledger = ledger

    def close(self) -> None:
        self._http.close()

    def post(self, path: str, body: dict[str, Any], *, keyed: bool) -> dict[str, Any]:
        """The answer of a 2xx. A request with idempotency keys is sent again, with the same
        keys, until answered. One without is sent again only when it never left the client
        (connection refused) or the API said nothing was changed (503), else
        :class:`CutOffError`: the job may or may not exist."""
        deadline = time.monotonic() + RETRY_FOR
        while True:
            self._ledger.note(requests=1)
            try:
                response = self._http.post(path, json=body)
            except httpx.ConnectError:
                pass  # nothing reached the server
            except httpx.TransportError as exc:
                if not keyed:
                    raise CutOffError(repr(exc)) from None
            else:
                if response.status_code in (200, 201):
                    return dict(response.json())
                if response.status_code != 503 and not (keyed and response.status_code >= 500):
                    raise AssertionError(f"POST {path}: {response.status_code} {response.text}")
            if time.monotonic() > deadline:
                raise CutOffError(f"POST {path}: no answer within {RETRY_FOR:.0f} s")
            self._ledger.note(retried=1)
            time.sleep(0.2)

    def due(self, job_id: str) -> float | None:
        """A Scheduled job's due time as the store holds it (None if not readable now)."""
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError, TypeError):
            response = self._http.get(f"/api/v1/jobs/{job_id}")
            if response.status_code == 200 and response.json().get("due_at"):
                return _epoch(str(response.json()["due_at"]))
        return None


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class LoadClient:
    """One client thread: a seeded mix of requests at its share of the rate."""

    def __init__(
        self, number: int, config: ChaosConfig, api: ApiClient, ledger: Ledger, marks: Path
    ) -> None:
        self.number = number
        self.rng = random.Random(config.seed * 1000 + number)
        self.api = api
        self.ledger = ledger
        self.marks = str(marks)
        self.per_job = config.clients / config.rate
        self._count = 0
        self.actions: list[tuple[float, Callable[[], int]]] = [
            (0.35, self.plain),
            (0.15, self.keyed_twice),
            (0.20, self.bulk),
            (0.12, self.delayed),
            (0.10, self.continuation),
            (0.08, self.failing),
        ]

    def run(self, stop: threading.Event) -> None:
        weights = [w for w, _ in self.actions]
        while not stop.is_set():
            began = time.monotonic()
            (action,) = self.rng.choices([a for _, a in self.actions], weights)
            try:
                jobs = action()
            except CutOffError:
                jobs = 1
            except AssertionError as exc:
                with self.ledger.lock:
                    self.ledger.errors.append(str(exc))
                jobs = 1
            stop.wait(max(0.0, jobs * self.per_job - (time.monotonic() - began)))

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}-{self.number}-{self._count}-{uuid.uuid4().hex[:6]}"

    def _body(self, *, fail: bool = False, key: str | None = None, **extra: Any) -> dict[str, Any]:
        tag = key or self._name("t")
        body: dict[str, Any] = {
            "job": JOB,
            "args": [self.marks],
            "kwargs": {"ms": self.rng.randint(0, 300), "fail": fail, "tag": tag},
            **extra,
        }
        if key is not None:
            body["idempotency_key"] = key
        return body

    def _send(self, kind: str, body: dict[str, Any], **sent: Any) -> Sent:
        began = time.time()
        answer = self.api.post("/api/v1/jobs", body, keyed="idempotency_key" in body)
        record = Sent(str(answer["id"]), kind, began, time.time(), **sent)
        self.ledger.add(record)
        return record

    def plain(self) -> int:
        body = self._body()
        try:
            self._send("plain", body)
        except CutOffError:
            with self.ledger.lock:
                self.ledger.indeterminate.append(body["kwargs"]["tag"])
        return 1

    def keyed_twice(self) -> int:
        key = self._name("k")
        body = self._body(key=key)
        record = self._send("keyed", body, key=key)
        again = self.api.post("/api/v1/jobs", body, keyed=True)
        record.replay_id = str(again["id"])
        return 1

    def bulk(self, size: int | None = None, keyed: bool | None = None) -> int:
        size = self.rng.randint(10, 40) if size is None else size
        keyed = self.rng.random() < 0.5 if keyed is None else keyed
        bodies = [self._body(key=self._name("b") if keyed else None) for _ in range(size)]
        began = time.time()
        try:
            answer = self.api.post("/api/v1/jobs/bulk", {"jobs": bodies}, keyed=keyed)
        except CutOffError:
            with self.ledger.lock:
                self.ledger.indeterminate.extend(b["kwargs"]["tag"] for b in bodies)
            return size
        acked = time.time()
        self.ledger.add(
            *(
                Sent(str(job_id), "bulk", began, acked, key=body.get("idempotency_key"))
                for job_id, body in zip(answer["ids"], bodies, strict=True)
            )
        )
        return size

    def delayed(self) -> int:
        key = self._name("d")
        delay = round(self.rng.uniform(0.5, 6.0), 3)
        record = self._send("delayed", self._body(key=key, delay_seconds=delay), key=key)
        record.delay = delay
        record.due = self.api.due(record.job_id)
        return 1

    def continuation(self) -> int:
        parent = self._send("parent", self._body(key=(key := self._name("p"))), key=key)
        child_key = self._name("c")
        body = self._body(key=child_key, continue_after=parent.job_id)
        self._send("child", body, key=child_key, parent=parent.job_id)
        return 2

    def failing(self) -> int:
        key = self._name("f")
        body = self._body(fail=True, key=key, retries=1, retry_delays=[0.5])
        self._send("failing", body, key=key, fail=True)
        return 1
