"""The audits on a Spark table (local mode) answer exactly as on the same rows in memory.

The real tables stay on the cluster (:class:`dpsynth.engines.spark_audit.SparkRows`): nearest
distances are searched per partition and merged, exact copies are looked up by row key there, and
singling-out predicates are matched there. Each answer, and the whole audit report, must equal
:class:`audits.sources.FrameRows`' on the DuckDB engine's frames of the same split. The table is
written as several files of small row groups, so every search is merged over many partitions.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark", reason="the spark engine's tests need pyspark: pip install -e '.[test]'")

import audits  # noqa: E402
from audits.sources import FrameRows, merge_nearest  # noqa: E402
from dpsynth.engines import audit_tables, read_table, spark_audit_place  # noqa: E402
from dpsynth.engines.spark_session import java_command, spark_session, stop_session  # noqa: E402
from dpsynth.errors import UsageError  # noqa: E402
from dpsynth.holdout import split_encoded  # noqa: E402
from tests.test_engines import SCHEMA, cli_release, messy_frame  # noqa: E402

pytestmark = pytest.mark.skipif(
    java_command() is None, reason="the spark engine needs Java 17: no java on PATH and JAVA_HOME is not set"
)


@pytest.fixture(scope="module")
def sides(tmp_path_factory) -> dict:
    patch = pytest.MonkeyPatch()
    patch.setenv("DPSYNTH_SPARK_AUDIT", "cluster")  # local mode audits on the driver unless told otherwise
    spark_session("local[2]")
    root = tmp_path_factory.mktemp("spark-audit")
    base = messy_frame(1400)
    df = pd.concat([base, base.iloc[:50], base.iloc[:50]], ignore_index=True)  # rows in 3 files: ties across parts
    df.loc[10, "education"] = None
    df.loc[20:23, "hours"] = np.nan  # missing numbers: the encoder's missing flag must be found on the cluster
    df.to_parquet(root / "t.parquet")
    parts = root / "parts"
    parts.mkdir()
    for i, start in enumerate(range(0, len(df), 400)):
        df.iloc[start : start + 400].to_parquet(parts / f"part-{i:03d}.parquet", row_group_size=150)
    duck = split_encoded(read_table(root / "t.parquet", SCHEMA, "duckdb"), 0.3, np.random.default_rng(9))
    spark = split_encoded(read_table(parts, SCHEMA, "spark"), 0.3, np.random.default_rng(9))
    frames = audit_tables(*duck)
    remote = audit_tables(*spark)
    # synthetic: unseen rows, some holdout rows and some training rows copied (every family has work)
    synthetic = pd.concat([frames[1].iloc[:150], frames[0].iloc[:60], messy_frame(200).iloc[100:]], ignore_index=True)
    yield {"frames": frames, "remote": remote, "synthetic": synthetic, "spark": spark, "root": root}
    stop_session()
    patch.undo()


def test_a_spark_side_stays_on_the_cluster(sides):
    train, holdout = sides["remote"]
    assert type(train).__name__ == "SparkRows" and isinstance(train, audits.sources.RealRows)
    assert train._table._local is None  # nothing collected to the driver
    assert len(train) == len(sides["frames"][0]) and len(holdout) == len(sides["frames"][1])


def test_where_the_audit_runs_follows_the_master_unless_told(sides, monkeypatch):
    assert spark_audit_place("spark://head:7077") == "cluster"
    monkeypatch.delenv("DPSYNTH_SPARK_AUDIT")
    assert spark_audit_place("local[2]") == "driver" and spark_audit_place("spark://head:7077") == "cluster"
    train, holdout = audit_tables(*sides["spark"])  # local mode: frames on the driver
    pd.testing.assert_frame_equal(train, sides["frames"][0])
    monkeypatch.setenv("DPSYNTH_SPARK_AUDIT", "executors")
    with pytest.raises(UsageError, match="DPSYNTH_SPARK_AUDIT must be 'cluster' or 'driver'"):
        audit_tables(*sides["spark"])


def test_each_answer_equals_the_in_memory_one(sides):
    spec = audits.TableSpec.from_schema_dict(SCHEMA.to_dict())
    (f_train, f_hold), (s_train, s_hold) = (FrameRows(f) for f in sides["frames"]), sides["remote"]
    categorical = [c for c in spec.names if spec.column(c).kind == "categorical"]
    numeric = [c for c in spec.names if spec.column(c).kind == "numeric"]
    assert s_train.seen_labels(categorical) == f_train.seen_labels(categorical)
    assert "hours" in s_train.missing_numeric(numeric) == f_train.missing_numeric(numeric)
    encoder = audits.MixedEncoder(spec).fit(sides["frames"][0], sides["frames"][1], sides["synthetic"])
    idx = np.array([7, 3, 900, 3 + 1, 0])  # any order: rows come back in the order asked for
    pd.testing.assert_frame_equal(s_train.rows(idx), f_train.rows(idx))
    queries = encoder.transform(sides["synthetic"])
    tied = []
    for k, within in ((1, None), (3, None), (2, np.arange(0, len(f_hold), 3))):
        for f, s in ((f_train, s_train), (f_hold, s_hold)):
            (fd, ft), (sd, st) = f.nearest(encoder, queries, k, within), s.nearest(encoder, queries, k, within)
            np.testing.assert_array_equal(sd, fd)
            np.testing.assert_array_equal(st, ft)
            tied.append(ft.max())
    assert (fd[:, 0] == 0).any() and max(tied) > 1  # copies found, and ties to count
    keys = encoder.row_keys(sides["synthetic"])
    np.testing.assert_array_equal(s_train.contains(encoder, keys), f_train.contains(encoder, keys))
    assert s_train.contains(encoder, keys).sum() >= 60
    assert s_hold.rows_found_in(encoder, s_train) == f_hold.rows_found_in(encoder, f_train)
    sample = np.sort(np.random.default_rng(1).choice(len(f_train), 300, replace=False))

    def match(frame: pd.DataFrame) -> list[np.ndarray]:  # row-wise, as RealRows.matching requires
        return [np.flatnonzero(frame["sex"].astype(str) == "Female"), np.flatnonzero(frame["age"] >= 60)]

    for got, want in zip(s_train.matching(sample, match), f_train.matching(sample, match)):
        np.testing.assert_array_equal(got, want)
        assert len(want)


def test_the_audit_report_is_the_in_memory_one(sides):
    spec = audits.TableSpec.from_schema_dict(SCHEMA.to_dict())
    reports = [
        audits.run(*tables, sides["synthetic"], spec, tier="quick", seed=3)
        for tables in (sides["frames"], sides["remote"])
    ]
    texts = []
    for report in reports:
        d = report.to_dict()
        d.pop("seconds")
        for r in d["results"]:
            r.pop("seconds")
            assert r["status"] == "ok", r
        texts.append(json.dumps(d, sort_keys=True, default=str))
    assert texts[0] == texts[1]
    assert reports[0].decision == "FAIL"  # the copied training rows are caught


def test_merging_partitions_is_exact_for_nearest_distances_and_ties():
    rng = np.random.default_rng(0)
    d = np.round(rng.random((50, 40)), 1)  # coarse distances: many ties
    parts = np.array_split(np.arange(40), 5)
    answers = []
    for cols in parts:
        local = np.sort(d[:, cols], axis=1)[:, :3]
        answers.append(
            (
                np.pad(local, ((0, 0), (0, 3 - local.shape[1])), constant_values=np.inf),
                (d[:, cols] == local[:, :1]).sum(axis=1),
            )
        )
    dist, ties = merge_nearest(answers, 3)
    np.testing.assert_array_equal(dist, np.sort(d, axis=1)[:, :3])
    np.testing.assert_array_equal(ties, (d == d.min(axis=1, keepdims=True)).sum(axis=1))
    with pytest.raises(ValueError, match="reference size"):
        merge_nearest([(dist[:, :1], ties)], 2)


def test_the_report_draws_the_same_figures_from_the_columns_marginals(sides):
    from dpsynth.report.distributions import column_distribution

    frame, marginals = sides["frames"][0], sides["remote"][0].frame_for_report()
    assert len(marginals) == len(frame) and list(marginals.columns) == list(frame.columns)
    for column in SCHEMA:
        bounds = (column.lower, column.upper) if column.kind == "numeric" else None
        got, want = (
            column_distribution(column.name, f[column.name], sides["synthetic"][column.name], column.kind, 10, bounds)
            for f in (marginals, frame)
        )
        assert got.labels == want.labels and got.real_missing == want.real_missing, column.name
        np.testing.assert_array_equal(got.real_counts, want.real_counts)
        np.testing.assert_array_equal(got.synthetic_counts, want.synthetic_counts)
        np.testing.assert_array_equal(got.suppressed, want.suppressed)


def test_a_cli_release_audited_on_the_cluster_is_the_duckdb_release(sides):
    files = {"root": sides["root"]}
    first = cli_release(files, "by-duckdb", str(sides["root"] / "t.parquet"))
    assert first.exit_code == 0, first.output
    second = cli_release(files, "by-spark", str(sides["root"] / "parts"), "--engine", "spark")  # cluster (env)
    assert second.exit_code == 0, second.output
    out = [sides["root"] / d for d in ("by-duckdb", "by-spark")]
    assert (out[0] / "synthetic.csv").read_text() == (out[1] / "synthetic.csv").read_text()
    audits_json = [json.loads((o / "audit.json").read_text()) for o in out]
    for a in audits_json:
        a.pop("seconds")
        for r in a["results"]:
            r.pop("seconds")
    assert audits_json[0] == audits_json[1] and audits_json[0]["results"]
