"""Files that are complete or absent: atomic writes, staged directories, and JSON for numpy values.

Atomic writes are shared with ``audits`` (the lower layer, which must not
import dpsynth).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from audits._files import atomic_write_bytes, atomic_write_text


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback for numpy scalars and arrays, paths and sets; anything else is refused."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_json(path: Path, value: Any) -> None:
    """Indented JSON, written atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, default=json_default) + "\n")


@contextmanager
def staged_directory(out: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``out``; rename it to ``out`` if the block succeeds.

    A release or audit directory is therefore complete or absent: on any
    error the staging directory is removed and ``out`` never appears.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield staging
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "json_default",
    "sha256_file",
    "staged_directory",
]
