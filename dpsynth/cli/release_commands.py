"""``dpsynth demo-data``, ``dpsynth release`` and ``dpsynth audit``."""

from __future__ import annotations

from pathlib import Path

import typer

from dpsynth.cli._app import (
    LOG_JSON_HELP,
    QUIET_HELP,
    RELEASE_OPTIONS,
    _fail,
    _parse_params,
    app,
    command_steps,
    err,
    out,
)
from dpsynth.errors import DpsynthError


# -- demo data -----------------------------------------------------------------------------
@app.command("demo-data")
def demo_data(
    name: str = typer.Argument(
        "randhie",
        help="Demo dataset: randhie (RAND Health Insurance Experiment) or wage_panel (NLSY, needs linearmodels).",
    ),
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
    data: str | None = typer.Argument(
        None,
        help="The private table: a CSV or Parquet file, or duckdb:PATH?table=NAME (with --sql: duckdb:PATH, or none).",
    ),
    schema: Path = typer.Option(..., "--schema", help="Public schema JSON."),
    generator: str = typer.Option("mst", "--generator", help="mst, aim, dpctgan or dpvae."),
    epsilon: float = typer.Option(..., "--epsilon", help="Epsilon this release may spend."),
    delta: float = typer.Option(..., "--delta", help="Delta this release may spend (well below 1/rows)."),
    ledger: str = typer.Option(..., "--ledger", help="Budget ledger file or postgresql:// URL (dpsynth budget init)."),
    dataset: str = typer.Option(..., "--dataset", help="Source dataset id in the ledger."),
    out_dir: Path = typer.Option(..., "--out", help="Release directory to create (must not exist)."),
    holdout_fraction: float = typer.Option(
        0.2, "--holdout-fraction", help="Share of rows kept out of fitting, as the audit baseline."
    ),
    policy: str | None = typer.Option(
        None,
        "--policy",
        help="A policy profile (`dpsynth policy list`) or a gate policy TOML (default: the shipped gate).",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Fix all randomness (noise included) for reproducibility."),
    rows: int | None = typer.Option(
        None,
        "--rows",
        help="Synthetic rows, a public number (default: the generator's DP estimate of the training rows).",
    ),
    tier: str | None = typer.Option(None, "--tier", help="Audit tier: quick or thorough (default: the policy's)."),
    accept_private_schema: bool = typer.Option(
        False, "--accept-private-schema", help="Fit with a schema drafted from the data (the domain leaks)."
    ),
    param: list[str] = typer.Option([], "--param", help="Generator parameter name=value (repeatable)."),
    operator: str | None = typer.Option(
        None,
        "--as",
        help="Operator running the release; signs bundle.json "
        "with this key (default: the OS user's; `dpsynth keys new NAME`).",
    ),
    keys_dir: Path | None = typer.Option(
        None, "--keys-dir", help="Key directory (default $DPSYNTH_KEYS or ~/.config/dpsynth/keys)."
    ),
    engine: str | None = typer.Option(
        None,
        "--engine",
        help="How the table is read and encoded: duckdb (the default when installed), pandas, or spark "
        "(Parquet on a Spark cluster; docs/spark.md).",
    ),
    spark_master: str | None = typer.Option(
        None,
        "--spark-master",
        help="--engine spark's master: local[N] (default local[2]), local[*] or spark://HOST:PORT.",
    ),
    sql: str | None = typer.Option(
        None, "--sql", help="SELECT query giving the private table, run by DuckDB (in the database DATA names)."
    ),
    privacy_unit: str | None = typer.Option(
        None,
        "--privacy-unit",
        metavar="COLUMN",
        help="Person identifier column: protect a person (all their rows), not a row. Never modelled or released.",
    ),
    max_rows_per_unit: int | None = typer.Option(
        None,
        "--max-rows-per-unit",
        metavar="K",
        help="Public bound on one person's rows (with --privacy-unit); extra rows are dropped at random.",
    ),
    panel_time: str | None = typer.Option(
        None,
        "--panel-time",
        metavar="COLUMN",
        help="Balanced panel's time column (with --privacy-unit): fit one row per person, K = number of times.",
    ),
    pdf: bool = typer.Option(
        False, "--pdf", help="Also write report.pdf (headless Chromium, Debian package chromium), signed with the rest."
    ),
    log_json: str | None = typer.Option(None, "--log-json", metavar="PATH", help=LOG_JSON_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Budget check, fit, sample, audit, gate: release the synthetic table or refuse, saying why.

    Exit 5 when the policy requires approval and the gate passed: the release awaits `dpsynth approve`.
    """
    import getpass

    from dpsynth.errors import EXIT_AWAITING_APPROVAL
    from dpsynth.release import ReleaseRequest, run_release

    if seed is not None:
        err.print(
            "[yellow]note:[/] --seed makes the privacy noise reproducible by anyone who knows the seed, and "
            "the manifest records it. Use it for tests and demos; omit it for a real release.",
            highlight=False,
        )
    with command_steps("release", log_json, quiet) as steps:
        try:
            request = ReleaseRequest(
                data=data,
                schema=schema,
                generator=generator,
                epsilon=epsilon,
                delta=delta,
                ledger=ledger,
                dataset_id=dataset,
                out=out_dir,
                holdout_fraction=holdout_fraction,
                policy=policy,
                seed=seed,
                rows=rows,
                accept_private_schema=accept_private_schema,
                generator_params=_parse_params(param),
                tier=tier,
                operator=operator or getpass.getuser(),
                keys_dir=keys_dir,
                pdf=pdf,
                engine=engine,
                sql=sql,
                privacy_unit=privacy_unit,
                max_rows_per_unit=max_rows_per_unit,
                panel_time=panel_time,
                spark_master=spark_master,
            )
            outcome = run_release(request, steps=steps)
        except DpsynthError as exc:
            _fail(exc, RELEASE_OPTIONS)
        m = outcome.manifest
        if outcome.awaiting_approval:
            out.print(
                f"[bold yellow]AWAITING APPROVAL[/] {out_dir}: the gate passed; the policy requires a reviewer "
                f"other than {m['approval']['operator']!r}: `dpsynth approve {out_dir} --ledger {ledger} --as NAME`. "
                f"epsilon={m['privacy']['epsilon']:.4f} is spent whatever the decision.",
                highlight=False,
            )
            raise typer.Exit(EXIT_AWAITING_APPROVAL)
        out.print(
            f"[bold green]RELEASED[/] {out_dir}/synthetic.csv ({m['rows']['synthetic']} rows); "
            f"epsilon={m['privacy']['epsilon']:.4f}, delta={m['privacy']['delta']:.3g}; dataset {dataset!r} has "
            f"epsilon {m['budget']['remaining_epsilon']:.4f} left. Report: {out_dir}/report.html"
            + (f" and {out_dir}/report.pdf" if pdf else ""),
            highlight=False,
        )


# -- identities, approval, verification ------------------------------------------------------
@app.command("audit")
def audit(
    train: Path = typer.Option(..., "--train", help="Records the generator was fitted on (CSV)."),
    holdout: Path = typer.Option(..., "--holdout", help="Records it never saw, same population (CSV)."),
    synthetic: Path = typer.Option(..., "--synthetic", help="The synthetic table to audit (CSV, any tool)."),
    schema: Path = typer.Option(..., "--schema", help="Schema JSON for the three tables."),
    out_dir: Path = typer.Option(..., "--out", help="Directory for audit.json and report.html."),
    policy: str | None = typer.Option(
        None,
        "--policy",
        help="A policy profile (`dpsynth policy list`) or a gate policy TOML (default: the shipped gate).",
    ),
    tier: str = typer.Option("quick", "--tier", help="quick (thorough needs a generator: use dpsynth release)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the attacks' sampling."),
    engine: str | None = typer.Option(
        None, "--engine", help="How the tables are read: duckdb (the default when installed) or pandas."
    ),
    privacy_unit: str | None = typer.Option(
        None,
        "--privacy-unit",
        metavar="COLUMN",
        help="Person identifier column of train and holdout: audit persons (all their rows), not rows.",
    ),
    log_json: str | None = typer.Option(None, "--log-json", metavar="PATH", help=LOG_JSON_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Attack any synthetic table; exit 0 when the policy passes, 3 when it refuses."""
    from dpsynth.auditing import run_audit

    with command_steps("audit", log_json, quiet) as steps:
        try:
            decision, failures = run_audit(
                train,
                holdout,
                synthetic,
                schema,
                out_dir,
                policy,
                tier,
                seed,
                steps=steps,
                engine=engine,
                privacy_unit=privacy_unit,
            )
        except DpsynthError as exc:
            _fail(exc)
        if decision == "PASS":
            out.print(f"[bold green]PASS[/]: {out_dir}/audit.json, {out_dir}/report.html", highlight=False)
            return
        err.print("[bold red]FAIL[/]: " + "; ".join(failures) + f". See {out_dir}/report.html", highlight=False)
        raise typer.Exit(3)
