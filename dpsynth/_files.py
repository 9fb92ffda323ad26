"""Atomic file writes: a file is either complete or absent, never half written.

Shared with ``audits`` (the lower layer, which must not import dpsynth).
"""

from audits._files import atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_text"]
