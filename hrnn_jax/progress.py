"""Progress of long work (training epochs, evaluations): a live display on a terminal, plain lines
otherwise.

``reporter = Reporter(sys.stderr)`` is a callable ``reporter(label, done, total)``, the
``progress`` callback of ``training.fit`` (``"epoch 3/10"``, once per call of the compiled step)
and of ``evaluation.rank_chunks`` (``"evaluation"``, once per chunk); ``hrnn_jax.compare`` puts the
model's name in front (``"gru epoch 3/10"``, ``"gru evaluation"``). Every new label is a task.

* On a terminal (``stream.isatty()``, and ``TERM`` is not ``dumb``): a live ``rich.progress``
  display, one bar per task with done/total, elapsed time and ETA. A finished task's bar stays
  until the next task starts. Lines written with :meth:`Reporter.log` appear above the bars.
* Otherwise: plain lines, at most four per task and no carriage returns: one when the task ends
  (``gru epoch 3/10: 100% in 2.1 s``) and, for a task that has run for ``plain_after`` seconds,
  one at each of 25%, 50% and 75% with its ETA.

The callback only counts: it never touches an array, so it adds no host sync to an epoch. As work
is dispatched asynchronously, ``done`` counts dispatched calls; the last one of an epoch may
still be running when the bar reaches 100%.

A task is timed from the reporter's previous event (a progress call of any task, a
:meth:`Reporter.log` line, or the reporter's start), so that an epoch's time includes its first,
compiling call, which comes before the epoch's first progress call.

``Reporter(stream, enabled=False)`` (the CLI's ``--quiet``) writes nothing at all.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import TextIO

MILESTONES = (0.25, 0.5, 0.75)


def is_terminal(stream) -> bool:
    """Whether ``stream`` is an interactive terminal that can show a live display."""
    isatty = getattr(stream, "isatty", None)
    try:
        tty = bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # a closed stream
        return False
    return tty and os.environ.get("TERM", "") != "dumb"


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    return f"{m}:{s:02d}" if m < 60 else f"{m // 60}:{m % 60:02d}:{s:02d}"


@dataclasses.dataclass
class _Task:
    start: float
    done: int = 0
    total: int = 0
    milestone: int = 0  # milestones already printed (plain lines)
    rich_id: object = None

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.done >= self.total


class Reporter:
    """``reporter(label, done, total)``: progress of the task ``label`` (see the module's doc).

    stream: where to write (default: the current ``sys.stderr``).
    enabled: False writes nothing (neither progress nor :meth:`log` lines).
    terminal: force the live display (True) or plain lines (False); default
      :func:`is_terminal` of ``stream``.
    plain_after: seconds a task must have run before plain mode reports its 25/50/75% milestones.

    Use it as a context manager (or call :meth:`close`) so that the live display is stopped.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True,
                 terminal: bool | None = None, plain_after: float = 10.0):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.terminal = enabled and (is_terminal(self.stream) if terminal is None else terminal)
        self.plain_after = plain_after
        self._tasks: dict[str, _Task] = {}
        self._live = None  # the rich Progress while it is started
        self._console = None
        self._clock = time.monotonic
        self._last = self._clock()
        if self.terminal:
            from rich.console import Console

            self._console = Console(file=self.stream, force_terminal=True)

    # -- the callback ------------------------------------------------------------------------
    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = self._clock()
        task = self._tasks.get(label)
        if task is None or task.finished or done < task.done:  # a new (or a repeated) task
            task = self._new_task(label, total)
        task.done, task.total = int(done), int(total)
        if self.terminal:
            self._live.update(task.rich_id, completed=task.done, total=task.total,
                              refresh=task.finished)
        else:
            self._plain(label, task, now)
        self._last = now

    def log(self, message: str) -> None:
        """Write one line (above the live display on a terminal); nothing when disabled."""
        if not self.enabled:
            return
        if self._console is not None:
            self._console.print(message, markup=False, highlight=False, emoji=False,
                                soft_wrap=True)
            self._console.file.flush()
        else:
            print(message, file=self.stream, flush=True)
        self._last = self._clock()

    def close(self) -> None:
        """Stop the live display (its last state stays on the screen)."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._tasks.clear()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------
    def _new_task(self, label: str, total: int) -> _Task:
        task = _Task(start=self._last)
        if self.terminal:
            live = self._start_live()
            for old_label, old in list(self._tasks.items()):  # finished bars make way
                if old.finished:
                    live.remove_task(old.rich_id)
                    del self._tasks[old_label]
            task.rich_id = live.add_task(_escape(label), total=total)
            for t in live.tasks:  # time the task from the previous event (see the module doc)
                if t.id == task.rich_id:
                    t.start_time = task.start
        self._tasks.pop(label, None)
        self._tasks[label] = task
        return task

    def _start_live(self):
        if self._live is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            redirect = self.stream is sys.stderr or self.stream is sys.__stderr__
            self._live = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("eta"), _eta_column(),
                console=self._console, refresh_per_second=4,
                get_time=self._clock, redirect_stdout=False, redirect_stderr=redirect)
            self._live.start()
        return self._live

    def _plain(self, label: str, task: _Task, now: float) -> None:
        elapsed = now - task.start
        if task.finished:
            print(f"{label}: 100% in {_seconds(elapsed)}", file=self.stream, flush=True)
            return
        if task.total <= 0 or elapsed < self.plain_after:
            return
        frac = task.done / task.total
        reached = sum(frac >= m for m in MILESTONES)
        if reached > task.milestone:
            task.milestone = reached
            eta = elapsed / max(task.done, 1) * (task.total - task.done)
            print(f"{label}: {int(frac * 100)}% ({task.done}/{task.total}), "
                  f"{_seconds(elapsed)} elapsed, ETA {_seconds(eta)}", file=self.stream,
                  flush=True)


def _eta_column():
    """Time remaining as h:mm:ss: rich's estimate from the recent rate, or, while it has too few
    samples (the first call of a task), the task's average time per call so far."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Eta(ProgressColumn):
        def render(self, task) -> Text:
            left = task.time_remaining
            if left is None and task.completed and task.total and task.elapsed is not None:
                left = task.elapsed / task.completed * max(task.total - task.completed, 0)
            if task.finished:
                left = 0.0
            if left is None:
                return Text("-:--:--", style="progress.remaining")
            m, sec = divmod(int(left), 60)
            return Text(f"{m // 60}:{m % 60:02d}:{sec:02d}", style="progress.remaining")

    return Eta()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def tagged(progress, prefix: str, suffix: str = ""):
    """``progress`` with every label wrapped as ``f"{prefix} {label}{suffix}"`` (None stays)."""
    if progress is None:
        return None

    def report(label: str, done: int, total: int) -> None:
        progress(f"{prefix} {label}{suffix}", done, total)

    return report
