"""The release report: no real record on the page, decision first, self-contained, written atomically."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dpsynth.errors import UsageError
from dpsynth.report import (
    build_figures,
    column_distribution,
    describe_failure,
    render_report,
    write_report,
)
from dpsynth.report.figures import MAX_COLUMNS, numeric_grid

CANARY = "CANARY-q7ZxW2"
EXTREME = 987654.321
ADULT = Path(__file__).resolve().parents[2].parent / "shared/data/adult/adult.csv"
KINDS = {"colour": "categorical", "income": "numeric", "age": "numeric", "score": "numeric"}


def _tables(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A real table with one canary category and one extreme value, and a synthetic table that
    memorised both (the worst case: the report must hide them in either table)."""
    rng = np.random.default_rng(seed)
    real = pd.DataFrame(
        {
            "colour": rng.choice(["red", "blue", "green"], size=n, p=[0.5, 0.3, 0.2]).astype(object),
            "income": np.round(rng.normal(50.0, 12.0, size=n), 3),
            "age": rng.integers(18, 80, size=n).astype(float),
            "score": np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
        }
    )
    real.loc[7, "colour"] = CANARY
    real.loc[11, "income"] = EXTREME
    synthetic = real.sample(n, replace=True, random_state=1).reset_index(drop=True)
    synthetic.loc[0] = real.loc[7]
    synthetic.loc[1] = real.loc[11]
    synthetic.loc[2, "colour"] = "purple-only-in-synthetic"
    return real, synthetic


def _audit(decision: str = "FAIL") -> dict:
    grid = np.linspace(0, 1, 11)
    return {
        "schema_version": 1,
        "decision": decision,
        "tier": "quick",
        "seed": 0,
        "confidence": 0.95,
        "results": [
            {
                "name": "dcr_share",
                "family": "distance",
                "value": 0.98 if decision == "FAIL" else 0.5,
                "ci_low": 0.97,
                "ci_high": 0.99,
                "threshold": 0.6,
                "passed": decision != "FAIL",
                "direction": "max",
                "baseline": 0.5,
                "status": "ok",
                "required": True,
                "details": {
                    "n_synthetic_queries": 400,
                    "dcr_histogram": {
                        "edges": [0.0, 0.1, 0.2, 0.3],
                        "synthetic_to_train": [300, 80, 20],
                        "holdout_to_train": [100, 150, 150],
                    },
                },
            },
            {
                "name": "nndr_ratio",
                "family": "distance",
                "value": 1.02,
                "ci_low": 0.98,
                "ci_high": 1.05,
                "threshold": 0.85,
                "passed": True,
                "direction": "min",
                "baseline": 1.0,
            },
            {
                "name": "mia_distance",
                "family": "membership",
                "value": 0.55,
                "ci_low": 0.51,
                "ci_high": 0.59,
                "threshold": 0.6,
                "passed": True,
                "direction": "max",
                "baseline": 0.5,
                "details": {"roc": {"fpr": grid.tolist(), "tpr": np.sqrt(grid).tolist()}},
            },
        ],
    }


def _manifest(decision: str = "FAIL", leaked: bool = False) -> dict:
    return {
        "decision": decision,
        "reasons": [],
        "dataset_id": "toy",
        "generator": "mst",
        "parameters": {"epsilon": 1.0, "delta": 1e-6},
        "privacy": {
            "epsilon": 1.0,
            "delta": 1e-6,
            "accountant": "pld",
            "event": {"type": "gaussian", "noise_multiplier": 3.2},
        },
        "budget": {
            "epsilon_cap": 5.0,
            "delta_cap": 1e-5,
            "spent_epsilon": 2.5,
            "remaining_epsilon": 2.5,
            "naive_sum_epsilon": 3.0,
        },
        "ledger": {"entry_id": 4, "entry_hash": "ab" * 32, "head_hash": "cd" * 32},
        "schema": {"name": "toy", "source": "private-data" if leaked else "public", "leaked_domain": leaked},
        "domain_report": {
            "clipped_low": {"age": 0},
            "clipped_high": {"income": 3},
            "mapped_to_other": {"colour": 42},
            "ignored_columns": ["id"],
        },
        "rows": {"train": 400, "holdout": 200, "synthetic": 400},
        "seed": 7,
        "noise_source": "fixed-seed",
        "versions": {"dpsynth": "0.1.0"},
        "created_at": "2025-01-01T00:00:00Z",
        "synthetic_sha256": None if decision == "FAIL" else "ef" * 32,
    }


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    return _tables()


@pytest.fixture(scope="module")
def fail_html(tables: tuple[pd.DataFrame, pd.DataFrame]) -> str:
    real, synthetic = tables
    audit = _audit("FAIL")
    return render_report(_manifest("FAIL", leaked=True), audit, build_figures(real, synthetic, KINDS, audit))


# ------------------------------------------------------------------ aggregation: no real record escapes
def test_rare_category_is_merged_in_both_tables(tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    real, synthetic = tables
    dist = column_distribution("colour", real["colour"], synthetic["colour"], "categorical", min_cell=10)
    assert not any(CANARY in label or "purple" in label for label in dist.labels)
    assert dist.labels[:3] == ["red", "blue", "green"]
    # the canary row is counted in the merged bucket, and that bucket (1 row) is suppressed
    assert dist.real_counts.sum() == len(real) and dist.synthetic_counts.sum() == len(synthetic)
    assert dist.real_counts[-1] == 1 and dist.suppressed[-1]
    assert np.isnan(dist.real_shares()[-1])
    assert dist.labels[-1] == "suppressed (<10)"
    # the memorised canary and the synthetic-only value are merged too
    assert dist.synthetic_counts[-1] == (~synthetic["colour"].isin(["red", "blue", "green"])).sum() >= 2
    shown = ~dist.suppressed
    assert np.all(dist.real_counts[shown] >= 10)


def test_category_just_below_min_cell_is_merged_at_just_above_shown() -> None:
    real = pd.Series(["a"] * 50 + ["b"] * 10 + ["c"] * 9 + ["d"] * 9)
    dist = column_distribution("x", real, None, "categorical", min_cell=10)
    assert dist.labels == ["a", "b", "other (incl. <10)"]
    assert dist.real_counts.tolist() == [50, 10, 18] and not dist.suppressed.any()
    assert dist.synthetic_counts is None and dist.total_variation() is None


def test_extreme_numeric_value_never_sets_an_edge(tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    real, synthetic = tables
    dist = column_distribution("income", real["income"], synthetic["income"], "numeric", min_cell=10)
    assert dist.edges[-1] < 200 < EXTREME
    assert not any("987" in label for label in dist.labels)
    assert dist.real_counts.sum() == len(real)  # the extreme row is clipped into the top bin, not dropped
    assert dist.synthetic_counts.sum() == len(synthetic)
    assert np.all(dist.real_counts >= 10) and not dist.suppressed.any()
    # edges come from a rounded grid: multiples of one nice step, not observed values
    steps = np.diff(dist.edges)
    base = steps.min()
    assert np.allclose(np.round(steps / base), steps / base)
    assert np.allclose(np.round(dist.edges / base), dist.edges / base)


def test_numeric_grid_uses_public_bounds_and_integer_bins() -> None:
    values = np.linspace(1.0, 1000.0, 997)
    edges = numeric_grid(values, min_cell=10, bins=10, bounds=(0.0, 2000.0))
    assert np.allclose(edges, np.linspace(0.0, 2000.0, 11))
    ints = numeric_grid(np.repeat(np.arange(1, 8, dtype=float), 20), min_cell=10)
    assert np.array_equal(ints, np.arange(0.5, 8.0, 1.0))  # one bin per whole number, centred
    ages = numeric_grid(np.arange(17.0, 91.0), min_cell=10, bins=20, bounds=(17, 90))
    assert np.allclose(np.diff(ages), 5.0) and ages[0] < 17 and ages[-1] >= 90  # 5 whole years a bin
    assert np.allclose(ages % 1, 0.5)


def test_small_bins_merge_and_tiny_columns_are_suppressed() -> None:
    rng = np.random.default_rng(3)
    real = pd.Series(np.r_[rng.normal(0, 1, 300), [40.0, 41.0, 55.0]])
    dist = column_distribution("v", real, None, "numeric", min_cell=25)
    assert dist.real_counts.sum() == 303 and np.all(dist.real_counts >= 25)
    tiny = column_distribution("v", pd.Series([1.0, 2.0, 3.0]), None, "numeric", min_cell=10)
    assert tiny.suppressed.all() and "fewer than 10" in tiny.note
    cat = column_distribution("c", pd.Series(["a", "b"]), pd.Series(["a"]), "categorical", min_cell=10)
    assert cat.suppressed.all() and np.isnan(cat.real_shares()).all()


def test_missing_share_and_total_variation() -> None:
    real = pd.Series(["a"] * 50 + ["b"] * 50)
    syn = pd.Series(["a"] * 100)
    assert column_distribution("x", real, syn, "categorical").total_variation() == pytest.approx(0.5)
    num = column_distribution(
        "s", pd.Series([np.nan] * 5 + list(range(100))), pd.Series([1.0] * 10), "numeric", min_cell=10
    )
    assert num.real_missing == 5 and num.missing_text("real") == "suppressed (<10)"
    assert num.missing_text("synthetic") == "0.0%"


# ------------------------------------------------------------------ the page
def test_report_contains_no_canary_value(fail_html: str, tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    assert CANARY not in fail_html and "purple" not in fail_html
    for text in ("987654", "987,654", "9.88e+05", "9.877e+05"):
        assert text not in fail_html
    real, _ = tables
    # no individual numeric value printed with its full precision either
    for value in real["income"].dropna().iloc[:50]:
        assert f"{value:.3f}" not in fail_html
    assert "not</em> differentially private" in fail_html
    assert "suppressed" in fail_html


def test_decision_banner_is_first(fail_html: str) -> None:
    body = fail_html.split("<body>", 1)[1].lstrip()
    assert body.startswith('<header id="decision" class="banner fail"')
    banner = body.split("</header>", 1)[0]
    assert '<div class="verdict">FAIL</div>' in banner
    positions = [
        fail_html.index(f'id="{sid}"')
        for sid in ("decision", "budget", "schema", "audit", "attacks", "columns", "domain", "reproducibility")
    ]
    assert positions == sorted(positions)


def test_fail_report_names_failing_test_and_margin(fail_html: str) -> None:
    banner = fail_html.split("</header>", 1)[0]
    assert "dcr_share = 0.98 exceeds threshold 0.60 by 0.38" in banner
    assert "nndr_ratio" not in banner and "mia_distance" not in banner  # only failures in the banner
    assert "No synthetic data was released" in banner
    assert "— (not released)" in fail_html


def test_describe_failure_variants() -> None:
    below = {"name": "nndr_ratio", "value": 0.5, "threshold": 0.85, "direction": "min", "passed": False}
    assert describe_failure(below) == "nndr_ratio = 0.50 is below threshold 0.85 by 0.35"
    judged = {
        "name": "mia_distance",
        "value": 0.58,
        "judged_value": 0.63,
        "threshold": 0.6,
        "direction": "max",
        "passed": False,
    }
    text = describe_failure(judged)
    assert "upper 95% confidence bound 0.63" in text and "estimate 0.58" in text and "by 0.03" in text
    not_run = {"name": "shadow_mia", "status": "not_run", "value": None, "message": "time budget"}
    assert "did not complete" in describe_failure(not_run) and "time budget" in describe_failure(not_run)


def test_audit_message_is_preferred_and_reasons_not_duplicated(tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    real, synthetic = tables
    audit = _audit("FAIL")
    message = "dcr_share = 0.98 (its upper 95% confidence bound 0.99) exceeds threshold 0.60 by 0.39"
    audit["results"][0]["message"] = message
    manifest = _manifest("FAIL") | {"reasons": [message, "ledger refused: extra reason"]}
    figs = build_figures(real.iloc[:50], None, {"colour": "categorical"}, audit)
    banner = render_report(manifest, audit, figs).split("</header>", 1)[0]
    assert banner.count("exceeds threshold 0.60 by 0.39") == 1
    assert "ledger refused: extra reason" in banner


def test_leaked_schema_warning_only_when_leaked(tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    real, _ = tables
    figs = build_figures(real.iloc[:50], None, {}, _audit("PASS"))
    leaked = render_report(_manifest("PASS", leaked=True), _audit("PASS"), figs)
    public = render_report(_manifest("PASS", leaked=False), _audit("PASS"), figs)
    assert 'id="leaked-domain-warning"' in leaked and "derived from the private data" in leaked
    assert 'id="leaked-domain-warning"' not in public and "derived from the private data" not in public


def test_html_is_self_contained(fail_html: str) -> None:
    assert "http://" not in fail_html and "https://" not in fail_html
    assert "<link" not in fail_html and "<script" not in fail_html and "@import" not in fail_html
    sources = re.findall(r'src="([^"]*)"', fail_html)
    assert len(sources) == 2 + len(KINDS)  # ROC, DCR histogram, one small multiple per column
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")


def test_budget_section_shows_composed_and_naive(fail_html: str) -> None:
    section = fail_html.split('id="budget"', 1)[1].split("</section>", 1)[0]
    for text in ("ε = 2.50", "ε = 3.00", "saves ε = 0.50", "ε = 5.00", "pld", "(50% of the cap)"):
        assert text in section, text
    assert 'style="width: 60.00%"' in section  # naive sum 3.0 on a scale up to the cap 5.0
    assert 'class="cap" style="left: 100.00%"' in section


def test_domain_counts_below_min_cell_are_masked(fail_html: str) -> None:
    section = fail_html.split('id="domain"', 1)[1].split("</section>", 1)[0]
    assert "&lt;10" in section and ">42<" in section and ">3<" not in section


def test_autoescape(tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    real, _ = tables
    manifest = _manifest("PASS") | {"dataset_id": "<script>alert(1)</script>"}
    html = render_report(manifest, _audit("PASS"), build_figures(real.iloc[:50], None, {}, None))
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_audit_only_report_and_missing_plot_data(tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    real, synthetic = tables
    audit = _audit("PASS")
    for r in audit["results"]:
        r.pop("details", None)
    figs = build_figures(real, synthetic, KINDS, audit)
    assert figs.roc is None and figs.distance == []
    html = render_report({"decision": "PASS"}, audit, figs)
    assert 'id="budget"' not in html and "Audit passed" in html
    assert "recorded no ROC curves" in html and "No schema information" in html
    with pytest.raises(UsageError, match="decision"):
        render_report({}, {"results": []}, figs)


def test_column_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import dpsynth.report.figures as figures

    monkeypatch.setattr(figures, "plot_distribution", lambda dist: None)  # the cap, not the drawing, is tested
    rng = np.random.default_rng(0)
    wide = pd.DataFrame({f"c{i}": rng.integers(0, 3, 60).astype(str) for i in range(MAX_COLUMNS + 6)})
    figs = build_figures(wide, None, {c: "categorical" for c in wide.columns}, None)
    assert len(figs.columns) == MAX_COLUMNS
    assert figs.columns_omitted == [f"c{i}" for i in range(MAX_COLUMNS, MAX_COLUMNS + 6)]


def test_write_report_is_atomic_and_deterministic(tmp_path: Path, tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    real, synthetic = tables
    kinds = {"colour": "categorical", "income": "numeric"}
    target = tmp_path / "out" / "report.html"
    write_report(target, _manifest("PASS"), _audit("PASS"), real, synthetic, kinds)
    first = target.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]
    write_report(target, _manifest("PASS"), _audit("PASS"), real, synthetic, kinds)
    assert target.read_bytes() == first  # same inputs, same bytes (PNG metadata has no timestamp)
    with pytest.raises(UsageError):  # a failure leaves the old report and no temp file
        write_report(target, {}, {"results": []}, real, synthetic, kinds)
    assert target.read_bytes() == first
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]


def test_crash_during_rename_leaves_old_report_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tables: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    real, _ = tables
    target = tmp_path / "report.html"
    target.write_text("previous report", encoding="utf-8")

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_report(target, _manifest("PASS"), {"decision": "PASS", "results": []}, real, None, {})
    assert target.read_text(encoding="utf-8") == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.skipif(not ADULT.exists(), reason=f"Adult data not found at {ADULT}")
def test_adult_report_hides_singleton_country(tmp_path: Path) -> None:
    """The speed of this report is a benchmark figure (benchmarks/report_speed.py), not a test assertion."""
    df = pd.read_csv(ADULT).drop(columns=["fnlwgt"])
    assert (df["country"] == "Holand-Netherlands").sum() == 1  # a real one-row category
    kinds = {c: "numeric" if pd.api.types.is_numeric_dtype(df[c]) else "categorical" for c in df.columns}
    synthetic = df.sample(len(df), replace=True, random_state=0)
    path = write_report(tmp_path / "report.html", _manifest("PASS"), _audit("PASS"), df, synthetic, kinds)
    html = path.read_text(encoding="utf-8")
    assert "Holand-Netherlands" not in html
    assert html.count("data:image/png;base64,") == 2 + len(kinds)
