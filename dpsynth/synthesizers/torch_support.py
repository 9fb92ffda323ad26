"""Torch plumbing for the DP-SGD generators: device choice, seeded generators, thread count, progress bar.

None of it touches privacy: Opacus' gradient noise comes from the fit's
:class:`~dpsynth.privacy.noise.NoiseSource`, never from the generators seeded here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from dpsynth.errors import UsageError


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device={device!r} but CUDA is not available; use device='auto' or 'cpu'")
    if resolved.type not in ("cpu", "cuda"):
        raise UsageError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    return resolved


@contextlib.contextmanager
def seeded_torch(rng: np.random.Generator, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators from ``rng`` inside the block, leaving the caller's state intact.

    For everything torch draws that is not privacy noise (initialisation,
    Poisson sampling, dropout, generated rows); Opacus' gradient noise comes
    from :meth:`~dpsynth.privacy.noise.NoiseSource.torch_generator`.
    """
    seed = int(rng.integers(0, 2**62))
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (``None``: leave torch's setting), then restore."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def epoch_progress(enabled: bool, label: str, epochs: int):
    """Report each epoch: a sub-step ``epoch`` of the open step (:mod:`dpsynth.steps`), and a rich bar.

    The bar shows when ``enabled`` and no step recorder owns the terminal (a
    live step display, or a CLI command printing only its own lines); the
    recorder logs every epoch either way.
    ``update(advance=1, info=...)`` marks an epoch done.
    """
    import time

    from dpsynth.steps import current_steps

    steps = current_steps()
    done = 0
    last = time.perf_counter()

    def record(advance: int) -> None:
        nonlocal done, last
        for _ in range(advance):
            done += 1
            now = time.perf_counter()
            steps.record("epoch", now - last, index=done, total=epochs)
            last = now

    if not enabled or steps.owns_terminal:
        yield lambda advance=0, info="": record(advance)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=epochs, info="")

        def update(advance: int = 0, info: str = "") -> None:
            record(advance)
            bar.update(task, advance=advance, info=info)

        yield update
