"""The one door to mbi's internals: everything dpsynth uses that mbi does not export.

Written for **mbi 2.0.0** (private-pgm's ``mbi`` package, McKenna et al.),
the exact version pinned in pyproject.toml. :mod:`dpsynth.synthesizers.marginals`
reaches past mbi's public API (``mbi.__all__``) in a few places, for speed
and reproducibility (its docstring says why); they all live here:

* ``estimation.MirrorDescent._multi_step``, ``estimation.MirrorDescentState``
  and ``estimation.CALLBACK_EVERY``: mbi's jitted mirror-descent steps, run
  from a state set up in numpy (:func:`mirror_descent`);
* ``estimation.minimum_variance_unbiased_total``: the noisy record count;
* ``marginal_loss.from_linear_measurements``: the L2 loss of the measurements;
* ``junction_tree.make_junction_tree`` and ``junction_tree.message_passing_order``:
  the tree exact inference in numpy runs on; ``junction_tree.hypothetical_model_size``:
  AIM's model-size filter.

Importing this module checks that the installed mbi has every one of them
(:func:`check_mbi`) and fails at import, naming the missing attribute and
the pinned version, rather than deep inside a fit. It also switches JAX to
float64 before mbi is imported (in float32 mbi's estimation can stall on large
tables: its own warning); that is a process-wide JAX setting, and no other
dpsynth component uses JAX.
"""

from __future__ import annotations

import math
import warnings
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType

import jax

jax.config.update("jax_enable_x64", True)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # mbi's import-time advice on JAX settings (float32, compilation cache)
    import mbi
    from mbi import Domain, LinearMeasurement, estimation, junction_tree, marginal_loss

#: The mbi release this module was written against (pinned in pyproject.toml).
MBI_VERSION = "2.0.0"

#: (submodule, dotted attribute) for every mbi internal used here.
REQUIRED: tuple[tuple[str, str], ...] = (
    ("estimation", "MirrorDescent._multi_step"),
    ("estimation", "MirrorDescentState"),
    ("estimation", "CALLBACK_EVERY"),
    ("estimation", "minimum_variance_unbiased_total"),
    ("marginal_loss", "from_linear_measurements"),
    ("junction_tree", "make_junction_tree"),
    ("junction_tree", "message_passing_order"),
    ("junction_tree", "hypothetical_model_size"),
)


def installed_version() -> str:
    """The installed mbi distribution's version (``unknown`` when it has no metadata)."""
    try:
        return version("mbi")
    except PackageNotFoundError:
        return "unknown"


def check_mbi(package: ModuleType = mbi) -> None:
    """Raise ``ImportError`` naming the first internal of :data:`REQUIRED` that ``package`` lacks."""
    for submodule, dotted in REQUIRED:
        obj: object = getattr(package, submodule, None)
        for part in dotted.split("."):
            obj = getattr(obj, part, None)
        if obj is None:
            raise ImportError(
                f"dpsynth needs mbi.{submodule}.{dotted}, which the installed mbi {installed_version()} lacks: "
                f"dpsynth.synthesizers._mbi_compat was written for mbi=={MBI_VERSION} (pinned in pyproject.toml); "
                f"install that version (pip install mbi=={MBI_VERSION}) or port _mbi_compat to this one."
            )


check_mbi()

minimum_variance_unbiased_total = estimation.minimum_variance_unbiased_total
loss_from_measurements = marginal_loss.from_linear_measurements
make_junction_tree = junction_tree.make_junction_tree
message_passing_order = junction_tree.message_passing_order
hypothetical_model_size = junction_tree.hypothetical_model_size

_ESTIMATOR = estimation.MirrorDescent()


def mirror_descent(
    loss_fn: mbi.MarginalLossFn,
    potentials: mbi.CliqueVector,
    mu: mbi.CliqueVector,
    alpha: float,
    total: float,
    iters: int,
) -> tuple[mbi.CliqueVector, mbi.CliqueVector]:
    """``(potentials, mu)`` after at least ``iters`` of mbi's jitted mirror-descent steps (Armijo line search).

    Steps run in fused blocks of ``CALLBACK_EVERY``; ``mu`` is a placeholder
    on entry (each step recomputes it from the potentials) and on exit is the
    marginals of the last iterate but one.
    """
    state = estimation.MirrorDescentState(
        mu=mu,
        potentials=potentials,
        alpha=jax.numpy.asarray(alpha),
        loss=jax.numpy.asarray(math.inf, dtype=jax.numpy.float64),
    )
    for _ in range(math.ceil(iters / estimation.CALLBACK_EVERY)):
        state = _ESTIMATOR._multi_step(state, loss_fn, total)
    return state.potentials, state.mu


__all__ = [
    "MBI_VERSION",
    "Domain",
    "LinearMeasurement",
    "mbi",
    "REQUIRED",
    "check_mbi",
    "hypothetical_model_size",
    "installed_version",
    "loss_from_measurements",
    "make_junction_tree",
    "message_passing_order",
    "minimum_variance_unbiased_total",
    "mirror_descent",
]
