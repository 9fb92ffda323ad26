"""The ``dpsynth`` command line.

Exit codes (stable; pipelines script against them):
0 released / passed, 1 other error, 2 usage or bad input, 3 refused by the gate,
4 over budget. A user mistake prints one clear message, never a traceback.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from dpsynth.errors import DpsynthError, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Differentially private synthetic tables with a budget ledger, privacy attacks and a release gate.")
schema_app = typer.Typer(no_args_is_help=True, help="Write and check table schemas.")
budget_app = typer.Typer(no_args_is_help=True, help="The privacy-budget ledger.")
app.add_typer(schema_app, name="schema")
app.add_typer(budget_app, name="budget")

err = Console(stderr=True)
out = Console()


RELEASE_OPTIONS = {"holdout_fraction": "--holdout-fraction", "rows": "--rows", "seed": "--seed", "tier": "--tier",
                   "dataset_id": "--dataset", "out": "--out", "epsilon": "--epsilon", "delta": "--delta"}
BUDGET_OPTIONS = {"epsilon_cap": "--epsilon", "delta_cap": "--delta"}
DISCOVER_OPTIONS = {"epsilon": "--epsilon", "delta": "--delta"}


def _fail(exc: DpsynthError, options: dict[str, str] | None = None) -> None:
    """Print one message (never a traceback) and exit with the error's code.

    With ``options`` (library parameter -> CLI option), a message about a
    parameter speaks of the option the user typed instead; any other
    parameter of a release is a generator's, set with ``--param NAME=VALUE``.
    """
    label = {3: "refused", 4: "over budget"}.get(exc.exit_code, "error")
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
    epsilon: Optional[float] = typer.Option(None, "--epsilon", help="Learn the domain with DP, spending this epsilon "
                                            "(recorded in --ledger). Without it the draft reads the data as is."),
    delta: Optional[float] = typer.Option(None, "--delta", help="Delta of the DP discovery (category sets need it)."),
    ledger: Optional[Path] = typer.Option(None, "--ledger", help="Budget ledger the DP discovery spends from."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset id in the ledger."),
    numeric: list[str] = typer.Option([], "--numeric", help="DP: real-valued numeric columns (comma-separated, repeatable)."),
    integer: list[str] = typer.Option([], "--integer", help="DP: whole-number numeric columns (comma-separated, repeatable)."),
    nullable: list[str] = typer.Option([], "--nullable", help="DP: columns that may be null (comma-separated, repeatable)."),
    drop: list[str] = typer.Option([], "--drop", help="DP: columns to leave out of the schema (comma-separated)."),
    value_range: list[str] = typer.Option([], "--range", help="DP: public outer range of a numeric column, "
                                          "COLUMN=LOW:HIGH (repeatable); default candidates span powers of ten."),
    edges: str = typer.Option("quantiles", "--edges", help="DP: bin edges at DP quantiles or equal-width."),
    target: Optional[str] = typer.Option(None, "--target", help="DP: the column a downstream model predicts."),
) -> None:
    """Draft a schema: from the data as is ("source": "private-data"), or with DP (--epsilon; "source": "dp")."""
    if epsilon is not None:
        _schema_draft_dp(data, output, name, bins, na_value, epsilon, delta, ledger, dataset, numeric, integer,
                         nullable, drop, value_range, edges, target)
        return
    import pandas as pd

    from dpsynth.errors import DataError
    from dpsynth.schema import draft_schema

    try:
        dp_only = [flag for flag, given in (("--delta", delta), ("--ledger", ledger), ("--dataset", dataset),
                                            ("--numeric", numeric), ("--integer", integer), ("--nullable", nullable),
                                            ("--drop", drop), ("--range", value_range), ("--target", target))
                   if given]
        if dp_only:
            raise UsageError(f"{', '.join(dp_only)} only apply to DP discovery: add --epsilon E (and --delta, "
                             "--ledger, --dataset)")
        if not data.exists():
            raise DataError(f"data file not found: {data}")
        try:
            table = pd.read_csv(data, dtype=str, keep_default_na=False, na_values=["", *na_value])
        except pd.errors.EmptyDataError:
            raise DataError(f"{data} is empty: expected a CSV file with a header row and data rows") from None
        if len(table) == 0:
            raise DataError(f"{data} has no data rows")
        schema = draft_schema(table, name=name or data.stem, bins=bins)
        if na_value:
            schema = replace(schema, na_values=tuple(dict.fromkeys([*schema.na_values, *na_value])))
        schema.save(output)
    except DpsynthError as exc:
        _fail(exc)
    err.print(f"wrote {output}: {len(schema)} columns, marked [bold]\"source\": \"private-data\"[/]. Replace every "
              "domain read from the data with public knowledge and set \"source\": \"public\", or fitting will be "
              "refused (unless --accept-private-schema). To learn the domain with DP instead, add --epsilon.",
              highlight=False)


def _schema_draft_dp(data: Path, output: Path, name: str, bins: int, na_value: list[str], epsilon: float,
                     delta: Optional[float], ledger_path: Optional[Path], dataset: Optional[str], numeric: list[str],
                     integer: list[str], nullable: list[str], drop: list[str], value_range: list[str], edges: str,
                     target: Optional[str]) -> None:
    """DP domain discovery: plan from the header, validate, reserve in the ledger, then run the mechanisms."""
    import pandas as pd

    from dpsynth.discovery import check_table, plan_discovery, run_discovery
    from dpsynth.release import check_delta_cap
    from dpsynth.errors import DataError
    from dpsynth.privacy.ledger import Ledger
    from dpsynth.schema import DEFAULT_NA_VALUES
    from dpsynth.synthesizers.base import check_privacy_parameters

    try:
        missing = [flag for flag, given in (("--delta", delta), ("--ledger", ledger_path), ("--dataset", dataset))
                   if given is None]
        if missing:
            raise UsageError(f"DP discovery (--epsilon) also needs {', '.join(missing)}: the spend is recorded in "
                             "the ledger like a release, and the category sets need a delta")
        if not data.exists():
            raise DataError(f"data file not found: {data}")
        if not output.parent.is_dir():
            raise UsageError(f"-o {output}: directory {output.parent} does not exist")
        if target is not None and target in _names(drop):
            raise UsageError(f"--target {target!r} is also in --drop")
        ledger = Ledger(ledger_path)
        ledger.require_dataset(dataset)
        try:
            table = pd.read_csv(data, dtype=str, keep_default_na=False, skipinitialspace=True)
        except pd.errors.EmptyDataError:
            raise DataError(f"{data} is empty: expected a CSV file with a header row and data rows") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"{data} could not be parsed as CSV: {exc}") from None
        if target is not None and target not in [str(c).strip() for c in table.columns]:
            raise UsageError(f"--target {target!r} is not a column of {data}")
        # the plan depends only on the header and the options (all public)
        plan = plan_discovery([str(c) for c in table.columns], epsilon, delta, numeric=_names(numeric),
                              integer=_names(integer), nullable=_names(nullable), drop=_names(drop),
                              ranges=_ranges(value_range), bins=bins, edges=edges,
                              na_values=tuple(dict.fromkeys([*DEFAULT_NA_VALUES, *na_value])))
        # refuse malformed input before spending (like `dpsynth release`); nothing here is written out
        check_table(table, plan, source=str(data))
        check_privacy_parameters(epsilon, delta, len(table))
        check_delta_cap(ledger.caps(dataset)[1], len(table), dataset)
        entry = ledger.reserve(dataset, plan.cost, purpose=f"schema discovery for {data} -> {output}",
                               generator="schema-discovery", parameters={"epsilon": epsilon, "delta": delta,
                                                                         **plan.cost.details})
        try:
            schema = run_discovery(table, plan, name=name or data.stem, target=target)
            schema.save(output)
        except BaseException:
            ledger.mark(entry.id, "failed")
            raise
        ledger.mark(entry.id, "released")
        budget = ledger.summary(dataset)[0]
    except DpsynthError as exc:
        _fail(exc, DISCOVER_OPTIONS)
    err.print(f"wrote {output}: {len(schema)} columns, marked [bold]\"source\": \"dp\"[/]; fitting accepts it "
              "without any flag.", highlight=False)
    out.print(f"spent epsilon={plan.cost.epsilon:.4g}, delta={plan.cost.delta:.3g} ({plan.cost.accountant}) on "
              f"dataset {dataset!r} (ledger entry {entry.id}); composed total epsilon={budget.spent_epsilon:.4f} of "
              f"cap {budget.epsilon_cap:g}, remaining {budget.remaining_epsilon:.4f}", highlight=False)


@schema_app.command("check")
def schema_check(
    schema_path: Path = typer.Argument(..., help="Schema JSON file."),
    data: Optional[Path] = typer.Option(None, help="Also check that this CSV matches the schema."),
) -> None:
    """Validate a schema (and optionally a CSV against it)."""
    from dpsynth.schema import Schema
    from dpsynth.tables import prepare, read_csv

    try:
        schema = Schema.load(schema_path)
        message = f"{schema_path}: {len(schema)} columns, source {schema.source}"
        if data is not None:
            _, report = prepare(read_csv(data, schema), schema, source=str(data))
            message += f"; {data} conforms ({report.total_changed} value(s) clipped or mapped to 'other')"
    except DpsynthError as exc:
        _fail(exc)
    out.print(message, highlight=False)


# -- budget ------------------------------------------------------------------------------
@budget_app.command("init")
def budget_init(
    ledger: Path = typer.Argument(..., help="Ledger file (SQLite); created if absent."),
    dataset: str = typer.Option(..., "--dataset", help="Source dataset id."),
    epsilon: float = typer.Option(..., "--epsilon", help="Epsilon cap for this dataset."),
    delta: float = typer.Option(..., "--delta", help="Delta cap for this dataset."),
) -> None:
    """Create a ledger (or add a dataset to one) with its budget caps."""
    from dpsynth.privacy.ledger import init_ledger

    try:
        init_ledger(ledger, dataset, epsilon, delta)
    except DpsynthError as exc:
        _fail(exc, BUDGET_OPTIONS)
    out.print(f"ledger {ledger}: dataset {dataset!r} capped at epsilon={epsilon:g}, delta={delta:g}", highlight=False)


@budget_app.command("show")
def budget_show(
    ledger: Path = typer.Argument(..., help="Ledger file."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Only this dataset."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Spent and remaining budget per dataset, with every entry."""
    from dpsynth.privacy.ledger import Ledger

    try:
        summaries = Ledger(ledger).summary(dataset)
    except DpsynthError as exc:
        _fail(exc)
    if as_json:
        out.print_json(json.dumps([s.to_dict() for s in summaries]))
        return
    for s in summaries:
        out.print(f"[bold]{s.dataset_id}[/]: spent epsilon = {s.spent_epsilon:.4f} (composed by {s.accountant}; "
                  f"naive sum {s.naive_sum_epsilon:.4f}) of cap {s.epsilon_cap:g}; remaining {s.remaining_epsilon:.4f}; "
                  f"delta spent {s.spent_delta:.3g} of cap {s.delta_cap:g}", highlight=False)
        table = Table("id", "time (UTC)", "generator", "epsilon", "delta", "status", "hash")
        table.columns[1].no_wrap, table.columns[1].min_width = True, 19
        for e in s.entries:
            table.add_row(str(e.id), e.created_at[:19].replace("T", " "), e.generator or e.mechanism, f"{e.epsilon:.4f}", f"{e.delta:.3g}",
                          e.status, e.hash[:12])
        out.print(table)


@budget_app.command("verify")
def budget_verify(
    ledger: Path = typer.Argument(..., help="Ledger file."),
    expected_head: Optional[str] = typer.Option(None, help="Head hash recorded elsewhere (e.g. in a manifest)."),
) -> None:
    """Check the hash chain: detects edited, deleted or reordered entries."""
    from dpsynth.errors import LedgerError
    from dpsynth.privacy.ledger import Ledger

    try:
        result = Ledger(ledger).verify(expected_head=expected_head)
        if not result.ok:
            raise LedgerError(f"ledger {ledger} FAILED verification:\n  " + "\n  ".join(result.problems))
    except DpsynthError as exc:
        _fail(exc)
    out.print(f"ledger {ledger} verified: {result.entries} entries, head hash {result.head_hash}", highlight=False)


# -- demo data -----------------------------------------------------------------------------
@app.command("demo-data")
def demo_data(
    name: str = typer.Argument("randhie", help="Demo dataset (randhie: RAND Health Insurance Experiment)."),
    out_dir: Path = typer.Argument(Path("demo"), help="Directory to write NAME.csv and NAME.schema.json into."),
) -> None:
    """Export a real public demo table (shipped by statsmodels) and its hand-written public schema."""
    from dpsynth.demo import export_demo

    try:
        csv_path, schema_path = export_demo(name, out_dir)
    except DpsynthError as exc:
        _fail(exc)
    out.print(f"wrote {csv_path} and {schema_path}", highlight=False)


# -- release -------------------------------------------------------------------------------
@app.command("release")
def release(
    data: Path = typer.Argument(..., help="The private table (CSV)."),
    schema: Path = typer.Option(..., "--schema", help="Public schema JSON."),
    generator: str = typer.Option("mst", "--generator", help="mst, aim, dpctgan or dpvae."),
    epsilon: float = typer.Option(..., "--epsilon", help="Epsilon this release may spend."),
    delta: float = typer.Option(..., "--delta", help="Delta this release may spend (well below 1/rows)."),
    ledger: Path = typer.Option(..., "--ledger", help="Budget ledger (dpsynth budget init)."),
    dataset: str = typer.Option(..., "--dataset", help="Source dataset id in the ledger."),
    out_dir: Path = typer.Option(..., "--out", help="Release directory to create (must not exist)."),
    holdout_fraction: float = typer.Option(0.2, "--holdout-fraction", help="Share of rows kept out of fitting, as the audit baseline."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Gate policy TOML (default: the shipped policy)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Fix all randomness (noise included) for reproducibility."),
    rows: Optional[int] = typer.Option(None, "--rows", help="Synthetic rows, a public number (default: the generator's DP estimate of the training rows)."),
    tier: Optional[str] = typer.Option(None, "--tier", help="Audit tier: quick or thorough (default: the policy's)."),
    accept_private_schema: bool = typer.Option(False, "--accept-private-schema", help="Fit with a schema drafted from the data (the domain leaks)."),
    param: list[str] = typer.Option([], "--param", help="Generator parameter name=value (repeatable)."),
) -> None:
    """Budget check, fit, sample, audit, gate: release the synthetic table or refuse, saying why."""
    from dpsynth.release import ReleaseRequest, run_release

    if seed is not None:
        err.print("[yellow]note:[/] --seed makes the privacy noise reproducible by anyone who knows the seed, and "
                  "the manifest records it. Use it for tests and demos; omit it for a real release.", highlight=False)
    try:
        request = ReleaseRequest(data=data, schema=schema, generator=generator, epsilon=epsilon, delta=delta,
                                 ledger=ledger, dataset_id=dataset, out=out_dir, holdout_fraction=holdout_fraction,
                                 policy=policy, seed=seed, rows=rows, accept_private_schema=accept_private_schema,
                                 generator_params=_parse_params(param), tier=tier)
        with err.status("starting release") as status:
            outcome = run_release(request, progress=lambda message: status.update(message))
    except DpsynthError as exc:
        _fail(exc, RELEASE_OPTIONS)
    m = outcome.manifest
    out.print(f"[bold green]RELEASED[/] {out_dir}/synthetic.csv ({m['rows']['synthetic']} rows); "
              f"epsilon={m['privacy']['epsilon']:.4f}, delta={m['privacy']['delta']:.3g}; dataset {dataset!r} has "
              f"epsilon {m['budget']['remaining_epsilon']:.4f} left. Report: {out_dir}/report.html", highlight=False)


# -- audit ---------------------------------------------------------------------------------
@app.command("audit")
def audit(
    train: Path = typer.Option(..., "--train", help="Records the generator was fitted on (CSV)."),
    holdout: Path = typer.Option(..., "--holdout", help="Records it never saw, same population (CSV)."),
    synthetic: Path = typer.Option(..., "--synthetic", help="The synthetic table to audit (CSV, any tool)."),
    schema: Path = typer.Option(..., "--schema", help="Schema JSON for the three tables."),
    out_dir: Path = typer.Option(..., "--out", help="Directory for audit.json and report.html."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Gate policy TOML (default: the shipped policy)."),
    tier: str = typer.Option("quick", "--tier", help="quick (thorough needs a generator: use dpsynth release)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the attacks' sampling."),
) -> None:
    """Attack any synthetic table; exit 0 when the policy passes, 3 when it refuses."""
    from dpsynth.auditing import run_audit

    try:
        decision, failures = run_audit(train, holdout, synthetic, schema, out_dir, policy, tier, seed)
    except DpsynthError as exc:
        _fail(exc)
    if decision == "PASS":
        out.print(f"[bold green]PASS[/]: {out_dir}/audit.json, {out_dir}/report.html", highlight=False)
        return
    err.print("[bold red]FAIL[/]: " + "; ".join(failures) + f". See {out_dir}/report.html", highlight=False)
    raise typer.Exit(3)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
