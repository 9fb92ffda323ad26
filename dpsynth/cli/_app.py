"""The typer application, its consoles, and how errors become messages and exit codes."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator

import typer
from rich.console import Console

from dpsynth.errors import DpsynthError, UsageError
from dpsynth.steps import Steps, open_log

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Differentially private synthetic tables with a budget ledger, privacy attacks and a release gate.",
)
schema_app = typer.Typer(no_args_is_help=True, help="Write and check table schemas.")
budget_app = typer.Typer(no_args_is_help=True, help="The privacy-budget ledger.")
app.add_typer(schema_app, name="schema")
app.add_typer(budget_app, name="budget")
keys_app = typer.Typer(no_args_is_help=True, help="Ed25519 identities of operators and approvers.")
app.add_typer(keys_app, name="keys")

err = Console(stderr=True)
out = Console()


RELEASE_OPTIONS = {
    "holdout_fraction": "--holdout-fraction",
    "rows": "--rows",
    "seed": "--seed",
    "tier": "--tier",
    "dataset_id": "--dataset",
    "out": "--out",
    "epsilon": "--epsilon",
    "delta": "--delta",
    "operator": "--as",
    "policy": "--policy",
    "engine": "--engine",
    "sql": "--sql",
    "privacy_unit": "--privacy-unit",
    "max_rows_per_unit": "--max-rows-per-unit",
    "panel_time": "--panel-time",
    "spark_master": "--spark-master",
}
BUDGET_OPTIONS = {"epsilon_cap": "--epsilon", "delta_cap": "--delta"}
DISCOVER_OPTIONS = {"epsilon": "--epsilon", "delta": "--delta"}


def _fail(exc: DpsynthError, options: dict[str, str] | None = None) -> None:
    """Print one message (never a traceback) and exit with the error's code.

    With ``options`` (library parameter -> CLI option), a message about a
    parameter speaks of the option the user typed instead; any other
    parameter of a release is a generator's, set with ``--param NAME=VALUE``.
    """
    label = {3: "refused", 4: "over budget", 6: "verification failed"}.get(exc.exit_code, "error")
    message = str(exc)
    fallback = f"--param {exc.parameter}" if options is RELEASE_OPTIONS else None
    option = options.get(exc.parameter, fallback) if options is not None and exc.parameter else None
    if option is not None:
        message = re.sub(rf"^(\w+ )?parameter '{re.escape(exc.parameter)}'", f"option {option}", message, count=1)
        message = message.replace(" or None, got ", ", got ", 1)  # an option left out is the None
        if exc.parameter == "out":
            message = re.sub(r"^out directory", "--out", message, count=1)
    err.print(f"[bold red]{label}:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _parse_params(items: list[str]) -> dict:
    params: dict = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--param {item!r} must look like name=value")
        key, value = item.split("=", 1)
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


LOG_JSON_HELP = "Write one JSON event per step to this file (appended; - for stderr): docs/logging.md."
QUIET_HELP = "No progress display on the terminal (the final lines only)."


@contextlib.contextmanager
def command_steps(command: str, log_json: str | None, quiet: bool) -> Iterator[Steps]:
    """The command's step recorder: a progress display on a terminal stderr (unless ``quiet`` or the log
    goes to stderr), the ``--log-json`` events; its ``done`` event carries the command's exit code."""
    try:
        log, owned = open_log(log_json)
    except DpsynthError as exc:
        _fail(exc, {"log_json": "--log-json"})
    display = None if quiet or log_json == "-" else err
    try:
        with Steps(log=log, console=display, command=command, owns_terminal=True) as steps:
            yield steps
    finally:
        if owned and log is not None:
            log.close()
