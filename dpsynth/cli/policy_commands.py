"""``dpsynth policy list`` and ``dpsynth policy show``: the shipped policy profiles, for reviewers."""

from __future__ import annotations

import typer

from dpsynth.cli._app import _fail, app, out
from dpsynth.errors import DpsynthError

policy_app = typer.Typer(no_args_is_help=True, help="The shipped policy profiles (--policy NAME).")
app.add_typer(policy_app, name="policy")


@policy_app.command("list")
def policy_list() -> None:
    """Each shipped profile: name, title, and its release rules."""
    from dpsynth.profiles import load_policy, profile_names

    for name in profile_names():
        loaded = load_policy(name)
        rules = loaded.rules
        out.print(f"[bold]{name}[/]: {loaded.profile['title'] if loaded.profile else ''}", highlight=False)
        out.print(
            f"    epsilon <= {rules.max_epsilon:g} per release; delta * n <= {rules.max_delta_n:g}; "
            f"tier {loaded.policy.tier} (at least {rules.required_tier}); "
            f"approval {'required' if rules.approval_required else 'not required'}",
            highlight=False,
            soft_wrap=True,
        )
    out.print(
        "Show one with `dpsynth policy show NAME`. Each is an aid to the reviewer, not legal advice.", soft_wrap=True
    )


@policy_app.command("show")
def policy_show(name: str = typer.Argument(..., help="A shipped profile name (`dpsynth policy list`).")) -> None:
    """Print a shipped profile's TOML, comments included (save it to start a policy of your own)."""
    from dpsynth.profiles import load_policy, profile_path

    try:
        path = profile_path(name)
        load_policy(name)  # a shipped profile always validates; a test checks it, this keeps the promise visible
    except DpsynthError as exc:
        _fail(exc)
    typer.echo(path.read_text(encoding="utf-8"), nl=False)
