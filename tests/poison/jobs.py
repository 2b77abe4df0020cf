"""Jobs whose outcomes the store cannot hold as they are (results, exceptions), and a job that
waits for the test, so that many outcomes reach the worker's store writer together."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from orchestrator import job


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


#: What ``poison.held`` returns for each kind (``ok`` is an ordinary result).
RESULTS: dict[str, Callable[[], Any]] = {
    "ok": lambda: {"fine": True},
    "nan": lambda: float("nan"),
    "infinity": lambda: [1.0, float("inf")],
    "big_int": lambda: 10**5000,
    "surrogate": lambda: {"text": "a\ud800b"},
    "nul": lambda: "a\x00b",
    "nul_key": lambda: {"k\x00": 1},
    "large": lambda: "x" * (2 * 1024 * 1024),
    "deep": lambda: _deep(100),
}

#: What ``poison.held_raises`` puts in its exception's message for each kind.
MESSAGES: dict[str, Callable[[], str]] = {
    "nul": lambda: "bad\x00message",
    "surrogate": lambda: "bad\udc80message",
    "huge": lambda: "m" * (10 * 1024 * 1024),
}

#: Set by the test once every held job is running: they then finish together.
RELEASE = threading.Event()


@job(name="poison.held", retries=0)
def held(kind: str) -> object:
    if not RELEASE.wait(60):
        raise TimeoutError("the test never released the held jobs")
    return RESULTS[kind]()


class StrangeError(Exception):
    pass


# A type name a store cannot take as it is either.
StrangeError.__qualname__ = "Strange\x00Error\udc80"


@job(name="poison.held_raises", retries=0)
def held_raises(kind: str) -> None:
    if not RELEASE.wait(60):
        raise TimeoutError("the test never released the held jobs")
    if kind == "strange_type":
        raise StrangeError("its type's name has a NUL and a lone surrogate")
    raise RuntimeError(MESSAGES[kind]())


@job(name="poison.ok", retries=0)
def ok(n: int) -> int:
    return n


@job(name="poison.fails", retries=1, retry_delays=[1])
def fails(message: str) -> None:
    raise RuntimeError(message)


#: What ``poison.fuzzed`` returns and ``poison.fuzzed_raises`` raises with, by token (the test
#: generates the values; the worker runs in the same process).
FUZZ: dict[str, Any] = {}


@job(name="poison.fuzzed", retries=0)
def fuzzed(token: str) -> object:
    return FUZZ[token]


@job(name="poison.fuzzed_raises", retries=0)
def fuzzed_raises(token: str) -> None:
    raise RuntimeError(FUZZ[token])
