"""The engines agree: same codes, same domain report, same errors, same counts, same synthetic table for a seed.

The pandas engine is today's path (``read_csv`` / ``coerce`` / ``conform`` /
``TableEncoder``); the DuckDB engine runs the SQL generated from the schema
(dpsynth.engines.sql) and counts with ``GROUP BY``. Every input kind is
read: CSV, Parquet (typed columns), a DuckDB table, a SQL query.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from dpsynth.engines import get_engine, parse_source, read_table
from dpsynth.engines.sql import SparkDialect, encoding_query
from dpsynth.engines.table import EncodedTable
from dpsynth.errors import DataError, UsageError
from dpsynth.holdout import split_encoded
from dpsynth.release import split_holdout
from dpsynth.schema import Schema
from dpsynth.synthesizers.dpctgan import category_counts
from dpsynth.synthesizers.mst import MST
from dpsynth.synthesizers.tensor_encoding import TabularTransformer
from dpsynth.tables import prepare, read_csv
from tests.conftest import make_mixed_frame, make_mixed_schema

SCHEMA = make_mixed_schema()


def messy_frame(n: int = 400) -> pd.DataFrame:
    """In-domain rows plus what conforming must handle: values out of bounds, on bin edges, unknown countries."""
    df = make_mixed_frame(n, seed=4)
    df.loc[0, "age"], df.loc[1, "age"] = 10.0, 120.0  # clipped low / high
    df.loc[2, "score"], df.loc[3, "score"], df.loc[4, "score"] = 0.2, 0.6, 1.0  # exactly on bin edges
    df.loc[5, "capital_gain"], df.loc[6, "capital_gain"] = 5000.0, 99999.0
    df.loc[7, "country"], df.loc[8, "country"] = "Atlantis", "Narnia"  # -> Other
    df.loc[9, "hours"] = 1.5  # between whole numbers
    return df


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("engines")
    df = messy_frame()
    text = df.astype(object).where(df.notna(), "NA")
    text["sex"] = " " + text["sex"].astype(str)  # surrounding spaces are stripped, as pandas' skipinitialspace does
    csv = root / "t.csv"
    text.to_csv(csv, index=False)
    parquet = root / "t.parquet"
    df.to_parquet(parquet)
    db = root / "t.duckdb"
    with duckdb.connect(str(db)) as con:
        con.register("frame", df)
        con.execute('CREATE TABLE people AS SELECT * FROM frame; CREATE TABLE "two words" AS SELECT * FROM frame')
    return {"root": root, "frame": df, "csv": csv, "parquet": parquet, "db": db}


def assert_same_table(a: EncodedTable, b: EncodedTable) -> None:
    assert len(a) == len(b)
    for name in a.schema.names:
        np.testing.assert_array_equal(a.codes[name], b.codes[name], err_msg=name)
    for name in a.values:
        np.testing.assert_array_equal(a.values[name], b.values[name], err_msg=name)
    assert a.report.to_dict() == b.report.to_dict()


@pytest.mark.parametrize("kind", ["csv", "parquet", "duckdb", "sql"])
def test_duckdb_and_pandas_engines_give_the_same_codes_values_and_report(files, kind):
    data, sql = {
        "csv": (files["csv"], None),
        "parquet": (files["parquet"], None),
        "duckdb": (f"duckdb:{files['db']}?table=people", None),
        "sql": (f"duckdb:{files['db']}", "SELECT * FROM people"),
    }[kind]
    fast, reference = read_table(data, SCHEMA, "duckdb", sql), read_table(data, SCHEMA, "pandas", sql)
    assert fast.engine == "duckdb" and reference.engine == "pandas"
    assert_same_table(fast, reference)
    assert fast.report.clipped_low == {"age": 1} and fast.report.clipped_high == {"age": 1}
    assert fast.report.mapped_to_other == {"country": 2}


def test_every_input_kind_reads_the_same_table(files):
    tables = [
        read_table(files["csv"], SCHEMA),
        read_table(files["parquet"], SCHEMA),
        read_table(f"duckdb:{files['db']}?table=two words", SCHEMA),
        read_table(None, SCHEMA, sql=f"SELECT * FROM read_parquet('{files['parquet']}')"),
    ]
    for table in tables[1:]:
        assert_same_table(tables[0], table)


def test_codes_are_the_encoders_and_frames_hold_categoricals(files):
    table = read_table(files["csv"], SCHEMA, "duckdb")
    typed = read_csv(files["csv"], SCHEMA)
    frame = table.frame()
    assert isinstance(frame["country"].dtype, pd.CategoricalDtype)
    assert frame["country"].iloc[7] == "Other" and frame["education"].isna().sum() == typed["education"].isna().sum()
    np.testing.assert_array_equal(frame["age"].to_numpy(), typed["age"].to_numpy())  # as read: 10 and 120 kept
    assert table.frame(conformed=True)["age"].iloc[:2].tolist() == [17.0, 90.0]
    assert table.codes["sex"].dtype == np.int8


def test_group_by_counts_equal_bincount_for_every_clique_shape(files):
    fast = read_table(files["csv"], SCHEMA, "duckdb")
    reference = read_table(files["csv"], SCHEMA, "pandas")
    cliques = [("age",), ("sex", "age"), ("age", "sex"), ("hours", "education", "country"), ("score",), ()]
    for clique, got, want in zip(cliques, fast.counts_many(cliques), reference.counts_many(cliques)):
        assert got.shape == tuple(SCHEMA[a].domain_size for a in clique)
        np.testing.assert_array_equal(got, want, err_msg=str(clique))
    assert fast.counts(("sex",)).sum() == len(fast)
    with pytest.raises(UsageError, match="distinct schema columns"):
        fast.counts(("sex", "sex"))


def test_same_split_and_same_synthetic_table_for_a_seed(files):
    """Same coins -> same training rows -> same counts -> same noisy measurements -> same synthetic rows."""
    tables = {name: read_table(files["csv"], SCHEMA, name) for name in ("duckdb", "pandas")}
    frame = read_csv(files["csv"], SCHEMA)
    train_frame, _ = split_holdout(frame, 0.2, np.random.default_rng(9))
    samples = []
    for table in tables.values():
        train, holdout = split_encoded(table, 0.2, np.random.default_rng(9))
        assert len(train) == len(train_frame) and len(train) + len(holdout) == len(table)
        np.testing.assert_array_equal(train.values["age"], train_frame["age"].to_numpy())
        assert train.report.to_dict() == prepare(train_frame, SCHEMA)[1].to_dict()  # the training rows' own changes
        model = MST(epsilon=1.0, delta=1e-6, random_state=5, iters=200).fit(train, SCHEMA)
        samples.append(model.sample(300))
    samples.append(MST(epsilon=1.0, delta=1e-6, random_state=5, iters=200).fit(train_frame, SCHEMA).sample(300))
    pd.testing.assert_frame_equal(samples[0], samples[1])
    pd.testing.assert_frame_equal(samples[0], samples[2])  # and equal to fitting today's pandas frame


def test_aim_fitted_on_the_engines_table_samples_what_the_frame_gives(tmp_path):
    from dpsynth.synthesizers.aim import AIM

    schema = make_mixed_schema().subset(["age", "sex", "education", "income"])
    frame = make_mixed_frame(300, seed=1)[schema.names]
    frame.to_csv(tmp_path / "aim.csv", index=False, na_rep="NA")
    table = read_table(tmp_path / "aim.csv", schema, "duckdb")
    fits = [
        AIM(epsilon=1, delta=1e-6, random_state=2, rounds=7, max_iters=50, max_seconds=None).fit(data, schema)
        for data in (table, frame)
    ]
    pd.testing.assert_frame_equal(fits[0].sample(100), fits[1].sample(100))


def test_compressed_group_by_counts_equal_compressed_codes(files):
    from dpsynth.synthesizers import marginals as mg

    table = read_table(files["csv"], SCHEMA, "duckdb")
    codes = {a: c.astype(np.int64) for a, c in table.codes.items()}
    domain = mg.Domain(SCHEMA.names, [c.domain_size for c in SCHEMA])
    mapping = np.array([0, 0, 1, 2, 2, 2, 3, 3])  # age's 8 bins merged into 4
    compression = mg.DomainCompression(domain, {"age": mapping})
    small = compression.domain
    for clique in [("age",), ("sex", "age"), ("age", "country")]:
        np.testing.assert_array_equal(
            mg.counts(compression.compress_codes(table), small, clique),
            mg.counts(compression.compress_codes(codes), small, clique),
        )


def test_dpctgan_histograms_from_the_engine_equal_the_one_hot_counts(files):
    table = read_table(files["csv"], SCHEMA, "duckdb")
    transformer = TabularTransformer(SCHEMA)
    x = __import__("torch").as_tensor(transformer.transform(table.frame(conformed=True)))
    for span in transformer.categorical_spans:
        np.testing.assert_array_equal(table.counts((span.column,)), category_counts(x, span))


# -- errors name the column and the row, in the pandas path's words ----------------------------
def write(tmp_path, text: str):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


SMALL = make_mixed_schema().subset(["age", "sex", "education"])


@pytest.mark.parametrize(
    "body, match",
    [
        ("age,sex,education\n30,Male,HS-grad\n\n31,Male,x y\n", "column 'education' has 1 value"),
        ("age,sex,education\n30,Male,HS-grad\n31,abc,HS-grad\n", "column 'sex' has 1 value"),
        ("age,sex,education\n30,Male,HS-grad\n\nthirty,Male,HS-grad\n", "column 'age' is numeric but line 4 holds"),
        ("age,sex,education\n30,Male,HS-grad\n1_000,Male,HS-grad\n", "column 'age' is numeric but line 3"),
        ("age,sex,education\n30,NA,HS-grad\n", "column 'sex' is not nullable but line 2 is null"),
        ("age,sex\n30,Male\n", r"lacks column\(s\) \['education'\]"),
        ("age,sex,education\n", "has no data rows"),
    ],
)
def test_csv_errors_are_the_pandas_paths(tmp_path, body, match):
    path = write(tmp_path, body)
    messages = []
    for engine in ("duckdb", "pandas"):
        with pytest.raises(DataError, match=match) as caught:
            read_table(path, SMALL, engine)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]


def test_csv_values_are_never_taken_for_comments_or_skipped_lines(tmp_path):
    schema = make_mixed_schema().subset(["age", "sex"])
    schema = type(schema)(columns=(schema["age"], type(schema["sex"])("sex", "categorical", categories=("#a", "b"))))
    path = write(tmp_path, "age,sex\n30,#a\n31,b\n32,#a\n")
    fast, reference = read_table(path, schema, "duckdb"), read_table(path, schema, "pandas")
    assert_same_table(fast, reference)
    assert fast.codes["sex"].tolist() == [0, 1, 0]


def test_parquet_errors_name_the_one_based_row(tmp_path):
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"age": ["30", "31", "x"], "sex": ["Male"] * 3, "education": [None] * 3}).to_parquet(path)
    messages = []
    for engine in ("duckdb", "pandas"):
        with pytest.raises(DataError, match="column 'age' is numeric but row 3 holds 'x'") as caught:
            read_table(path, SMALL, engine)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]


def test_sources_and_engines_are_named_or_refused(tmp_path):
    assert parse_source("t.parquet").kind == "parquet" and parse_source("t.csv").kind == "csv"
    assert parse_source("duckdb:/x/y.db?table=t").table == "t"
    assert parse_source(None, "SELECT 1").path is None
    with pytest.raises(UsageError, match="duckdb:PATH\\?table=NAME"):
        parse_source("duckdb:/x/y.db")
    with pytest.raises(UsageError, match="must name the DuckDB database"):
        parse_source("t.csv", "SELECT 1")
    with pytest.raises(UsageError, match="engine must be one of duckdb, pandas"):
        get_engine("spark-ish")
    with pytest.raises(DataError, match="data file not found"):
        read_table(tmp_path / "missing.parquet", SMALL)
    with pytest.raises(DataError, match="could not be run"):
        read_table(None, SMALL, sql="SELECT * FROM no_such_table")


def test_the_query_text_is_one_generator_for_both_dialects():
    """Spark gets the same rules with its own quoting; a label with a quote survives both."""
    schema = make_mixed_schema().subset(["age", "sex"])
    columns = {n: n for n in schema.names}
    types = {n: "text" for n in schema.names}
    duck = encoding_query(schema, "t", columns, types).sql
    spark = encoding_query(schema, "t", columns, types, SparkDialect()).sql
    assert '"age"' in duck and "`age`" in spark and "trim(BOTH" in spark
    assert duck.replace('"', "`").count("CASE") == spark.count("CASE")
    quoted = SparkDialect().text("it's")
    assert quoted == "'it\\'s'"
    with duckdb.connect() as con:  # the DuckDB text runs, and a label with a quote is matched
        con.execute("CREATE TABLE t AS SELECT '40' AS age, 'Male' AS sex")
        assert con.sql(duck).fetchall()[0][0] >= 0


# -- the CLI ----------------------------------------------------------------------------------
def cli_release(files, out: str, *data: str):
    from typer.testing import CliRunner

    from dpsynth.cli import app

    schema = files["root"] / "schema.json"
    SCHEMA.save(schema)
    ledger = files["root"] / "ledger.sqlite"
    runner = CliRunner()
    if not ledger.exists():
        runner.invoke(app, ["budget", "init", str(ledger), "--dataset", "toy", "--epsilon", "5", "--delta", "1e-5"])
    args = ["release", *data, "--schema", str(schema), "--epsilon", "1", "--delta", "1e-7", "--ledger", str(ledger)]
    args += ["--dataset", "toy", "--out", str(files["root"] / out), "--seed", "3", "--param", "iters=100"]
    args += ["--rows", "200"]
    return runner.invoke(app, args, catch_exceptions=False)


def test_cli_engine_and_sql_give_the_same_release(files):
    first = cli_release(files, "by-pandas", str(files["csv"]), "--engine", "pandas")
    assert first.exit_code == 0, first.output
    second = cli_release(files, "by-sql", f"duckdb:{files['db']}", "--sql", "SELECT * FROM people")
    assert second.exit_code == 0, second.output
    a, b = ((files["root"] / d / "synthetic.csv").read_text() for d in ("by-pandas", "by-sql"))
    assert a == b and len(a.splitlines()) == 201


def test_cli_refuses_an_unknown_engine_before_spending(files):
    result = cli_release(files, "bogus", str(files["csv"]), "--engine", "spreadsheet")
    assert result.exit_code == 2
    assert "option --engine must be one of 'duckdb', 'pandas'" in result.output
    assert not (files["root"] / "bogus").exists()


def test_duckdb_keeps_the_files_row_order_over_many_row_groups_and_threads(tmp_path):
    """The split's coins are per row in file order: a read that reorders rows would change the split for a seed.

    DuckDB's ``in_clause`` optimiser once turned the encoding query's IN lists into a hash join whose
    parallel probe returned row groups out of order on two threads (rows from 100,000 on, at 3M rows).
    """
    n = 200_000
    ids = np.arange(n) % 97
    frame = pd.DataFrame({"id": ids, "x": np.where(ids % 3 == 0, " NA", "\tb")})
    schema = Schema.from_dict(
        {
            "columns": [
                {"name": "id", "kind": "categorical", "categories": [str(i) for i in range(97)]},
                {"name": "x", "kind": "categorical", "categories": ["b"], "nullable": True},
            ]
        }
    )
    parquet, csv = tmp_path / "t.parquet", tmp_path / "t.csv"
    frame.to_parquet(parquet, row_group_size=5_000)
    frame.to_csv(csv, index=False)
    for path in (parquet, csv):
        table = read_table(path, schema, engine="duckdb")
        np.testing.assert_array_equal(table.codes["id"], ids, err_msg=f"rows out of order reading {path.name}")
        assert table.frame()["x"].isna().sum() == (ids % 3 == 0).sum()


def test_urls_name_a_lake_table_only_the_spark_engine_reads():
    source = parse_source("s3a://lake/adult/")
    assert source.kind == "parquet" and source.url == "s3a://lake/adult/" and source.path is None
    assert str(source) == "s3a://lake/adult/" and parse_source("hdfs://nn/t.csv").kind == "csv"
    with pytest.raises(UsageError, match="only --engine spark reads"):
        read_table("s3a://lake/adult/", SMALL, "duckdb")
    with pytest.raises(UsageError, match="--spark-master is for --engine spark"):
        read_table("s3a://lake/adult/", SMALL, "pandas", spark_master="local[2]")
