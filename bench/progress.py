"""What a benchmark is doing while it runs, and its figures as a table at the end.

Progress goes to stderr, so ``--json`` output on stdout stays clean for scripts. On a terminal
one status line is rewritten in place; in a log (CI, ``| tee``) a line is written at each new
phase and then at most every ``LOG_EVERY_SECONDS``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table

LOG_EVERY_SECONDS = 5.0
TERMINAL_EVERY_SECONDS = 0.1


class Progress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.started = time.monotonic()
        self.phase_name = ""
        self.last_shown = 0.0
        self.open_line = False

    def phase(self, name: str) -> None:
        """A new step: always shown."""
        self.phase_name = name
        self._show(name, force=True)

    def update(self, detail: str) -> None:
        """How far the current step is; cheap to call for every job (shown when due)."""
        self._show(f"{self.phase_name}: {detail}", force=False)

    def done(self) -> None:
        self._show(f"done in {time.monotonic() - self.started:.0f} s", force=True)
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False
        self.stream.flush()

    def _show(self, text: str, *, force: bool) -> None:
        now = time.monotonic()
        every = TERMINAL_EVERY_SECONDS if self.terminal else LOG_EVERY_SECONDS
        if not force and now - self.last_shown < every:
            return
        self.last_shown = now
        line = f"[{now - self.started:6.1f} s] {text}"
        if self.terminal:
            self.stream.write(f"\r\x1b[2K{line}")  # back to the start, clear the line
            self.open_line = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: int = 1
) -> None:
    """The figures on stdout; the last ``numeric`` columns (the figures) right-aligned."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for index, column in enumerate(columns):
        table.add_column(column, justify="right" if index >= len(columns) - numeric else "left")
    for row in rows:
        table.add_row(*row)
    Console(markup=False, highlight=False).print(table)
