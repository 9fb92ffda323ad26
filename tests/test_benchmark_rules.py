"""Schema consistency rules: the JSON format, its validation messages, violation rates, and the NIST rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dpsynth.benchmarking.consistency import violation_rates
from dpsynth.errors import SchemaError
from dpsynth.schema import Schema

from .conftest import REPO


def base(rules: list) -> dict:
    return {
        "name": "people",
        "source": "public",
        "columns": [
            {"name": "age", "kind": "numeric", "lower": 0, "upper": 99, "bins": 10, "integer": True},
            {"name": "married", "kind": "categorical", "categories": ["yes", "no"], "nullable": True},
            {"name": "edu", "kind": "categorical", "categories": ["1", "2", "12"], "nullable": True},
        ],
        "rules": rules,
    }


CHILD_MARRIED = {
    "name": "child_married",
    "if": {"column": "age", "lt": 15},
    "then": {"column": "married", "is_null": True},
}


def test_rules_round_trip_and_subset():
    schema = Schema.from_dict(base([CHILD_MARRIED]))
    assert Schema.from_dict(schema.to_dict()) == schema
    assert schema.to_dict()["rules"] == [CHILD_MARRIED]
    assert schema.subset(["age", "married"]).rules == schema.rules
    assert schema.subset(["age", "edu"]).rules == ()  # a rule whose column is dropped goes with it


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"name": "r", "if": {"column": "age", "lt": 15}}, "rule 'r': missing key 'then'"),
        ({"name": "r", "if": {"column": "agee", "lt": 15}, "then": {"column": "married", "is_null": True}}, "'agee'"),
        ({"name": "r", "if": {"column": "married", "lt": 1}, "then": {"column": "age", "gt": 1}}, "is categorical"),
        ({"name": "r", "if": {"column": "age", "lt": 1, "gt": 0}, "then": {"column": "age", "gt": 1}}, "exactly one"),
        ({"name": "r", "if": {"column": "age", "less": 1}, "then": {"column": "age", "gt": 1}}, "unknown test"),
        ({"name": "r", "if": {"column": "married", "eq": "maybe"}, "then": {"column": "age", "gt": 1}}, "'maybe'"),
        ({"name": "r", "if": {"column": "age", "is_null": True}, "then": {"column": "age", "gt": 1}}, "not nullable"),
        ({"name": "r", "if": {"any": []}, "then": {"column": "age", "gt": 1}}, "non-empty list"),
        ({"name": "r", "if": {"column": "age", "lt": "15"}, "then": {"column": "age", "gt": 1}}, "finite number"),
        ({"if": {"column": "age", "lt": 1}, "then": {"column": "age", "gt": 1}}, "rules[0]"),
        ({"name": "r", "iff": {}, "if": {}, "then": {}}, "unknown key(s) ['iff']"),
    ],
)
def test_bad_rules_name_the_rule_and_key(rule, message):
    with pytest.raises(SchemaError) as info:
        Schema.from_dict(base([rule]))
    assert message in str(info.value)


def test_duplicate_rule_names_are_refused():
    with pytest.raises(SchemaError, match="duplicate rule name"):
        Schema.from_dict(base([CHILD_MARRIED, CHILD_MARRIED]))


def test_violation_rates_by_hand():
    phd = {
        "name": "child_phd",
        "if": {"column": "age", "lt": 15},
        "then": {"any": [{"column": "edu", "is_null": True}, {"column": "edu", "ne": "12"}]},
    }
    adult = {
        "name": "adult_set",
        "if": {"column": "age", "ge": 15},
        "then": {"all": [{"column": "married", "is_null": False}, {"column": "edu", "in": ["1", "2", "12"]}]},
    }
    schema = Schema.from_dict(base([CHILD_MARRIED, phd, adult]))
    df = pd.DataFrame(
        {
            "age": [3.0, 10.0, 14.0, 15.0, 40.0, 70.0, 12.0, 30.0],
            "married": [None, "yes", None, "no", None, "yes", None, "no"],
            "edu": [None, "12", "1", "2", "12", None, "12", "1"],
        }
    )
    rates = violation_rates(df, schema.rules)
    # child_married: age<15 rows are 0,1,2,6; row 1 is married -> 1 of 8
    assert rates["rules"]["child_married"] == {"violations": 1, "applies": 4, "rate": 1 / 8}
    # child_phd: rows 1 and 6 are children with edu 12 (a null edu, row 0, is allowed)
    assert rates["rules"]["child_phd"]["violations"] == 2
    # adult_set: adults are 3,4,5,7; row 4 has no marital status, row 5 a null edu (null is in no list)
    assert rates["rules"]["adult_set"]["violations"] == 2
    assert rates["any_rate"] == pytest.approx(len({1, 6, 4, 5}) / 8)
    assert violation_rates(df.drop(columns="edu"), schema.rules)["skipped"] == ["child_phd", "adult_set"]


def test_a_null_satisfies_no_value_test():
    rule = {"name": "r", "if": {"column": "age", "gt": -1}, "then": {"column": "married", "ne": "yes"}}
    schema = Schema.from_dict(base([rule]))
    df = pd.DataFrame({"age": [1.0, 2.0], "married": [None, "no"], "edu": ["1", "1"]})
    assert violation_rates(df, schema.rules)["rules"]["r"]["violations"] == 1  # the null row


def test_nist_rules_hold_on_every_real_excerpt(shared_data):
    from dpsynth.tables import prepare, read_csv

    schema = Schema.load(REPO / "benchmarks" / "nist.schema.json")
    assert len(schema.rules) >= 10
    for name in ("ma2019", "tx2019"):
        path = shared_data / "nist" / f"{name}.csv"
        if not path.is_file():
            pytest.skip(f"{path} not found")
        table, _ = prepare(read_csv(path, schema), schema)
        rates = violation_rates(table, schema.rules)
        assert not rates["skipped"]
        assert {r: v["violations"] for r, v in rates["rules"].items() if v["violations"]} == {}, name
        assert all(v["applies"] > 0 for v in rates["rules"].values())  # no rule is vacuous on the real data


def test_nist_rules_catch_a_married_child():
    schema = Schema.load(REPO / "benchmarks" / "nist.schema.json").subset(["AGEP", "MSP"])
    df = pd.DataFrame({"AGEP": np.array([10.0, 40.0]), "MSP": ["1", "1"]})
    assert violation_rates(df, schema.rules)["rules"]["child_MSP"]["violations"] == 1
