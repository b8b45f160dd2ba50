"""Residual blocks and the 2x down/up sampling layers of UNets and VAEs.

Key names follow diffusers: ``norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut`` in a
residual block, ``conv`` in the samplers.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .. import errors
from . import direct
from .activations import activation
from .fused import PerCallProjections, precomputed

TIME_SCALE_SHIFTS = ("default", "scale_shift")


class ResnetBlock2D(nn.Module):
    """``x + conv2(act(norm2(conv1(act(norm1(x))) + temb))) / output_scale_factor``.

    With ``time_embedding_norm="scale_shift"`` the time embedding gives a scale and a shift
    applied after ``norm2`` instead of being added before it. ``temb_channels=None`` (VAE)
    builds no time projection. ``temb_activated=True``: callers pass ``act(temb)``, computed
    once per model call for all its resnets rather than once per resnet (same numbers).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int | None = None,
        temb_channels: int | None = 512,
        groups: int = 32,
        eps: float = 1e-6,
        act_fn: str = "silu",
        time_embedding_norm: str = "default",
        output_scale_factor: float = 1.0,
        dropout: float = 0.0,
        temb_activated: bool = False,
    ) -> None:
        super().__init__()
        if time_embedding_norm not in TIME_SCALE_SHIFTS:
            raise errors.ModelConfigError(
                "ResnetBlock2D", "resnet_time_scale_shift", time_embedding_norm, f"one of {TIME_SCALE_SHIFTS}"
            )
        out_channels = out_channels or in_channels
        self.time_embedding_norm = time_embedding_norm
        self.output_scale_factor = output_scale_factor
        self.temb_activated = temb_activated
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.time_emb_proj: nn.Linear | None = None
        if temb_channels is not None:
            factor = 2 if time_embedding_norm == "scale_shift" else 1
            self.time_emb_proj = nn.Linear(temb_channels, factor * out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.nonlinearity = activation(act_fn)
        self.conv_shortcut: nn.Conv2d | None = None
        if in_channels != out_channels:
            self.conv_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        act = self.nonlinearity  # leaves run through :mod:`.direct`: same operators, less Python
        hidden = direct.conv2d(self.conv1, direct.activation(act, direct.group_norm(self.norm1, input_tensor)))
        time = None
        if self.time_emb_proj is not None and temb is not None:
            time = precomputed(self, temb)  # the model's one matmul for all resnets, if it made it
            if time is None:
                time = direct.linear(self.time_emb_proj, temb if self.temb_activated else direct.activation(act, temb))
            time = time[:, :, None, None]
        if self.time_embedding_norm == "scale_shift" and time is not None:
            scale, shift = time.chunk(2, dim=1)
            hidden = direct.group_norm(self.norm2, hidden) * (1 + scale) + shift
        else:
            hidden = direct.group_norm(self.norm2, hidden if time is None else hidden + time)
        hidden = direct.activation(act, hidden)
        if self.training:  # dropout is the identity in eval: skip the call
            hidden = self.dropout(hidden)
        hidden = direct.conv2d(self.conv2, hidden)
        shortcut = input_tensor if self.conv_shortcut is None else direct.conv2d(self.conv_shortcut, input_tensor)
        output = shortcut + hidden
        if self.output_scale_factor != 1.0:
            output = output / self.output_scale_factor
        return output


def shared_time_projections(model: nn.Module) -> PerCallProjections:
    """One matmul per ``model`` call for the time projections of all its resnets (built with
    ``temb_activated=True``, they all read the same activated embedding)."""
    resnets = [m for m in model.modules() if isinstance(m, ResnetBlock2D) and m.time_emb_proj is not None]
    return PerCallProjections(resnets, ["time_emb_proj"])


class Downsample2D(nn.Module):
    """Stride-2 3x3 convolution. ``padding=0`` pads right and bottom by one (old DDPM/VAE layout)."""

    def __init__(self, channels: int, padding: int = 1) -> None:
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=padding)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            hidden_states = F.pad(hidden_states, (0, 1, 0, 1))
        return direct.conv2d(self.conv, hidden_states)


class Upsample2D(nn.Module):
    """Nearest-neighbour 2x upsampling (or to ``output_size``), then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, hidden_states: torch.Tensor, output_size: tuple[int, int] | None = None) -> torch.Tensor:
        if hidden_states.shape[0] >= 64:
            hidden_states = hidden_states.contiguous()  # large-batch nearest upsampling needs it
        if output_size is None:
            hidden_states = F.interpolate(hidden_states, scale_factor=2.0, mode="nearest")
        else:
            hidden_states = F.interpolate(hidden_states, size=output_size, mode="nearest")
        return direct.conv2d(self.conv, hidden_states)
