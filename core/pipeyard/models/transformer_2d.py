"""The spatial transformer of conditional UNets (diffusers' ``Transformer2DModel``, continuous input).

Per block: ``x += attn1(norm1(x))`` (self-attention, or cross-attention when
``only_cross_attention``), ``x += attn2(norm2(x), context)``, ``x += ff(norm3(x))`` with a GEGLU
feed-forward (Shazeer 2020). Around the blocks: group norm, a 1x1 conv (or a linear layer with
``use_linear_projection``, SD 2) in and out, and a residual connection.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from . import direct
from .attention import Attention


class GEGLU(nn.Module):
    """``a * gelu(b)`` where ``[a, b] = proj(x)``."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden, gate = direct.linear(self.proj, hidden_states).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    """``net = [GEGLU(dim, 4 dim), Dropout, Linear(4 dim, dim)]`` (keys ``net.0.proj``, ``net.2``)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        inner_dim = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner_dim), nn.Dropout(dropout), nn.Linear(inner_dim, dim)])

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        geglu, dropout, project_out = self.net
        hidden_states = direct.call(geglu, hidden_states)
        if self.training:  # dropout is the identity in eval: skip the call
            hidden_states = dropout(hidden_states)
        return direct.linear(project_out, hidden_states)


class BasicTransformerBlock(nn.Module):
    """Self-attention, cross-attention and feed-forward, each pre-normed with a residual."""

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        attention_head_dim: int,
        *,
        cross_attention_dim: int | None = None,
        only_cross_attention: bool = False,
        dropout: float = 0.0,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.only_cross_attention = only_cross_attention
        heads = {"heads": num_attention_heads, "dim_head": attention_head_dim, "dropout": dropout}
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn1 = Attention(dim, cross_attention_dim=cross_attention_dim if only_cross_attention else None, **heads)
        self.norm2: nn.LayerNorm | None = None
        self.attn2: Attention | None = None
        if cross_attention_dim is not None:
            self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
            self.attn2 = Attention(dim, cross_attention_dim=cross_attention_dim, **heads)
        self.norm3 = nn.LayerNorm(dim, eps=norm_eps)
        self.ff = FeedForward(dim, dropout=dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # diffusers applies encoder_attention_mask to attn2 only, also when attn1 cross-attends.
        self_context = encoder_hidden_states if self.only_cross_attention else None
        hidden_states = hidden_states + direct.call(self.attn1, direct.layer_norm(self.norm1, hidden_states), self_context)
        if self.attn2 is not None and self.norm2 is not None:
            normed = direct.layer_norm(self.norm2, hidden_states)
            hidden_states = hidden_states + direct.call(self.attn2, normed, encoder_hidden_states, encoder_attention_mask)
        return hidden_states + direct.call(self.ff, direct.layer_norm(self.norm3, hidden_states))


class Transformer2DModel(nn.Module):
    """Spatial transformer over the ``H*W`` positions of a feature map (keys as diffusers')."""

    def __init__(
        self,
        num_attention_heads: int,
        attention_head_dim: int,
        in_channels: int,
        *,
        num_layers: int = 1,
        cross_attention_dim: int | None = None,
        norm_num_groups: int = 32,
        use_linear_projection: bool = False,
        only_cross_attention: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        inner_dim = num_attention_heads * attention_head_dim
        self.use_linear_projection = use_linear_projection
        self.norm = nn.GroupNorm(norm_num_groups, in_channels, eps=1e-6, affine=True)
        projection = nn.Linear if use_linear_projection else _conv1x1
        self.proj_in = projection(in_channels, inner_dim)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(
                inner_dim, num_attention_heads, attention_head_dim, cross_attention_dim=cross_attention_dim,
                only_cross_attention=only_cross_attention, dropout=dropout,
            )
            for _ in range(num_layers)
        )
        self.proj_out = projection(inner_dim, in_channels)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, _, height, width = hidden_states.shape
        residual = hidden_states
        hidden_states = direct.group_norm(self.norm, hidden_states)
        if not self.use_linear_projection:
            hidden_states = direct.conv2d(self.proj_in, hidden_states)
        tokens = hidden_states.permute(0, 2, 3, 1).reshape(batch, height * width, -1)
        if self.use_linear_projection:
            tokens = direct.linear(self.proj_in, tokens)
        for block in self.transformer_blocks:
            tokens = direct.call(block, tokens, encoder_hidden_states, encoder_attention_mask)
        if self.use_linear_projection:
            tokens = direct.linear(self.proj_out, tokens)
        hidden_states = tokens.reshape(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()
        if not self.use_linear_projection:
            hidden_states = direct.conv2d(self.proj_out, hidden_states)
        return hidden_states + residual


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1)
