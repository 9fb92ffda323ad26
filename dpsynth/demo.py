"""Demo datasets that an installed package ships, with hand-written public schemas.

``randhie`` is the RAND Health Insurance Experiment table that statsmodels
ships (public domain, 20,190 person-years, 10 columns): a realistic health
table for trying a release end to end without any private data at hand.

``wage_panel`` is linearmodels' NLSY wage panel (545 persons x 8 years, 4,360
rows; needs ``pip install linearmodels``, in the test extra): several rows per
person, for person-level releases (``--privacy-unit nr``, the schema's
``privacy_unit``; ``--panel-time year``; docs/threat-model.md).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pandas as pd

from dpsynth._files import atomic_write_text
from dpsynth.errors import UsageError
from dpsynth.schema import Schema

DEMOS = ("randhie", "wage_panel")


def demo_schema(name: str) -> Schema:
    """The public schema kept in the package for demo ``name``."""
    _check(name)
    text = resources.files("dpsynth.data").joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    return Schema.from_dict(json.loads(text))


def demo_table(name: str) -> pd.DataFrame:
    """The demo table as a DataFrame, with 0/1 indicators written as whole numbers."""
    _check(name)
    if name == "wage_panel":
        try:
            from linearmodels.datasets import wage_panel
        except ImportError:
            raise UsageError("the wage_panel demo needs linearmodels: pip install linearmodels") from None
        return wage_panel.load()[["nr", "year", "married", "union", "lwage"]]
    from statsmodels.datasets import randhie

    table = randhie.load_pandas().data.copy()
    for column in ("mdvis", "idp", "hlthg", "hlthf", "hlthp"):
        table[column] = table[column].astype(int)
    return table


def export_demo(name: str, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``<name>.csv`` and ``<name>.schema.json`` into ``out_dir``; return both paths."""
    out_dir = Path(out_dir)
    csv_path, schema_path = out_dir / f"{name}.csv", out_dir / f"{name}.schema.json"
    atomic_write_text(csv_path, demo_table(name).to_csv(index=False))
    demo_schema(name).save(schema_path)
    return csv_path, schema_path


def _check(name: str) -> None:
    if name not in DEMOS:
        raise UsageError(f"unknown demo dataset {name!r}; available: {', '.join(DEMOS)}")
