"""Steps of a long command: a live progress line on a terminal, one JSON event per step for orchestrators.

A command (``dpsynth release``, ``dpsynth audit``, ``dpsynth schema draft``)
opens one :class:`Steps` recorder and wraps each stage in
``with steps.step("fit", rows=n): ...``. Code deep inside a stage (an AIM
round, a DP-SGD epoch, an audit test) reports sub-steps to whichever recorder
has a step open, found with :func:`current_steps`, so the library API needs no
extra parameter and stays silent without a recorder (the default is a no-op).

What a recorder does with a step:

* on a terminal (``console.is_terminal``), a rich progress line per open
  step, its sub-step as ``fit · aim_round 12`` or ``fit · epoch 3/10``, and a
  persistent line per finished top-level step; on anything else (a pipe, a
  file, a test runner) it prints nothing, so scripts see only the command's
  final lines;
* with a log stream (``--log-json PATH``, ``-`` for stderr), one JSON object
  per line, flushed as it is written (an orchestrator can tail it); see
  docs/logging.md for the events and their fields.

The log is internal, like ``manifest.json``: it holds exact row counts and
timings, never a value or a row of the data. A failed step records only the
exception's class (``"error": "DataError"``), never its message, because
messages about bad input quote the offending value. Extra fields are JSON
scalars set by dpsynth's own code (generator, tier, table role), never read
from the data.

Only the command's steps and their direct sub-steps are reported
(``max_depth`` 2): a generator refitted inside an audit test (shadow models,
canaries) is timed as part of that test, not as hundreds of rounds.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

LOG_FORMAT = "dpsynth-steps/1"
Scalar = str | int | float | bool | None


def peak_memory_bytes() -> int | None:
    """The process's peak resident set size so far, in bytes (``getrusage(RUSAGE_SELF).ru_maxrss``).

    A high-water mark since the process started, not the step's own use;
    child processes are not included. ``None`` where the ``resource`` module
    does not exist (Windows). Linux reports KiB, macOS bytes.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


_RESERVED = frozenset(
    {
        "event",
        "run",
        "time",
        "name",
        "parent",
        "index",
        "total",
        "rows",
        "seconds",
        "peak_memory_bytes",
        "status",
        "error",
    }
)


def _check_fields(fields: dict[str, Any]) -> dict[str, Scalar]:
    for key, value in fields.items():
        if key in _RESERVED:
            raise TypeError(f"step field {key!r} is one of the event's own fields")
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise TypeError(f"step field {key!r} must be a JSON scalar, got {type(value).__name__}")
    return fields


@dataclass
class Step:
    """One open step; ``rows`` and :meth:`set` may be filled in while it runs (rows known after reading)."""

    name: str
    parent: str | None
    depth: int
    rows: int | None = None
    index: int | None = None
    total: int | None = None
    fields: dict[str, Scalar] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    task: Any = None  # the display's task id, for top-level steps on a terminal
    note: str = ""  # what the last sub-step said (AIM: the share of the budget spent), shown on the terminal

    def set(self, **fields: Scalar) -> None:
        """Add fields to the step's event (JSON scalars chosen by the caller's code, never data values)."""
        self.fields.update(_check_fields(fields))

    def label(self) -> str:
        if self.index is None:
            return self.name
        return f"{self.name} {self.index}" + (f"/{self.total}" if self.total is not None else "")


class Steps:
    """Records a command's steps: a live display on a terminal console, JSON lines on ``log``.

    ``Steps()`` with neither is a silent recorder (timings only); a console that
    is not a terminal shows nothing. Use it as a context manager, or call
    :meth:`close`, so the display stops and the log gets its ``done`` event.
    """

    def __init__(
        self,
        log: IO[str] | None = None,
        console: Console | None = None,
        command: str | None = None,
        max_depth: int = 2,
        owns_terminal: bool = False,
    ) -> None:
        self.log = log
        self.console = console if console is not None and console.is_terminal else None
        self._owns_terminal = owns_terminal
        self.command = command
        self.max_depth = max_depth
        self.run_id = uuid.uuid4().hex[:16]
        self.started = time.perf_counter()
        self.closed = False
        self._stack: list[Step] = []
        self._hidden = 0  # open steps nested below max_depth (timed by their parent only)
        self._token: Token | None = None
        self._progress: Any = None
        self._emit({"event": "run", "format": LOG_FORMAT, "command": command, "pid": os.getpid()})

    # -- the step API ------------------------------------------------------------------------
    @property
    def owns_terminal(self) -> bool:
        """Whether generators must not draw their own progress bars: this recorder shows the progress, or a
        command said so (``owns_terminal=True``: the CLI, quiet or not, prints only its own lines)."""
        return self.console is not None or self._owns_terminal

    @contextlib.contextmanager
    def step(
        self, name: str, rows: int | None = None, index: int | None = None, total: int | None = None, **fields: Scalar
    ) -> Iterator[Step]:
        """Time the block as step ``name``; an exception escaping it is logged as ``"status": "error"``."""
        opened = self.begin(name, rows=rows, index=index, total=total, **fields)
        try:
            yield opened
        except BaseException as exc:
            self.end(opened, error=type(exc).__name__)
            raise
        self.end(opened)

    def begin(
        self, name: str, rows: int | None = None, index: int | None = None, total: int | None = None, **fields: Scalar
    ) -> Step:
        """Open a step (for callers that cannot use :meth:`step`, e.g. start / end callbacks); :meth:`end` closes it."""
        depth = len(self._stack) + self._hidden + 1
        if depth > self.max_depth:
            self._hidden += 1
            return Step(name, parent=None, depth=depth)
        parent = self._stack[-1] if self._stack else None
        opened = Step(
            name, parent.name if parent else None, depth, rows, index, total, _check_fields(fields), time.perf_counter()
        )
        if not self._stack:
            self._token = _CURRENT.set(self)
        self._stack.append(opened)
        self._emit({"event": "start", "name": name, "parent": opened.parent, "index": index, "total": total})
        self._show_start(opened)
        return opened

    def end(self, opened: Step, error: str | None = None, status: str | None = None) -> None:
        """Close ``opened``: ``error`` is an exception class name (the step failed); ``status`` overrides."""
        if opened.depth > self.max_depth:
            self._hidden = max(0, self._hidden - 1)
            return
        if opened in self._stack:  # close anything left open inside it (a callback that never ended)
            while self._stack and self._stack[-1] is not opened:
                self._finish(self._stack.pop(), "error", error or "Abandoned")
            self._stack.pop()
        self._finish(opened, status or ("error" if error else "ok"), error)
        if not self._stack and self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None

    def record(
        self,
        name: str,
        seconds: float,
        rows: int | None = None,
        index: int | None = None,
        total: int | None = None,
        **fields: Scalar,
    ) -> None:
        """Log a sub-step that has already finished in ``seconds`` (a loop reporting each iteration at its end)."""
        depth = len(self._stack) + self._hidden + 1
        if depth > self.max_depth:
            return
        parent = self._stack[-1] if self._stack else None
        done = Step(name, parent.name if parent else None, depth, rows, index, total, _check_fields(fields))
        done.started = time.perf_counter() - seconds
        self._finish(done, "ok", None)

    @contextlib.contextmanager
    def silenced(self) -> Iterator[None]:
        """Report nothing from the block: :func:`current_steps` returns the no-op recorder inside it."""
        token = _CURRENT.set(None)
        try:
            yield
        finally:
            _CURRENT.reset(token)

    def audit_callback(self) -> Callable[[Any], None]:
        """An ``on_test`` callback for :func:`audits.run`: each attack becomes a sub-step of the open step.

        The audits package does not import dpsynth; it calls back with an
        :class:`audits.runner.AttackEvent` (phase ``start`` / ``end``, status
        ``ok`` / ``error`` / ``not_run``, the error's class name).
        """
        open_steps: dict[str, Step] = {}

        def on_test(event: Any) -> None:
            if event.phase == "start":
                open_steps[event.name] = self.begin(event.name, index=event.index + 1, total=event.total)
            elif event.name in open_steps:
                status = {"ok": "ok", "not_run": "skipped"}.get(event.status, "error")
                self.end(open_steps.pop(event.name), error=event.error, status=status)

        return on_test

    # -- closing -----------------------------------------------------------------------------
    def close(self, exit_code: int | None = None, error: str | None = None) -> None:
        """Stop the display and write the ``done`` event (once)."""
        if self.closed:
            return
        self.closed = True
        while self._stack:
            self.end(self._stack[-1], error=error or "Abandoned")
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        event: dict[str, Any] = {"event": "done", "command": self.command, "exit_code": exit_code}
        if error:
            event["error"] = error
        self._emit(
            {**event, "seconds": round(time.perf_counter() - self.started, 4), "peak_memory_bytes": peak_memory_bytes()}
        )

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exit_code=0 if exc is None else _exit_code(exc), error=_error_name(exc))

    # -- output ------------------------------------------------------------------------------
    def _finish(self, done: Step, status: str, error: str | None) -> None:
        seconds = time.perf_counter() - done.started
        event: dict[str, Any] = {
            "event": "step",
            "name": done.name,
            "parent": done.parent,
            "index": done.index,
            "total": done.total,
            "rows": None if done.rows is None else int(done.rows),
            "seconds": round(seconds, 4),
            "peak_memory_bytes": peak_memory_bytes(),
            "status": status,
        }
        if error:
            event["error"] = error
        self._emit({**event, **done.fields})
        self._show_end(done, status, seconds)

    def _emit(self, event: dict[str, Any]) -> None:
        if self.log is None:
            return
        line = json.dumps({"event": event.pop("event"), "run": self.run_id, "time": _now(), **event}, default=str)
        try:
            self.log.write(line + "\n")
            self.log.flush()
        except (OSError, ValueError) as exc:  # a full disk or a closed pipe must not abort a release mid-way
            self.log = None
            print(f"warning: the step log stopped ({type(exc).__name__}); the command goes on", file=sys.stderr)

    def _show_start(self, opened: Step) -> None:
        if self.console is None:
            return
        if self._progress is None:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        if opened.depth == 1:
            opened.task = self._progress.add_task(_describe(opened), total=None)
        else:
            top = self._stack[0]
            note = f" ({top.note})" if top.note else ""
            self._progress.update(top.task, description=f"{_describe(top)} · {opened.label()}{note}")

    def _show_end(self, done: Step, status: str, seconds: float) -> None:
        if self.console is None or self._progress is None:
            return
        if done.depth == 1 and done.task is not None:
            self._progress.remove_task(done.task)
            mark = "[green]✓[/]" if status == "ok" else "[red]✗[/]"
            rows = f", {done.rows:,} rows" if done.rows is not None else ""
            self._progress.console.print(f"{mark} {_describe(done)} ({seconds:.1f} s{rows})", highlight=False)
            if not self._progress.tasks:  # live only while a step runs: the command's own lines print clean
                self._progress.stop()
                self._progress = None
        elif self._stack and self._stack[0].task is not None:
            top = self._stack[0]
            used = done.fields.get("budget_used")
            top.note = f"{used:.0%} of the budget spent" if isinstance(used, float) else ""
            note = f" ({top.note})" if top.note else ""
            self._progress.update(top.task, description=f"{_describe(top)} · {done.label()} done{note}")


def _describe(step: Step) -> str:
    detail = [str(v) for k, v in step.fields.items() if k in ("generator", "tier", "table") and v is not None]
    return step.name + (f" ({', '.join(detail)})" if detail else "")


def _exit_code(exc: BaseException) -> int | None:
    if isinstance(exc, KeyboardInterrupt):
        return 130  # what dpsynth.cli.main exits with
    code = getattr(exc, "exit_code", getattr(exc, "code", None))
    return code if isinstance(code, int) else 1


def _error_name(exc: BaseException | None) -> str | None:
    if exc is None or type(exc).__name__ in ("Exit", "SystemExit"):  # typer's / sys.exit: the exit code says it
        return None
    return type(exc).__name__


class NullSteps(Steps):
    """A recorder that records nothing and keeps no state (safe to share between threads)."""

    def __init__(self) -> None:
        super().__init__()

    @contextlib.contextmanager
    def step(self, name: str, rows: int | None = None, index: int | None = None, total: int | None = None, **fields):
        yield Step(name, parent=None, depth=1, rows=rows, index=index, total=total)

    def begin(self, name: str, rows: int | None = None, index: int | None = None, total: int | None = None, **fields):
        return Step(name, parent=None, depth=1, rows=rows, index=index, total=total)

    def end(self, opened: Step, error: str | None = None, status: str | None = None) -> None:
        return None

    def record(self, name: str, seconds: float, rows=None, index=None, total=None, **fields) -> None:
        return None

    def close(self, exit_code: int | None = None, error: str | None = None) -> None:
        return None


NO_STEPS: Steps = NullSteps()
"""The silent recorder: what :func:`current_steps` returns when no step is open, and the library's default."""

_CURRENT: ContextVar[Steps | None] = ContextVar("dpsynth_steps", default=None)


def current_steps() -> Steps:
    """The recorder that has a step open in this context, or the silent :data:`NO_STEPS`."""
    return _CURRENT.get() or NO_STEPS


def open_log(target: str | None) -> tuple[IO[str] | None, bool]:
    """``(stream, owned)`` for ``--log-json``: ``-`` is stderr, a path is opened for appending, line-buffered.

    Appending lets several commands share one log; each run's events carry
    its own ``run`` id. A log whose directory does not exist is refused
    (``UsageError`` naming the option).
    """
    from dpsynth.errors import UsageError

    if target is None:
        return None, False
    if target == "-":
        return sys.stderr, False
    path = os.path.abspath(os.path.expanduser(target))
    if not os.path.isdir(os.path.dirname(path)):
        raise UsageError(f"--log-json {target}: directory {os.path.dirname(path)} does not exist", parameter="log_json")
    if os.path.isdir(path):
        raise UsageError(f"--log-json {target} is a directory: give a file path (or - for stderr)")
    return open(path, "a", encoding="utf-8", buffering=1), True


__all__ = ["LOG_FORMAT", "NO_STEPS", "NullSteps", "Step", "Steps", "current_steps", "open_log", "peak_memory_bytes"]
