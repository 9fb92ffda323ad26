"""``dpsynth benchmark``: generators x epsilons x repeats, charged to the ledger, one report (docs/benchmark.md)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import typer

from dpsynth.cli._app import _fail, _parse_params, app, err, out
from dpsynth.errors import DpsynthError, UsageError

BENCHMARK_OPTIONS = {
    "holdout_fraction": "--holdout-fraction",
    "repeats": "--repeats",
    "timeout": "--timeout",
    "rows": "--rows",
    "seed": "--seed",
    "tier": "--tier",
    "out": "--out",
    "epsilon": "--epsilons",
    "delta": "--delta",
}


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{option} must be comma-separated numbers, got {text!r}") from None


def _names(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def _generator_params(items: list[str]) -> dict[str, dict]:
    """``["dpctgan:epochs=2", "mst:max_cells=1000"]`` -> ``{"dpctgan": {"epochs": 2}, "mst": {...}}``."""
    params: dict[str, dict] = {}
    for item in items:
        generator, sep, assignment = item.partition(":")
        if not sep or not generator.strip():
            raise UsageError(f"--param {item!r} must look like GENERATOR:name=value")
        params.setdefault(generator.strip(), {}).update(_parse_params([assignment]))
    return params


def _reproduce_command(data: Path, options: dict[str, object]) -> list[str]:
    """The command line that reproduces this run, every option spelled out (defaults included)."""
    words = ["dpsynth", "benchmark", str(data)]
    for option, value in options.items():
        if value is None or value is False or value == []:
            continue
        if value is True:
            words.append(option)
        elif isinstance(value, list):
            for item in value:
                words += [option, str(item)]
        else:
            words += [option, str(value)]
    return words


def _pdf_renderer() -> Callable[[Path, Path], Path]:
    """The release report's PDF printer (headless Chromium); a missing browser is a UsageError now, before any spend."""
    from dpsynth.report.browser import find_browser, html_to_pdf

    find_browser()
    return lambda html_path, pdf_path: html_to_pdf(html_path.read_text(encoding="utf-8"), pdf_path)


@app.command("benchmark")
def benchmark(
    data: Path = typer.Argument(..., help="The table (CSV): private, or a public stand-in with --public-proxy."),
    schema: Path = typer.Option(..., "--schema", help="Public schema JSON (its 'rules' are checked)."),
    generators: str = typer.Option("mst,aim", "--generators", help="Comma-separated: mst, aim, dpctgan, dpvae."),
    epsilons: str = typer.Option("1", "--epsilons", help="Comma-separated epsilons, one run each per generator."),
    repeats: int = typer.Option(1, "--repeats", help="Runs per generator x epsilon (intervals over repeats)."),
    ledger: str | None = typer.Option(None, "--ledger", help="Budget ledger charged for every fit."),
    dataset: str | None = typer.Option(None, "--dataset", help="Source dataset id in the ledger."),
    out_dir: Path = typer.Option(..., "--out", help="Directory for results.json and report.html (new or empty)."),
    delta: float | None = typer.Option(None, "--delta", help="Delta per run (default min(1e-6, delta cap / 10))."),
    public_proxy: bool = typer.Option(
        False, "--public-proxy", help="DATA is a public stand-in table: charge nothing, no ledger needed."
    ),
    holdout_fraction: float = typer.Option(0.2, "--holdout-fraction", help="Rows kept out of every fit."),
    seed: int | None = typer.Option(None, "--seed", help="Fix the split and every run's randomness."),
    target: str | None = typer.Option(None, "--target", help="Column for TSTR (default: the schema's target)."),
    columns: str | None = typer.Option(None, "--columns", help="Comma-separated subset of the schema's columns."),
    param: list[str] = typer.Option([], "--param", help="Generator parameter GENERATOR:name=value (repeatable)."),
    tier: str = typer.Option("quick", "--tier", help="Audit tier per run: quick, thorough or none."),
    policy: Path | None = typer.Option(None, "--policy", help="Policy TOML a recommendation must pass."),
    timeout: float = typer.Option(3600, "--timeout", help="Seconds per run before its worker is killed."),
    rows: int | None = typer.Option(None, "--rows", help="Synthetic rows per run (default: the DP estimate)."),
    peer: str | None = typer.Option(
        None, "--peer", help="Comma-separated peers from their own venv: smartnoise-mst, smartnoise-aim, ..."
    ),
    yes: bool = typer.Option(False, "--yes", help="Spend the grid's budget without asking (required in scripts)."),
    pdf: bool = typer.Option(False, "--pdf", help="Also write report.pdf (headless chromium)."),
    accept_private_schema: bool = typer.Option(False, "--accept-private-schema", help="See dpsynth release."),
) -> None:
    """Fit every generator at every epsilon, score utility, risk, cost and consistency; recommend per epsilon.

    Every fit on a private table is charged to the ledger like a release; the composed total is shown first and
    must fit the cap (exit 4 otherwise). A crashed or timed-out run is a row of the results, not the end.
    """
    from dpsynth.benchmarking.grid import BenchmarkRequest, plan_benchmark, run_benchmark

    try:
        render_pdf = _pdf_renderer() if pdf else None
        request = BenchmarkRequest(
            data=data,
            schema=schema,
            generators=_names(generators),
            epsilons=_floats(epsilons, "--epsilons"),
            out=out_dir,
            repeats=repeats,
            ledger=ledger,
            dataset_id=dataset,
            delta=delta,
            public_proxy=public_proxy,
            holdout_fraction=holdout_fraction,
            seed=seed,
            target=target,
            columns=_names(columns) or None,
            params=_generator_params(param),
            tier=None if tier == "none" else tier,
            policy=policy,
            timeout=timeout,
            rows=rows,
            peers=_names(peer),
            accept_private_schema=accept_private_schema,
            command=_reproduce_command(
                data,
                {
                    "--schema": schema,
                    "--generators": generators,
                    "--epsilons": epsilons,
                    "--repeats": repeats,
                    "--ledger": ledger,
                    "--dataset": dataset,
                    "--out": out_dir,
                    "--delta": delta,
                    "--public-proxy": public_proxy,
                    "--holdout-fraction": holdout_fraction,
                    "--seed": seed,
                    "--target": target,
                    "--columns": columns,
                    "--param": param,
                    "--tier": tier,
                    "--policy": policy,
                    "--timeout": timeout,
                    "--rows": rows,
                    "--peer": peer,
                    "--accept-private-schema": accept_private_schema,
                },
            ),
        )
        with err.status("planning the grid"):
            plan = plan_benchmark(request)
        for line in plan.summary_lines():
            err.print(line, highlight=False, soft_wrap=True)
        for skipped in plan.skipped_peers:
            err.print(f"[yellow]peer {skipped['peer']}[/]: {skipped['message']}", highlight=False)
        if plan.charged and not yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    f"the benchmark spends epsilon={plan.grid_composed:.4g} from dataset {dataset!r}: "
                    "pass --yes to confirm in a script"
                )
            if not typer.confirm(f"Spend epsilon={plan.grid_composed:.4g} (composed) on {dataset!r}?"):
                err.print("nothing spent")
                raise typer.Exit(1)
        with err.status("benchmark") as status:
            results = run_benchmark(plan, progress=lambda message: status.update(message), render_pdf=render_pdf)
    except DpsynthError as exc:
        _fail(exc, BENCHMARK_OPTIONS)
    bad = [r for r in results["runs"] if r["status"] != "ok"]
    for rec in results["recommendations"]:
        out.print(f"epsilon {rec['epsilon']:g}: {rec['generator'] or 'no generator passed'}", highlight=False)
    out.print(
        f"{len(results['runs']) - len(bad)} of {len(results['runs'])} run(s) ok"
        + (f" ({', '.join(r['run_id'] + ': ' + r['status'] for r in bad)})" if bad else "")
        + f". Report: {out_dir}/report.html, results: {out_dir}/results.json",
        highlight=False,
        soft_wrap=True,
    )
