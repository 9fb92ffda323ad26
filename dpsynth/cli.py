"""The ``dpsynth`` command line.

Exit codes (stable; pipelines script against them):
0 released / passed / verified, 1 other error, 2 usage or bad input, 3 refused by the gate,
4 over budget, 5 awaiting approval (the gate passed; the policy requires a reviewer:
``dpsynth approve`` / ``reject``), 6 verification failed (``dpsynth verify``).
A user mistake prints one clear message, never a traceback.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dpsynth.errors import DpsynthError, UsageError

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
) -> None:
    """Draft a schema: from the data as is ("source": "private-data"), or with DP (--epsilon; "source": "dp")."""
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
                f"{', '.join(dp_only)} only apply to DP discovery: add --epsilon E (and --delta, --ledger, --dataset)"
            )
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
            )
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
    ledger: str = typer.Argument(..., help="Ledger file (SQLite; created if absent) or postgresql:// URL."),
    dataset: str = typer.Option(..., "--dataset", help="Source dataset id."),
    epsilon: float = typer.Option(..., "--epsilon", help="Epsilon cap for this dataset."),
    delta: float = typer.Option(..., "--delta", help="Delta cap for this dataset."),
    roles_prefix: str | None = typer.Option(
        None, "--roles-prefix", help="PostgreSQL: prefix of the admin/operator/approver roles (default dpsynth)."
    ),
) -> None:
    """Create a ledger (or add a dataset to one) with its budget caps."""
    from dpsynth.privacy.ledger import init_ledger

    try:
        opened = init_ledger(ledger, dataset, epsilon, delta, roles_prefix=roles_prefix)
    except DpsynthError as exc:
        _fail(exc, BUDGET_OPTIONS)
    out.print(
        f"ledger {opened.location}: dataset {dataset!r} capped at epsilon={epsilon:g}, delta={delta:g}", highlight=False
    )


@budget_app.command("show")
def budget_show(
    ledger: str = typer.Argument(..., help="Ledger file or postgresql:// URL."),
    dataset: str | None = typer.Option(None, "--dataset", help="Only this dataset."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Spent and remaining budget per dataset, with every entry."""
    from dpsynth.privacy.ledger import open_ledger

    try:
        summaries = open_ledger(ledger).summary(dataset)
    except DpsynthError as exc:
        _fail(exc)
    if as_json:
        out.print_json(json.dumps([s.to_dict() for s in summaries]))
        return
    for s in summaries:
        out.print(
            f"[bold]{s.dataset_id}[/]: spent epsilon = {s.spent_epsilon:.4f} (composed by {s.accountant}; "
            f"naive sum {s.naive_sum_epsilon:.4f}) of cap {s.epsilon_cap:g}; remaining {s.remaining_epsilon:.4f}; "
            f"delta spent {s.spent_delta:.3g} of cap {s.delta_cap:g}",
            highlight=False,
        )
        table = Table("id", "time (UTC)", "generator", "epsilon", "delta", "status", "hash")
        table.columns[1].no_wrap, table.columns[1].min_width = True, 19
        table.columns[5].no_wrap, table.columns[5].min_width = True, 17  # awaiting-approval, approved...
        for e in s.entries:
            table.add_row(
                str(e.id),
                e.created_at[:19].replace("T", " "),
                e.generator or e.mechanism,
                f"{e.epsilon:.4f}",
                f"{e.delta:.3g}",
                e.state,
                e.hash[:12],
            )
        out.print(table)


@budget_app.command("verify")
def budget_verify(
    ledger: str = typer.Argument(..., help="Ledger file or postgresql:// URL."),
    expected_head: str | None = typer.Option(None, help="Head hash recorded elsewhere (e.g. in a manifest)."),
) -> None:
    """Check the hash chain: detects edited, deleted or reordered entries."""
    from dpsynth.errors import LedgerError
    from dpsynth.privacy.ledger import open_ledger

    try:
        opened = open_ledger(ledger)
        result = opened.verify(expected_head=expected_head)
        if not result.ok:
            raise LedgerError(f"ledger {opened.location} FAILED verification:\n  " + "\n  ".join(result.problems))
    except DpsynthError as exc:
        _fail(exc)
    out.print(
        f"ledger {opened.location} verified: {result.entries} entries, head hash {result.head_hash}", highlight=False
    )


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
    ledger: str = typer.Option(..., "--ledger", help="Budget ledger file or postgresql:// URL (dpsynth budget init)."),
    dataset: str = typer.Option(..., "--dataset", help="Source dataset id in the ledger."),
    out_dir: Path = typer.Option(..., "--out", help="Release directory to create (must not exist)."),
    holdout_fraction: float = typer.Option(
        0.2, "--holdout-fraction", help="Share of rows kept out of fitting, as the audit baseline."
    ),
    policy: Path | None = typer.Option(None, "--policy", help="Gate policy TOML (default: the shipped policy)."),
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
        )
        with err.status("starting release") as status:
            outcome = run_release(request, progress=lambda message: status.update(message))
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
        f"epsilon {m['budget']['remaining_epsilon']:.4f} left. Report: {out_dir}/report.html",
        highlight=False,
    )


# -- identities, approval, verification ------------------------------------------------------
KEYS_DIR_HELP = "Key directory (default $DPSYNTH_KEYS or ~/.config/dpsynth/keys)."
TRUSTED_HELP = "Directory of NAME.pub: the operator's signature must be by their trusted key."


@keys_app.command("new")
def keys_new(
    name: str = typer.Argument(..., help="Identity name (e.g. the person's login)."),
    key_dir: Path | None = typer.Option(None, "--dir", help=KEYS_DIR_HELP),
) -> None:
    """Create an Ed25519 key pair: NAME.key (mode 0600) and NAME.pub (share it with verifiers)."""
    from dpsynth.evidence.keys import default_key_dir, new_key

    try:
        identity = new_key(name, key_dir)
    except DpsynthError as exc:
        _fail(exc)
    directory = key_dir or default_key_dir()
    out.print(
        f"key {name}: id {identity.key_id[:16]} (sha256 of the public key {identity.key_id}); private "
        f"{directory / (name + '.key')} (0600), public {directory / (name + '.pub')}",
        highlight=False,
    )


@keys_app.command("export")
def keys_export(
    name: str = typer.Argument(..., help="Identity name."),
    key_dir: Path | None = typer.Option(None, "--dir", help=KEYS_DIR_HELP),
) -> None:
    """Print NAME's public key (PEM), for a verifier's --trusted-keys directory (save it as NAME.pub)."""
    from dpsynth.evidence.keys import default_key_dir, export_public, load_public

    try:
        path = (key_dir or default_key_dir()) / f"{name}.pub"
        if not path.is_file():
            raise UsageError(f"no public key {path}: create it with `dpsynth keys new {name}`")
        public = load_public(path)
    except DpsynthError as exc:
        _fail(exc)
    sys.stdout.write(export_public(public).decode())


def _decide(
    release_dir: Path,
    ledger: str,
    name: str,
    reason: str,
    keys_dir: Path | None,
    trusted_keys: Path | None,
    decision: str,
) -> None:
    from dpsynth.evidence.approval import decide
    from dpsynth.evidence.keys import load_identity
    from dpsynth.evidence.keys import trusted_keys as load_trusted
    from dpsynth.privacy.ledger import open_ledger

    try:
        approver = load_identity(name, keys_dir)
        trusted = load_trusted(trusted_keys) if trusted_keys is not None else None
        result = decide(release_dir, open_ledger(ledger), approver, decision, reason, trusted=trusted)
    except DpsynthError as exc:
        _fail(exc, {"approver": "--as", "reason": "--reason", "ledger": "--ledger"})
    out.print(
        f"{decision.upper()} {release_dir} by {result.by} (key {approver.key_id[:16]}): ledger entry "
        f"{result.ledger_entry_id} on spend {result.entry_id}, {len(result.files)} file hash(es) recorded; "
        "the budget stays spent",
        highlight=False,
    )


@app.command("approve")
def approve(
    release_dir: Path = typer.Argument(..., help="Release directory awaiting approval."),
    ledger: str = typer.Option(..., "--ledger", help="The ledger the release was spent from."),
    name: str = typer.Option(..., "--as", help="Approver (not the operator); signs with this key."),
    reason: str = typer.Option("", "--reason", help="Why (recorded in the ledger and signed)."),
    keys_dir: Path | None = typer.Option(None, "--keys-dir", help=KEYS_DIR_HELP),
    trusted_keys: Path | None = typer.Option(None, "--trusted-keys", help=TRUSTED_HELP),
) -> None:
    """Approve a release: a decision record in the ledger plus the approver's signature over the bundle."""
    _decide(release_dir, ledger, name, reason, keys_dir, trusted_keys, "approved")


@app.command("reject")
def reject(
    release_dir: Path = typer.Argument(..., help="Release directory awaiting approval."),
    ledger: str = typer.Option(..., "--ledger", help="The ledger the release was spent from."),
    name: str = typer.Option(..., "--as", help="Reviewer (not the operator); signs with this key."),
    reason: str = typer.Option(..., "--reason", help="Why the release is rejected (required)."),
    keys_dir: Path | None = typer.Option(None, "--keys-dir", help=KEYS_DIR_HELP),
    trusted_keys: Path | None = typer.Option(None, "--trusted-keys", help=TRUSTED_HELP),
) -> None:
    """Reject a release: recorded and signed like an approval; the budget stays spent."""
    _decide(release_dir, ledger, name, reason, keys_dir, trusted_keys, "rejected")


@app.command("verify")
def verify(
    release_dir: Path = typer.Argument(..., help="Signed release directory."),
    ledger: str | None = typer.Option(
        None, "--ledger", help="Also check the spend, the approval and the chain in this ledger."
    ),
    trusted_keys: Path | None = typer.Option(
        None, "--trusted-keys", help="Directory of NAME.pub: every signer must be one of them."
    ),
) -> None:
    """Check every file's size and sha256, every signature, and (with --ledger) the ledger: exit 0, or 6."""
    from dpsynth.evidence.keys import trusted_keys as load_trusted
    from dpsynth.evidence.verify import verify_release
    from dpsynth.privacy.ledger import open_ledger

    try:
        trusted = load_trusted(trusted_keys) if trusted_keys is not None else None
        report = verify_release(release_dir, open_ledger(ledger) if ledger is not None else None, trusted)
    except DpsynthError as exc:
        _fail(exc)
    caveats = []
    if not report.ledger_checked:
        caveats.append("ledger not checked (add --ledger)")
    if trusted is None:
        caveats.append("signers not checked against trusted keys (add --trusted-keys)")
    out.print(
        f"[bold green]VERIFIED[/] {release_dir}: {report.files} files, status {report.status}, signed by "
        + ", ".join(report.signatures)
        + ("; " + "; ".join(caveats) if caveats else ""),
        highlight=False,
    )


# -- audit ---------------------------------------------------------------------------------
@app.command("audit")
def audit(
    train: Path = typer.Option(..., "--train", help="Records the generator was fitted on (CSV)."),
    holdout: Path = typer.Option(..., "--holdout", help="Records it never saw, same population (CSV)."),
    synthetic: Path = typer.Option(..., "--synthetic", help="The synthetic table to audit (CSV, any tool)."),
    schema: Path = typer.Option(..., "--schema", help="Schema JSON for the three tables."),
    out_dir: Path = typer.Option(..., "--out", help="Directory for audit.json and report.html."),
    policy: Path | None = typer.Option(None, "--policy", help="Gate policy TOML (default: the shipped policy)."),
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
