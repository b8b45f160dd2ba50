"""What models return: small dataclasses with diffusers' attribute names, and the VAE posterior.

``return_dict=False`` makes models return plain tuples instead; outputs can also be indexed
(``out[0]``) like tuples, as diffusers' outputs can.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from ..torch_utils import randn_tensor


class _TupleLike:
    """Index an output dataclass by position (``out[0]``) or field name (``out["sample"]``)."""

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return getattr(self, key)
        return self.to_tuple()[key]

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]


@dataclass
class UNet2DOutput(_TupleLike):
    """Output of :class:`~pipeyard.models.unet_2d.UNet2DModel`: ``sample`` (B, C, H, W)."""

    sample: torch.Tensor


@dataclass
class UNet2DConditionOutput(_TupleLike):
    """Output of :class:`~pipeyard.models.unet_2d_condition.UNet2DConditionModel`."""

    sample: torch.Tensor


@dataclass
class DecoderOutput(_TupleLike):
    """Output of :meth:`AutoencoderKL.decode`: the decoded images ``sample``."""

    sample: torch.Tensor


class DiagonalGaussianDistribution:
    """The VAE posterior ``N(mean, exp(logvar))`` from the encoder's ``2 * latent_channels`` moments.

    ``logvar`` is clamped to ``[-30, 20]`` as in latent diffusion.
    """

    def __init__(self, parameters: torch.Tensor, deterministic: bool = False) -> None:
        self.parameters = parameters
        self.mean, logvar = torch.chunk(parameters, 2, dim=1)
        self.logvar = torch.clamp(logvar, -30.0, 20.0)
        self.deterministic = deterministic
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)
        if deterministic:
            self.std = self.var = torch.zeros_like(self.mean)

    def sample(self, generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
        """``mean + std * eps`` with ``eps`` drawn like diffusers' ``randn_tensor`` (reproducible)."""
        noise = randn_tensor(
            self.mean.shape, generator=generator, device=self.parameters.device, dtype=self.parameters.dtype
        )
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self, other: DiagonalGaussianDistribution | None = None) -> torch.Tensor:
        """KL divergence to ``other`` (default: the standard normal), summed per sample."""
        if self.deterministic:
            return torch.zeros(self.mean.shape[0], device=self.mean.device)
        if other is None:
            return 0.5 * torch.sum(self.mean.pow(2) + self.var - 1.0 - self.logvar, dim=[1, 2, 3])
        terms = (self.mean - other.mean).pow(2) / other.var + self.var / other.var - 1.0 - self.logvar + other.logvar
        return 0.5 * torch.sum(terms, dim=[1, 2, 3])


@dataclass
class AutoencoderKLOutput(_TupleLike):
    """Output of :meth:`AutoencoderKL.encode`: the posterior ``latent_dist``."""

    latent_dist: DiagonalGaussianDistribution


__all__ = [
    "AutoencoderKLOutput",
    "DecoderOutput",
    "DiagonalGaussianDistribution",
    "UNet2DConditionOutput",
    "UNet2DOutput",
]
