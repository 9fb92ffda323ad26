"""mbi's internals are reached through one module, pinned to one version, and fail loudly when absent."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from dpsynth.synthesizers import _mbi_compat as compat

REPO = Path(__file__).resolve().parents[2]


def test_installed_mbi_is_the_pinned_version_and_has_every_internal() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in dependencies if re.match(r"mbi\b", d)]
    assert pins == [f"mbi=={compat.MBI_VERSION}"], f"pyproject must pin the mbi _mbi_compat was written for: {pins}"
    assert compat.installed_version() == compat.MBI_VERSION, (
        f"installed mbi {compat.installed_version()} is not the pinned mbi=={compat.MBI_VERSION}"
    )
    compat.check_mbi()


@pytest.mark.parametrize("submodule, dotted", compat.REQUIRED, ids=[".".join(r) for r in compat.REQUIRED])
def test_an_mbi_without_an_internal_is_refused_naming_it_and_the_pinned_version(monkeypatch, submodule, dotted) -> None:
    *owner_path, attribute = dotted.split(".")
    owner = getattr(compat.mbi, submodule)
    for part in owner_path:
        owner = getattr(owner, part)
    if isinstance(owner, type):  # a method may live on a base class: remove it where it is defined
        owner = next(k for k in owner.__mro__ if attribute in vars(k))
    monkeypatch.delattr(owner, attribute)
    with pytest.raises(ImportError) as info:
        compat.check_mbi()
    message = str(info.value)
    assert f"mbi.{submodule}.{dotted}" in message and f"mbi=={compat.MBI_VERSION}" in message


def test_no_other_module_imports_mbi_or_its_internals() -> None:
    for path in sorted((REPO / "dpsynth").rglob("*.py")):
        if path.name == "_mbi_compat.py":
            continue
        source = path.read_text()
        assert not re.search(r"^\s*(import mbi|from mbi\b)", source, re.MULTILINE), (
            f"{path}: import mbi via _mbi_compat"
        )
        for _, dotted in compat.REQUIRED:
            name = dotted.split(".")[-1]
            assert name not in source.replace(f"compat.{name}", ""), f"{path} uses mbi's {dotted}"
