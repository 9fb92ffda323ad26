"""DP-VAE: a tabular variational autoencoder trained end to end with DP-SGD.

Model: a VAE (Kingma & Welling 2014, "Auto-Encoding Variational Bayes") in the
shape of TVAE (Xu et al. 2019, "Modeling Tabular Data using Conditional GAN",
NeurIPS): an MLP encoder to a Gaussian latent, an MLP decoder back to the row,
cross-entropy for every one-hot block (categories, public numeric bins) and a
Gaussian likelihood (fixed scale) for bounded values in [-1, 1]. Unlike TVAE,
the decoder's output scale is a constant rather than a free parameter, so every
trainable weight sits in a layer Opacus computes per-sample gradients for, and
numbers are encoded by the public schema instead of Gaussian mixtures fitted on
the data.

Privacy: the encoder and decoder are trained together with DP-SGD (Abadi et
al. 2016) through Opacus (see :mod:`dpsynth.synthesizers.dpsgd`): each row's
loss gradient -- reconstruction plus KL -- is clipped and the sum noised.
Sampling draws latent codes from the prior and decodes them, which is
post-processing of the decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dpsynth.params import POSITIVE, Constraint, Interval
from dpsynth.randomness import RandomState
from dpsynth.synthesizers.dpsgd import (
    HIDDEN_WIDTHS,
    DPSGDSynthesizer,
    GradSampleMode,
    hidden_widths,
    private_backward,
)
from dpsynth.synthesizers.tensor_encoding import NumericEncoding, Span, TabularTransformer


def _mlp(sizes: Sequence[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return layers


class TabularVAE(nn.Module):
    """Encoder (MLP -> mean, log-variance) and decoder (MLP -> raw row outputs)."""

    def __init__(self, data_dim: int, dims: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(*_mlp([data_dim, *dims]))
        self.mean = nn.Linear(dims[-1], latent_dim)
        self.log_var = nn.Linear(dims[-1], latent_dim)
        self.decoder = nn.Sequential(*_mlp([latent_dim, *reversed(dims)]), nn.Linear(dims[0], data_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        mean, log_var = self.mean(h), self.log_var(h).clamp(-10, 10)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        return self.decoder(z), mean, log_var


def row_losses(raw: torch.Tensor, x: torch.Tensor, spans: Sequence[Span], value_scale: float) -> torch.Tensor:
    """Per-row reconstruction loss: cross-entropy on one-hot blocks, Gaussian NLL on values."""
    loss = raw.new_zeros(len(raw))
    for span in spans:
        if span.activation == "softmax":
            target = x[:, span.start : span.stop].argmax(dim=1)
            loss = loss + F.cross_entropy(raw[:, span.start : span.stop], target, reduction="none")
        else:
            diff = x[:, span.start] - torch.tanh(raw[:, span.start])
            loss = loss + diff.pow(2) / (2 * value_scale**2)
    return loss


class DPVAE(DPSGDSynthesizer):
    """Differentially private tabular VAE (sklearn-style).

    Parameters beyond :class:`~dpsynth.synthesizers.dpsgd.DPSGDSynthesizer`:
    ``hidden_dim`` (encoder widths; the decoder mirrors them), ``latent_dim``,
    ``loss_factor`` (weight of reconstruction against KL, TVAE's default 2) and
    ``value_scale`` (standard deviation of the Gaussian likelihood on values
    scaled to [-1, 1]).
    """

    name: ClassVar[str] = "dpvae"
    _parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        "hidden_dim": [HIDDEN_WIDTHS],
        "latent_dim": [Interval(int, 1, None)],
        "loss_factor": [POSITIVE],
        "value_scale": [POSITIVE],
    }

    def __init__(
        self,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        epochs: int = 8,
        batch_size: int = 1000,
        max_grad_norm: float = 1.0,
        learning_rate: float = 2e-2,
        hidden_dim: Sequence[int] = (64,),
        latent_dim: int = 32,
        loss_factor: float = 2.0,
        value_scale: float = 0.1,
        noise_multiplier: float | None = None,
        numeric_encoding: NumericEncoding = "bins",
        random_state: RandomState = None,
        max_seconds: float | None = None,
        device: str = "auto",
        progress: bool = True,
        grad_sample_mode: GradSampleMode = "ghost",
        num_threads: int | None = 1,
        rows_budget_fraction: float = 0.02,
        secure_noise: bool | None = None,
    ) -> None:
        super().__init__(
            epsilon=epsilon,
            delta=delta,
            epochs=epochs,
            batch_size=batch_size,
            max_grad_norm=max_grad_norm,
            learning_rate=learning_rate,
            noise_multiplier=noise_multiplier,
            numeric_encoding=numeric_encoding,
            random_state=random_state,
            max_seconds=max_seconds,
            device=device,
            progress=progress,
            grad_sample_mode=grad_sample_mode,
            num_threads=num_threads,
            rows_budget_fraction=rows_budget_fraction,
            secure_noise=secure_noise,
        )
        self.hidden_dim = hidden_dim
        self.latent_dim = latent_dim
        self.loss_factor = loss_factor
        self.value_scale = value_scale

    def _build(self, transformer: TabularTransformer, device: torch.device):
        vae = TabularVAE(transformer.dim, hidden_widths(self.hidden_dim), int(self.latent_dim)).to(device)
        return vae, torch.optim.Adam(vae.parameters(), lr=float(self.learning_rate))

    def _step(self, vae, optimizer, real: torch.Tensor) -> dict[str, float]:
        optimizer.zero_grad(set_to_none=True)
        if len(real):
            raw, mean, log_var = vae(real)
            reconstruction = row_losses(raw, real, self.transformer_.spans, float(self.value_scale))
            kl = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1)
            per_row = float(self.loss_factor) * reconstruction + kl
            shown = {"loss": float(per_row.detach().mean()), "kl": float(kl.detach().mean())}
        else:
            per_row, shown = torch.zeros(0, device=real.device), {}
        private_backward(vae, optimizer, per_row, self.grad_sample_mode)
        optimizer.step()
        return shown

    def _finish(self, module: nn.Module) -> None:
        self.decoder_ = module.decoder
        self.decoder_.eval()
        self._latent = module.mean.out_features

    def _generate(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        z = torch.randn(n, self._latent, device=self.device_)
        return self.decoder_(z)
