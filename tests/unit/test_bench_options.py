"""The benchmarks' command lines: every option says what it does, and progress is reported as
a log or a terminal expects it (the benchmarks themselves take minutes; these checks do not run
them)."""

from __future__ import annotations

import argparse
import importlib
import io
import sys

import pytest

from bench.progress import Progress

MODULES = (
    "throughput",
    "lateness",
    "scheduled",
    "recurring",
    "dashboard",
    "celery_lateness",
    "cpu",
)


class _ParsedError(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _parser_of(module: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser ``bench.<module>``'s main() builds, caught as it parses (nothing runs)."""

    def caught(self: argparse.ArgumentParser, *_: object, **__: object) -> None:
        raise _ParsedError(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", caught)
    monkeypatch.setattr(sys, "argv", [module])
    with pytest.raises(_ParsedError) as parsed:
        importlib.import_module(f"bench.{module}").main()
    return parsed.value.parser


def _undocumented(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _undocumented(sub, f"{prefix}{name} ")
        elif not action.help and action.option_strings:
            missing.append(prefix + "/".join(action.option_strings))
    return missing


@pytest.mark.parametrize("module", MODULES)
def test_every_option_has_help(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = _parser_of(module, monkeypatch)
    assert parser.description
    assert _undocumented(parser) == []


def test_throughput_offers_json_output(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = _parser_of("throughput", monkeypatch)
    monkeypatch.undo()
    assert parser.parse_args(["--json"]).json is True
    assert parser.parse_args([]).json is False


class _Log(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def test_progress_in_a_log_is_a_line_per_phase_and_few_updates() -> None:
    log = _Log(terminal=False)
    progress = Progress(log)
    progress.phase("bulk")
    for done in range(1000):  # far more calls than lines: updates wait LOG_EVERY_SECONDS
        progress.update(f"{done}/1000 enqueued")
    progress.phase("per-job")
    progress.done()
    lines = log.getvalue().splitlines()
    assert lines[0].split("] ", 1)[1] == "bulk"
    assert any(line.endswith("] per-job") for line in lines)
    assert lines[-1].split("] ", 1)[1].startswith("done in ")
    assert len(lines) <= 4
    assert "\r" not in log.getvalue()


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    screen = _Log(terminal=True)
    progress = Progress(screen)
    progress.phase("latency")
    progress.update("1/10 posted")
    progress.done()
    text = screen.getvalue()
    assert text.count("\r\x1b[2K") >= 2  # each status replaces the one before
    assert text.endswith("\n") and text.count("\n") == 1
