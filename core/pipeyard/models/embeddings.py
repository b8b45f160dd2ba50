"""Timestep embeddings: sinusoidal and Gaussian-Fourier projections, and the MLP after them.

Notation: ``t`` are the timesteps (or noise levels), ``d`` the embedding width, ``h = d // 2``.
Sinusoidal (Ho et al. 2020, after Vaswani et al. 2017)::

    f_i = exp(-ln(max_period) * i / (h - shift)),   i = 0 .. h-1
    emb = [sin(t f), cos(t f)]      (or [cos, sin] with flip_sin_to_cos)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .activations import activation


def sinusoidal_frequencies(half_dim: int, shift: float, max_period: float = 10000.0) -> torch.Tensor:
    """The ``h`` frequencies ``f_i`` of the sinusoidal embedding, in float32."""
    exponent = -math.log(max_period) * torch.arange(half_dim, dtype=torch.float32)
    return torch.exp(exponent / (half_dim - shift))


class SinusoidalTimestepProjection(nn.Module):
    """``t -> [sin(t f), cos(t f)]`` of width ``num_channels``, always computed in float32.

    The frequency table is computed once. It is a plain attribute, not a buffer, so that
    ``model.half()`` does not round it: diffusers computes these frequencies in float32.
    """

    def __init__(self, num_channels: int, flip_sin_to_cos: bool, downscale_freq_shift: float) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.flip_sin_to_cos = flip_sin_to_cos
        self._frequencies = sinusoidal_frequencies(num_channels // 2, downscale_freq_shift)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> SinusoidalTimestepProjection:
        # Follow .to(device) / .cuda() but never a dtype cast: probe fn with an empty tensor.
        self._frequencies = self._frequencies.to(fn(self._frequencies[:0]).device)
        return super()._apply(fn, *args, **kwargs)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        frequencies = self._frequencies
        if frequencies.device != timesteps.device:  # timesteps given on another device
            frequencies = frequencies.to(timesteps.device)
        angles = timesteps[:, None].float() * frequencies[None, :]
        sin, cos = torch.sin(angles), torch.cos(angles)
        emb = torch.cat([cos, sin] if self.flip_sin_to_cos else [sin, cos], dim=-1)
        if self.num_channels % 2:
            emb = nn.functional.pad(emb, (0, 1))
        return emb


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of ``log(sigma)`` (Song et al. 2021, score SDEs).

    ``weight`` is a fixed random vector (part of the checkpoint, never trained).
    """

    def __init__(self, embedding_size: int = 256, scale: float = 1.0, log: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)
        self.log = log

    def forward(self, sigmas: torch.Tensor) -> torch.Tensor:
        x = torch.log(sigmas) if self.log else sigmas
        angles = x[:, None] * self.weight[None, :] * 2 * math.pi
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class TimestepEmbedding(nn.Module):
    """The MLP ``linear_1 -> act -> linear_2`` that widens the projected timestep.

    With ``cond_proj_dim`` (a UNet's ``time_cond_proj_dim``: latent consistency models embed
    the guidance scale this way), ``condition`` is projected without bias and added to the
    projected timestep before the MLP.
    """

    def __init__(self, in_channels: int, time_embed_dim: int, act_fn: str = "silu", cond_proj_dim: int | None = None) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.act = activation(act_fn)
        self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim)
        self.cond_proj = nn.Linear(cond_proj_dim, in_channels, bias=False) if cond_proj_dim else None

    def forward(self, sample: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if condition is not None:
            if self.cond_proj is None:
                from .. import errors

                raise errors.ModelInputError(
                    "timestep_cond was given, but this UNet has no time_cond_proj_dim to project it with; "
                    "pass timestep_cond=None"
                )
            sample = sample + self.cond_proj(condition)
        return self.linear_2(self.act(self.linear_1(sample)))


class ImageProjection(nn.Module):
    """An image embedding as ``num_image_text_embeds`` extra context tokens (IP-Adapter's projection)."""

    def __init__(self, image_embed_dim: int = 768, cross_attention_dim: int = 768, num_image_text_embeds: int = 32) -> None:
        super().__init__()
        self.num_image_text_embeds = num_image_text_embeds
        self.image_embeds = nn.Linear(image_embed_dim, num_image_text_embeds * cross_attention_dim)
        self.norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        tokens = self.image_embeds(image_embeds.to(self.image_embeds.weight.dtype))
        return self.norm(tokens.reshape(image_embeds.shape[0], self.num_image_text_embeds, -1))


def broadcast_timesteps(
    timestep: torch.Tensor | float | int, batch_size: int, device: torch.device, scalar_dtype: torch.dtype | None
) -> torch.Tensor:
    """Turn a python number, 0-d or 1-d tensor into a 1-d tensor of ``batch_size`` timesteps.

    Args:
        scalar_dtype: dtype for python numbers; ``None`` picks int64 for ints, float64 for floats.
    """
    if not torch.is_tensor(timestep):
        if scalar_dtype is None:
            scalar_dtype = torch.float64 if isinstance(timestep, float) else torch.int64
            if device.type == "mps" and scalar_dtype == torch.float64:
                scalar_dtype = torch.float32
        timestep = torch.tensor([timestep], dtype=scalar_dtype, device=device)
    elif timestep.ndim == 0:
        timestep = timestep[None]
    return timestep.to(device).expand(batch_size)


class MultiIPAdapterImageProjection(nn.Module):
    """One image projection per IP-Adapter, each applied to its own image embeddings."""

    def __init__(self, IPAdapterImageProjectionLayers: list[nn.Module] | tuple[nn.Module, ...]) -> None:  # noqa: N803
        super().__init__()
        self.image_projection_layers = nn.ModuleList(IPAdapterImageProjectionLayers)

    @property
    def num_ip_adapters(self) -> int:
        return len(self.image_projection_layers)

    def forward(self, image_embeds: list[torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
        """``image_embeds``: one tensor per adapter, ``(batch, images, ...)``; a bare tensor is the
        older single-adapter form ``(batch, ...)`` (deprecated, as in diffusers)."""
        from .. import errors

        if not isinstance(image_embeds, list):
            import warnings

            warnings.warn(
                "image_embeds as one tensor is deprecated; pass a list with one tensor per IP-Adapter",
                errors.PipeyardDeprecationWarning, stacklevel=2,
            )
            image_embeds = [image_embeds.unsqueeze(1)]
        if len(image_embeds) != len(self.image_projection_layers):
            raise errors.ModelInputError(
                f"MultiIPAdapterImageProjection: {len(image_embeds)} image embedding tensor(s) for "
                f"{len(self.image_projection_layers)} IP-Adapter projection(s); pass one per adapter"
            )
        projected = []
        for embeds, layer in zip(image_embeds, self.image_projection_layers):
            batch, images = embeds.shape[:2]
            out = layer(embeds.reshape((batch * images, *embeds.shape[2:])))
            projected.append(out.reshape((batch, images, *out.shape[1:])))
        return projected
