"""``dpsynth budget``: create a ledger dataset with its caps, show spends, verify the chain."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from dpsynth.cli._app import (
    BUDGET_OPTIONS,
    _fail,
    budget_app,
    out,
)
from dpsynth.errors import DpsynthError


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
