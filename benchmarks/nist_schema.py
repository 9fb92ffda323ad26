"""Build a PUBLIC dpsynth schema for the NIST Diverse Communities ACS excerpts.

Every category list and numeric bound comes from NIST's ``data_dictionary.json``
alone; the data files are never opened here, so the schema leaks nothing about
the private rows and can be marked ``"source": "public"``. Bin edges are round
numbers (or ACS conventions such as age 15/16, the poverty line at 100) chosen
without looking at the data.

Rules:

* a dictionary ``values`` object holding ``min``/``max`` describes a numeric
  column: bounds are ``min``/``max`` widened by any other numeric codes listed
  beside them (``NOC`` lists ``"0"`` and ``min: 1``; ``POVPIP`` lists ``"501"``
  above ``max: 500``);
* otherwise the keys are the categories;
* a ``"N"`` key makes the column nullable (``"N"`` is the schema's null marker);
* columns the dictionary cannot bound publicly are left out with a reason:
  ``INDP`` (its 271 codes are only in an external PDF) and the sampling
  weights ``PWGTP``/``WGTP`` (survey design variables, not person attributes).

Usage::

    python benchmarks/nist_schema.py [--dictionary PATH] [--out benchmarks/nist.schema.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python benchmarks/nist_schema.py` from anywhere
    sys.path.insert(0, str(ROOT))

from dpsynth.schema import Column, Schema  # noqa: E402

DEFAULT_DICTIONARY = ROOT.parent / "shared/data/nist/data_dictionary.json"
DEFAULT_OUT = ROOT / "benchmarks/nist.schema.json"
NULL = "N"

#: Columns left out, with the reason printed when the schema is built.
EXCLUDED: dict[str, str] = {
    "INDP": "industry codes: the dictionary only points to an external PDF (271 codes), so no public "
    "category list is available here; INDP_CAT carries the same information coarsened",
    "PWGTP": "person sampling weight: a survey design variable, not an attribute to synthesize",
    "WGTP": "housing sampling weight: a survey design variable, not an attribute to synthesize",
}

#: Public bin edges for numeric columns (must start at the dictionary's min and end at its max).
#: Round numbers / ACS conventions, never derived from the data.
EDGES: dict[str, list[float]] = {
    # 15: MSP/PINCP start; 16: INDP_CAT starts; 3 and 5: EDU and disability questions start.
    "AGEP": [0, 3, 5, 10, 15, 16, 18, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 99],
    "DENSITY": [16.3, 50, 100, 250, 500, 1000, 2000, 3000, 4000, 5000, 7500, 10000, 25000, 52864.7],
    # [0, 1) isolates zero income; negatives (losses) form one bin.
    "PINCP": [
        -9000,
        0,
        1,
        5000,
        10000,
        15000,
        20000,
        25000,
        30000,
        40000,
        50000,
        60000,
        75000,
        100000,
        150000,
        200000,
        300000,
        500000,
        1341000,
    ],
    # 100 = the poverty line; 501 (top code, "above 5 x poverty line") gets its own bin.
    "POVPIP": [0, 50, 100, 125, 150, 200, 250, 300, 400, 500.5, 501],
}
#: Small counts: one bin per whole number.
UNIT_BINS = {"NOC", "NPF"}
#: Whole-number numeric columns (sampled back as integers).
INTEGER = {"AGEP", "NOC", "NPF", "PINCP", "POVPIP"}

QUASI_IDENTIFIERS = ["PUMA", "AGEP", "SEX", "MSP", "HISP", "RAC1P", "EDU"]


def _null(column: str, null: bool = True) -> dict[str, Any]:
    return {"column": column, "is_null": null}


_CHILD = {"column": "AGEP", "lt": 15}
#: Consistency rules, after SDNist v2.5's inconsistency checks (sdnist/metrics/inconsistency.py, same names)
#: and the dictionary's own "N/A (less than 15 years old)" codes. Each holds on every record of the NIST
#: excerpts (checked by tests/test_benchmark_rules.py); rules need public knowledge only (the questionnaire).
RULES: list[dict[str, Any]] = [
    {
        "name": "child_DVET",
        "description": "Children (< 15) are not disabled veterans",
        "if": _CHILD,
        "then": _null("DVET"),
    },
    {
        "name": "child_MSP",
        "description": "Children (< 15) have no marital status (N/A)",
        "if": _CHILD,
        "then": _null("MSP"),
    },
    {
        "name": "child_PINCP",
        "description": "Children (< 15) have no personal income (N/A)",
        "if": _CHILD,
        "then": _null("PINCP"),
    },
    {
        "name": "child_PINCP_DECILE",
        "description": "Children (< 15) have no income decile (N/A)",
        "if": _CHILD,
        "then": _null("PINCP_DECILE"),
    },
    {
        "name": "child_INDP_CAT",
        "description": "Children (< 15) have no work industry (N/A)",
        "if": _CHILD,
        "then": _null("INDP_CAT"),
    },
    {
        "name": "child_phd",
        "description": "Children (< 15) do not hold doctorates",
        "if": _CHILD,
        "then": {"any": [_null("EDU"), {"column": "EDU", "ne": "12"}]},
    },
    {
        "name": "toddler_diploma",
        "description": "Toddlers (< 5) have no high school diploma",
        "if": {"column": "AGEP", "lt": 5},
        "then": {"any": [_null("EDU"), {"column": "EDU", "in": ["1", "2", "3", "4"]}]},
    },
    {
        "name": "infant_EDU",
        "description": "Infants (< 3) are not in school (EDU N/A)",
        "if": {"column": "AGEP", "lt": 3},
        "then": _null("EDU"),
    },
    {
        "name": "adult_N",
        "description": "Adults (> 15) have a value, not N/A, for MSP, PINCP, PINCP_DECILE, EDU",
        "if": {"column": "AGEP", "gt": 15},
        "then": {"all": [_null(c, False) for c in ("MSP", "PINCP", "PINCP_DECILE", "EDU")]},
    },
    {
        "name": "gq_not_owner",
        "description": "Group-quarters residents neither own nor rent (gq_own_jail, gq_own_dorm)",
        "if": {"column": "HOUSING_TYPE", "in": ["2", "3"]},
        "then": {"column": "OWN_RENT", "eq": "0"},
    },
    {
        "name": "house_OWN_RENT",
        "description": "People in housing units own or rent",
        "if": {"column": "HOUSING_TYPE", "eq": "1"},
        "then": {"column": "OWN_RENT", "in": ["1", "2"]},
    },
    {
        "name": "gq_h_family_NOC",
        "description": "Group-quarters residents are not in family households (NOC N/A)",
        "if": {"column": "HOUSING_TYPE", "in": ["2", "3"]},
        "then": _null("NOC"),
    },
    {
        "name": "gq_h_family_NPF",
        "description": "Group-quarters residents are not in family households (NPF N/A)",
        "if": {"column": "HOUSING_TYPE", "in": ["2", "3"]},
        "then": _null("NPF"),
    },
    {
        "name": "house_NOC",
        "description": "People in housing units state their number of own children",
        "if": {"column": "HOUSING_TYPE", "eq": "1"},
        "then": _null("NOC", False),
    },
]


def _as_number(key: str) -> float | None:
    try:
        return float(key)
    except ValueError:
        return None


def column_from_entry(name: str, entry: dict[str, Any]) -> Column:
    """One schema column from one dictionary entry (see the module docstring for the rules)."""
    values = entry.get("values")
    if not isinstance(values, dict) or not values:
        raise ValueError(f"{name}: the dictionary lists no values")
    description = str(entry.get("description", "")).strip()
    nullable = NULL in values
    if "min" in values and "max" in values:
        codes = [_as_number(k) for k in values if k not in ("min", "max", NULL)]
        if any(c is None for c in codes):
            raise ValueError(f"{name}: mixes a min/max range with non-numeric codes {list(values)}")
        lower = min([float(values["min"]), *codes])
        upper = max([float(values["max"]), *codes])
        integer = name in INTEGER
        lower_out = int(lower) if integer else lower
        upper_out = int(upper) if integer else upper
        note = f"NIST dictionary: {description}; bounds {lower_out}..{upper_out} from its min/max"
        if codes:
            note += (
                f" and listed code(s) {[values_key for values_key in values if values_key not in ('min', 'max', NULL)]}"
            )
        if name in EDGES:
            return Column(
                name=name,
                kind="numeric",
                lower=lower_out,
                upper=upper_out,
                edges=tuple(EDGES[name]),
                integer=integer,
                nullable=nullable,
                description=note + "; round-number edges",
            )
        if name in UNIT_BINS:
            return Column(
                name=name,
                kind="numeric",
                lower=lower_out,
                upper=upper_out,
                bins=int(upper - lower) + 1,
                integer=True,
                nullable=nullable,
                description=note + "; one bin per count",
            )
        return Column(
            name=name,
            kind="numeric",
            lower=lower_out,
            upper=upper_out,
            bins=10,
            integer=integer,
            nullable=nullable,
            description=note + "; 10 equal-width bins",
        )
    categories = [k for k in values if k != NULL]
    return Column(
        name=name,
        kind="categorical",
        categories=tuple(categories),
        nullable=nullable,
        description=f"NIST dictionary: {description}; category codes as listed there",
    )


def build_schema(dictionary: dict[str, Any], verbose: bool = True) -> Schema:
    """The public schema for every dictionary column that can be bounded publicly."""
    columns = []
    for name, entry in dictionary.items():
        if name in EXCLUDED:
            if verbose:
                print(f"left out {name}: {EXCLUDED[name]}")
            continue
        columns.append(column_from_entry(name, entry))
    names = {c.name for c in columns}
    from dpsynth.benchmarking.consistency import parse_rules

    return Schema(
        columns=columns,
        name="nist-acs-diverse-communities",
        source="public",
        na_values=(NULL,),
        quasi_identifiers=tuple(q for q in QUASI_IDENTIFIERS if q in names),
        description=(
            "NIST Diverse Communities Data Excerpts (ACS). Built by benchmarks/nist_schema.py from "
            "data_dictionary.json only: categories, bounds and nullability from the dictionary, bin "
            "edges are round numbers; no value was read from the data. INDP, PWGTP and WGTP are "
            "left out (no public bound in the dictionary / sampling weights)."
        ),
        rules=parse_rules(RULES, {c.name: c for c in columns}),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dictionary", type=Path, default=DEFAULT_DICTIONARY)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    dictionary = json.loads(args.dictionary.read_text(encoding="utf-8"))
    schema = build_schema(dictionary)
    schema.save(args.out)
    print(f"wrote {args.out}: {len(schema.columns)} columns, public")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
