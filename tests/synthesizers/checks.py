"""Assertions shared by the generator tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dpsynth.schema import Schema


def assert_respects_schema(out: pd.DataFrame, schema: Schema, rows: int) -> None:
    """Columns in schema order, nulls only where allowed, values inside the public domain."""
    assert list(out.columns) == schema.names and len(out) == rows
    for column in schema:
        values = out[column.name]
        if not column.nullable:
            assert values.notna().all(), column.name
        present = values.dropna()
        if column.kind == "categorical":
            assert set(present) <= set(column.categories), column.name
        else:
            assert values.dtype == float, column.name
            assert present.between(column.lower, column.upper).all(), column.name
            if column.integer:
                assert (present == np.round(present)).all(), column.name
