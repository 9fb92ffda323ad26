"""The Spark engine (local mode) agrees with DuckDB: same codes, counts, errors, split and synthetic table.

One Spark session serves the module (a JVM start takes seconds); the tables
are small. Skipped, saying why, where pyspark or Java is missing.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark", reason="the spark engine's tests need pyspark: pip install -e '.[test]'")

from dpsynth.engines import read_table  # noqa: E402
from dpsynth.engines.spark_session import java_command, spark_session, stop_session  # noqa: E402
from dpsynth.errors import DataError, UsageError  # noqa: E402
from dpsynth.holdout import split_encoded  # noqa: E402
from dpsynth.release import synthetic_csv_text  # noqa: E402
from dpsynth.synthesizers.mst import MST  # noqa: E402
from tests.test_engines import SCHEMA, SMALL, assert_same_table, cli_release, messy_frame  # noqa: E402

pytestmark = pytest.mark.skipif(
    java_command() is None, reason="the spark engine needs Java 17: no java on PATH and JAVA_HOME is not set"
)


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]")
    yield session
    stop_session()


@pytest.fixture(scope="module")
def files(tmp_path_factory, spark) -> dict:
    root = tmp_path_factory.mktemp("spark")
    df = messy_frame()
    df.loc[10, "education"] = None  # a null in a nullable category
    single = root / "t.parquet"
    df.to_parquet(single)
    parts = root / "parts"  # the same rows as a directory of files, read in path order
    parts.mkdir()
    for i, start in enumerate(range(0, len(df), 150)):
        df.iloc[start : start + 150].to_parquet(parts / f"part-{i:03d}.parquet", row_group_size=40)
    return {"root": root, "frame": df, "parquet": single, "parts": parts, "csv": root / "t.csv"}


def test_same_codes_values_report_and_counts_as_duckdb(files):
    duck = read_table(files["parquet"], SCHEMA, "duckdb")
    for data in (files["parquet"], files["parts"]):
        table = read_table(data, SCHEMA, "spark")
        assert table.engine == "spark" and len(table) == len(duck)
        assert table.report.to_dict() == duck.report.to_dict()
        assert table.report.mapped_to_other == {"country": 2} and table.report.clipped_low == {"age": 1}
        cliques = [("age",), ("sex", "age"), ("hours", "education", "country"), ("score",), ()]
        for clique, got, want in zip(cliques, table.counts_many(cliques), duck.counts_many(cliques)):
            assert got.shape == tuple(SCHEMA[a].domain_size for a in clique)
            np.testing.assert_array_equal(got, want, err_msg=str(clique))
        assert_same_table(table.local(), duck)  # row order too: the directory's files in path order
        with pytest.raises(UsageError, match="distinct schema columns"):
            table.counts(("sex", "sex"))


def test_same_split_and_same_synthetic_table_as_duckdb(files):
    digests, reports, holdouts = [], [], []
    for engine in ("duckdb", "spark"):
        table = read_table(files["parquet"], SCHEMA, engine)
        train, holdout = split_encoded(table, 0.2, np.random.default_rng(9))
        assert train.engine == engine  # the spark side is still on the cluster: MST's counts are Spark jobs
        reports.append((train.report.to_dict(), holdout.report.to_dict(), len(train), len(holdout)))
        holdouts.append(holdout.frame())
        model = MST(epsilon=1.0, delta=1e-6, random_state=5, iters=200).fit(train, SCHEMA)
        assert engine == "duckdb" or train._local is None  # MST counted on the cluster: no row came to the driver
        digests.append(hashlib.sha256(synthetic_csv_text(model.sample(300), SCHEMA).encode()).hexdigest())
    assert reports[0] == reports[1]
    pd.testing.assert_frame_equal(holdouts[0], holdouts[1])
    assert digests[0] == digests[1]


def test_errors_name_the_column_and_row_as_duckdb(files, tmp_path):
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"age": ["30", "31", "x"], "sex": ["Male"] * 3, "education": [None] * 3}).to_parquet(bad)
    unknown = tmp_path / "unknown.parquet"
    pd.DataFrame({"age": [30, 31], "sex": ["Male", "abc"], "education": ["HS-grad", None]}).to_parquet(unknown)
    for path, match in [
        (bad, "column 'age' is numeric but row 3 holds 'x'"),
        (unknown, r"column 'sex' has 1 value\(s\) outside its declared categories \(e.g. \['abc'\]"),
    ]:
        messages = []
        for engine in ("duckdb", "spark"):
            with pytest.raises(DataError, match=match) as caught:
                read_table(path, SMALL, engine)
            messages.append(str(caught.value))
        assert messages[0] == messages[1]
    with pytest.raises(UsageError, match="the spark engine reads Parquet"):
        read_table(files["csv"], SMALL, "spark")
    with pytest.raises(DataError, match="data file not found"):
        read_table(tmp_path / "missing.parquet", SMALL, "spark")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(DataError, match="junk.parquet could not be read as Parquet: .*footer"):
        read_table(junk, SMALL, "spark")
    with pytest.raises(UsageError, match="--spark-master must be local"):
        read_table(bad, SMALL, "spark", spark_master="yarn")
    with pytest.raises(UsageError, match="--spark-master is for --engine spark"):
        read_table(bad, SMALL, "duckdb", spark_master="local[2]")


def test_cli_release_with_engine_spark_is_the_duckdb_release(files):
    files["frame"].to_csv(files["csv"], index=False, na_rep="NA")
    first = cli_release(files, "by-duckdb", str(files["parquet"]))
    assert first.exit_code == 0, first.output
    second = cli_release(files, "by-spark", str(files["parquet"]), "--engine", "spark", "--spark-master", "local[2]")
    assert second.exit_code == 0, second.output
    a, b = ((files["root"] / d / "synthetic.csv").read_text() for d in ("by-duckdb", "by-spark"))
    assert a == b and len(a.splitlines()) == 201
    bogus = cli_release(files, "bogus", str(files["parquet"]), "--engine", "spark", "--spark-master", "mesos://x")
    assert bogus.exit_code == 2 and "--spark-master must be local" in bogus.output
    assert not (files["root"] / "bogus").exists()


def test_sides_count_on_the_cluster_as_duckdb_in_one_job_per_cell_budget(files, monkeypatch):
    """A side never brought to the driver counts on the executors: the same integers as DuckDB's side,
    over several partitions (the directory of files) and when the sets need several jobs."""
    import dpsynth.engines.spark_counts as spark_counts
    import dpsynth.engines.spark_engine as spark_engine

    jobs = []
    real_job = spark_counts._count_job
    monkeypatch.setattr(spark_counts, "_count_job", lambda *a: jobs.append(a[1]) or real_job(*a))
    monkeypatch.setattr(spark_counts, "_CELLS_PER_JOB", 60)  # a few small sets a job
    coins = np.random.default_rng(3).random(len(files["frame"])) < 0.3
    duck_sides = read_table(files["parquet"], SCHEMA, "duckdb").split(coins)
    table = read_table(files["parts"], SCHEMA, "spark")
    assert table._encoded.rdd.getNumPartitions() > 1
    cliques = [("age",), ("sex", "age"), ("education", "hours"), ("country",), ("score", "sex"), ()]
    for side, duck in zip(table.split(coins), duck_sides):
        assert side._local is None and not side._encoded.is_cached  # a join until a job questions it
        for clique, got, want in zip(cliques, side.counts_many(cliques), duck.counts_many(cliques)):
            np.testing.assert_array_equal(got, want, err_msg=str(clique))
        assert side._encoded.is_cached and side._local is None  # counted there: no row came to the driver
    cells = [sum(int(np.prod([SCHEMA[a].domain_size for a in s])) for s in job) for job in jobs]
    assert len(jobs) > 2 and all(c <= 60 or len(job) == 1 for c, job in zip(cells, jobs))
    asked = len(jobs)
    side.counts_many([("sex", "age"), ("age", "sex")])  # counted before: no job
    assert len(jobs) == asked
    local = side.local()  # once the rows are on the driver, they are counted there
    monkeypatch.setattr(spark_engine, "count_sets", lambda *a: pytest.fail("a job for rows on the driver"))
    np.testing.assert_array_equal(side.counts(("hours", "country")), local.counts(("hours", "country")))


def test_a_side_splits_into_its_own_rows(files):
    """Splitting a side selects that side's rows (by their row numbers, not their positions), on the cluster
    and on the driver, as the in-memory split does."""
    n = len(files["frame"])
    first = np.random.default_rng(4).random(n) < 0.4
    duck_train, _ = read_table(files["parquet"], SCHEMA, "duckdb").split(first)
    train, _ = read_table(files["parquet"], SCHEMA, "spark").split(first)
    second = np.random.default_rng(5).random(len(train)) < 0.5
    cliques = [("age", "sex"), ("education",)]
    for got, want in zip(train.split(second), duck_train.split(second)):
        assert len(got) == len(want) and got._local is None
        for counted, expected in zip(got.counts_many(cliques), want.counts_many(cliques)):  # the cluster's rows
            np.testing.assert_array_equal(counted, expected)
        assert got._local is None
        assert_same_table(got.local(), want)  # the driver's
