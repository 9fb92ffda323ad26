"""Declared parameter constraints: one checker, one wording, the parameter named."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpsynth.errors import UsageError
from dpsynth.params import Interval, Options, Satisfies, validate_params

CONSTRAINTS = {
    "iters": [Interval(int, 1, None)],
    "fraction": [Interval(float, 0.05, 0.5)],
    "scale": [Interval(float, 0, None, closed="neither"), None],
    "mode": [Options("ghost", "hooks")],
    "flag": [bool],
    "dims": [
        Satisfies(lambda v: len(v) > 0 and all(int(d) == d > 0 for d in v), "a non-empty list of positive integers")
    ],
}


@pytest.mark.parametrize(
    "values",
    [
        {"iters": 1},
        {"iters": np.int64(5)},
        {"fraction": 0.05},
        {"fraction": 0.5},
        {"fraction": 1 / 3},
        {"scale": None},
        {"scale": 1e-9},
        {"mode": "hooks"},
        {"flag": False},
        {"dims": [3, 4]},
        {"unchecked": object()},
    ],
)
def test_accepted_values(values) -> None:
    validate_params(values, CONSTRAINTS, owner="MST")


@pytest.mark.parametrize(
    "name, value, wording",
    [
        ("iters", 0, "an integer >= 1"),
        ("iters", True, "an integer >= 1"),
        ("iters", 2.0, "an integer >= 1"),
        ("fraction", 0.51, "a finite number in [0.05, 0.5]"),
        ("fraction", math.nan, "a finite number"),
        ("fraction", "0.2", "a finite number"),
        ("scale", 0, "a finite number > 0 or None"),
        ("mode", "fast", "one of 'ghost', 'hooks'"),
        ("flag", 1, "True or False"),
        ("dims", [], "a non-empty list of positive integers"),
        ("dims", 5, "a non-empty list"),
    ],
)
def test_refused_values_name_the_parameter(name, value, wording) -> None:
    with pytest.raises(UsageError) as info:
        validate_params({name: value}, CONSTRAINTS, owner="MST")
    assert str(info.value).startswith(f"MST parameter {name!r} must be {wording}")
    assert info.value.parameter == name and info.value.exit_code == 2


def test_release_request_errors_speak_of_parameters_and_the_cli_of_options(tmp_path) -> None:
    from pathlib import Path

    from typer.testing import CliRunner

    from dpsynth.cli import app
    from dpsynth.release import ReleaseRequest, run_release

    request = ReleaseRequest(
        data=Path("x.csv"),
        schema=Path("s.json"),
        generator="mst",
        epsilon=1.0,
        delta=1e-6,
        ledger=Path("l.sqlite"),
        dataset_id="d",
        out=tmp_path / "o",
        holdout_fraction=0.9,
    )
    with pytest.raises(
        UsageError,
        match=r"^release parameter 'holdout_fraction' must be a finite number in "
        r"\[0.05, 0.5\], got 0.9",
    ) as info:
        run_release(request)
    assert info.value.parameter == "holdout_fraction"
    result = CliRunner().invoke(
        app,
        [
            "release",
            "x.csv",
            "--schema",
            "s.json",
            "--epsilon",
            "1",
            "--delta",
            "1e-6",
            "--ledger",
            "l.sqlite",
            "--dataset",
            "d",
            "--out",
            str(tmp_path / "o"),
            "--holdout-fraction",
            "0.9",
        ],
    )
    assert result.exit_code == 2
    assert "option --holdout-fraction must be a finite number in [0.05, 0.5], got 0.9" in result.output
    assert "holdout_fraction" not in result.output
    result = CliRunner().invoke(
        app,
        [
            "release",
            "x.csv",
            "--schema",
            "s.json",
            "--epsilon",
            "1",
            "--delta",
            "1e-6",
            "--ledger",
            "l.sqlite",
            "--dataset",
            "d",
            "--out",
            str(tmp_path / "o"),
            "--tier",
            "deep",
        ],
    )
    assert result.exit_code == 2 and "option --tier must be one of 'quick', 'thorough', got 'deep'" in result.output


def test_generator_parameter_errors_name_the_generator_and_the_cli_names_the_param_option(capsys) -> None:
    """Library errors speak of parameters; `dpsynth release` speaks of `--param NAME`."""
    import typer

    from dpsynth.cli import RELEASE_OPTIONS, _fail
    from dpsynth.synthesizers import make_synthesizer
    from tests.conftest import make_mixed_schema

    with pytest.raises(UsageError, match=r"^MST parameter 'iters' must be an integer >= 1, got 0$") as info:
        make_synthesizer("mst", iters=0).planned_cost(300, make_mixed_schema())
    assert info.value.parameter == "iters"
    with pytest.raises(typer.Exit):
        _fail(info.value, RELEASE_OPTIONS)
    assert "option --param iters must be an integer >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, option, parameter",
    [
        (["--epsilon", "0", "--delta", "1e-6"], "--epsilon", "epsilon_cap"),
        (["--epsilon", "1", "--delta", "1.5"], "--delta", "delta_cap"),
    ],
)
def test_budget_caps_are_ledger_parameters_and_budget_init_options(tmp_path, args, option, parameter) -> None:
    from typer.testing import CliRunner

    from dpsynth.cli import app
    from dpsynth.privacy.ledger import init_ledger

    values = {"epsilon_cap": float(args[1]), "delta_cap": float(args[3])}
    with pytest.raises(UsageError, match=rf"^ledger parameter '{parameter}' must be ") as info:
        init_ledger(tmp_path / "lib.sqlite", "d", values["epsilon_cap"], values["delta_cap"])
    assert info.value.parameter == parameter
    result = CliRunner().invoke(app, ["budget", "init", str(tmp_path / "cli.sqlite"), "--dataset", "d", *args])
    assert result.exit_code == 2 and f"option {option} must be " in result.output
    assert parameter not in result.output and not (tmp_path / "cli.sqlite").exists()
