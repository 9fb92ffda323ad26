"""``dpsynth schema``: draft a schema (as is, or with DP discovery) and check one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from dpsynth.cli._app import (
    DISCOVER_OPTIONS,
    LOG_JSON_HELP,
    QUIET_HELP,
    _fail,
    command_steps,
    err,
    out,
    schema_app,
)
from dpsynth.errors import DpsynthError, UsageError
from dpsynth.steps import Steps


# -- schema ------------------------------------------------------------------------------
def _names(items: list[str]) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: column lists may be repeated or comma-separated."""
    return [n.strip() for item in items for n in item.split(",") if n.strip()]


def _ranges(items: list[str]) -> dict[str, tuple[float, float]]:
    ranges: dict[str, tuple[float, float]] = {}
    for item in items:
        name, sep, span = item.rpartition("=")
        low, colon, high = span.partition(":")
        try:
            if not sep or not colon or not name.strip():
                raise ValueError
            ranges[name.strip()] = (float(low), float(high))
        except ValueError:
            raise UsageError(f"--range {item!r} must look like COLUMN=LOW:HIGH, e.g. age=0:120") from None
    return ranges


@schema_app.command("draft")
def schema_draft(
    data: Path = typer.Argument(..., help="CSV file to draft a schema from (the private table)."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the draft schema JSON."),
    name: str = typer.Option("", help="Name recorded in the schema."),
    bins: int = typer.Option(10, min=1, help="Bins per numeric column."),
    na_value: list[str] = typer.Option([], "--na-value", help="Extra token meaning null, e.g. N (repeatable)."),
    epsilon: float | None = typer.Option(
        None,
        "--epsilon",
        help="Learn the domain with DP, spending this epsilon "
        "(recorded in --ledger). Without it the draft reads the data as is.",
    ),
    delta: float | None = typer.Option(None, "--delta", help="Delta of the DP discovery (category sets need it)."),
    ledger: str | None = typer.Option(
        None, "--ledger", help="Budget ledger (file or postgresql:// URL) the DP discovery spends from."
    ),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset id in the ledger."),
    numeric: list[str] = typer.Option(
        [], "--numeric", help="DP: real-valued numeric columns (comma-separated, repeatable)."
    ),
    integer: list[str] = typer.Option(
        [], "--integer", help="DP: whole-number numeric columns (comma-separated, repeatable)."
    ),
    nullable: list[str] = typer.Option(
        [], "--nullable", help="DP: columns that may be null (comma-separated, repeatable)."
    ),
    drop: list[str] = typer.Option([], "--drop", help="DP: columns to leave out of the schema (comma-separated)."),
    value_range: list[str] = typer.Option(
        [],
        "--range",
        help="DP: public outer range of a numeric column, "
        "COLUMN=LOW:HIGH (repeatable); default candidates span powers of ten.",
    ),
    edges: str = typer.Option("quantiles", "--edges", help="DP: bin edges at DP quantiles or equal-width."),
    target: str | None = typer.Option(None, "--target", help="DP: the column a downstream model predicts."),
    log_json: str | None = typer.Option(None, "--log-json", metavar="PATH", help=LOG_JSON_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Draft a schema: from the data as is ("source": "private-data"), or with DP (--epsilon; "source": "dp")."""
    with command_steps("schema draft", log_json, quiet) as steps:
        if epsilon is not None:
            _schema_draft_dp(
                data,
                output,
                name,
                bins,
                na_value,
                epsilon,
                delta,
                ledger,
                dataset,
                numeric,
                integer,
                nullable,
                drop,
                value_range,
                edges,
                target,
                steps,
            )
            return
        import pandas as pd

        from dpsynth.errors import DataError
        from dpsynth.schema import draft_schema

        try:
            dp_only = [
                flag
                for flag, given in (
                    ("--delta", delta),
                    ("--ledger", ledger),
                    ("--dataset", dataset),
                    ("--numeric", numeric),
                    ("--integer", integer),
                    ("--nullable", nullable),
                    ("--drop", drop),
                    ("--range", value_range),
                    ("--target", target),
                )
                if given
            ]
            if dp_only:
                raise UsageError(
                    f"{', '.join(dp_only)} only apply to DP discovery: "
                    "add --epsilon E (and --delta, --ledger, --dataset)"
                )
            if not data.exists():
                raise DataError(f"data file not found: {data}")
            with steps.step("read") as read_step:
                try:
                    table = pd.read_csv(data, dtype=str, keep_default_na=False, na_values=["", *na_value])
                except pd.errors.EmptyDataError:
                    raise DataError(f"{data} is empty: expected a CSV file with a header row and data rows") from None
                read_step.rows = len(table)
            if len(table) == 0:
                raise DataError(f"{data} has no data rows")
            with steps.step("draft", rows=len(table)):
                schema = draft_schema(table, name=name or data.stem, bins=bins)
            if na_value:
                schema = replace(schema, na_values=tuple(dict.fromkeys([*schema.na_values, *na_value])))
            schema.save(output)
        except DpsynthError as exc:
            _fail(exc)
        err.print(
            f'wrote {output}: {len(schema)} columns, marked [bold]"source": "private-data"[/]. Replace every '
            'domain read from the data with public knowledge and set "source": "public", or fitting will be '
            "refused (unless --accept-private-schema). To learn the domain with DP instead, add --epsilon.",
            highlight=False,
        )


def _schema_draft_dp(
    data: Path,
    output: Path,
    name: str,
    bins: int,
    na_value: list[str],
    epsilon: float,
    delta: float | None,
    ledger_path: str | None,
    dataset: str | None,
    numeric: list[str],
    integer: list[str],
    nullable: list[str],
    drop: list[str],
    value_range: list[str],
    edges: str,
    target: str | None,
    steps: Steps,
) -> None:
    """DP domain discovery (dpsynth.dp_draft): plan from the header, check, reserve, then run the mechanisms."""
    from dpsynth.dp_draft import DraftRequest, draft_dp_schema

    try:
        missing = [
            flag
            for flag, given in (("--delta", delta), ("--ledger", ledger_path), ("--dataset", dataset))
            if given is None
        ]
        if missing:
            raise UsageError(
                f"DP discovery (--epsilon) also needs {', '.join(missing)}: the spend is recorded in "
                "the ledger like a release, and the category sets need a delta"
            )
        done = draft_dp_schema(
            DraftRequest(
                data=data,
                output=output,
                epsilon=epsilon,
                delta=delta,
                ledger=ledger_path,
                dataset_id=dataset,
                name=name,
                bins=bins,
                na_values=tuple(na_value),
                numeric=_names(numeric),
                integer=_names(integer),
                nullable=_names(nullable),
                drop=_names(drop),
                ranges=_ranges(value_range),
                edges=edges,
                target=target,
            ),
            steps=steps,
        )
    except DpsynthError as exc:
        _fail(exc, DISCOVER_OPTIONS)
    cost, budget = done.plan.cost, done.budget
    err.print(
        f'wrote {output}: {len(done.schema)} columns, marked [bold]"source": "dp"[/]; fitting accepts it '
        "without any flag.",
        highlight=False,
    )
    out.print(
        f"spent epsilon={cost.epsilon:.4g}, delta={cost.delta:.3g} ({cost.accountant}) on "
        f"dataset {dataset!r} (ledger entry {done.entry.id}); composed total epsilon={budget.spent_epsilon:.4f} "
        f"of cap {budget.epsilon_cap:g}, remaining {budget.remaining_epsilon:.4f}",
        highlight=False,
    )


@schema_app.command("check")
def schema_check(
    schema_path: Path = typer.Argument(..., help="Schema JSON file."),
    data: Path | None = typer.Option(None, help="Also check that this CSV matches the schema."),
) -> None:
    """Validate a schema (and optionally a CSV against it)."""
    from dpsynth.engines import read_table
    from dpsynth.schema import Schema

    try:
        schema = Schema.load(schema_path)
        message = f"{schema_path}: {len(schema)} columns, source {schema.source}"
        if data is not None:
            report = read_table(data, schema).report  # the release's reader: same errors, same counts
            message += f"; {data} conforms ({report.total_changed} value(s) clipped or mapped to 'other')"
    except DpsynthError as exc:
        _fail(exc)
    out.print(message, highlight=False)
