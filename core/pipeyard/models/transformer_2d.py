"""The spatial transformer of conditional UNets (diffusers' ``Transformer2DModel``, continuous input).

Per block: ``x += attn1(norm1(x))`` (self-attention, or cross-attention when
``only_cross_attention``), ``x += attn2(norm2(x), context)``, ``x += ff(norm3(x))`` with a GEGLU
feed-forward (Shazeer 2020). Around the blocks: group norm, a 1x1 conv (or a linear layer with
``use_linear_projection``, SD 2) in and out, and a residual connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from . import direct
from .attention import Attention
from .outputs import _TupleLike
from .validation import require_choice


@dataclass
class Transformer2DModelOutput(_TupleLike):
    """Output of :class:`Transformer2DModel` with ``return_dict=True``: ``sample`` (B, C, H, W)."""

    sample: torch.Tensor


class GEGLU(nn.Module):
    """``a * gelu(b)`` where ``[a, b] = proj(x)``."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden, gate = direct.linear(self.proj, hidden_states).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    """``net = [GEGLU(dim, inner), Dropout, Linear(inner, dim_out)]`` (keys ``net.0.proj``, ``net.2``).

    diffusers' signature; pipeyard builds the GEGLU feed-forward of SD 1.x/2.x only.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int | None = None,
        mult: int = 4,
        dropout: float = 0.0,
        activation_fn: str = "geglu",
        final_dropout: bool = False,
        inner_dim: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        require_choice("FeedForward", "activation_fn", activation_fn, ("geglu",))
        require_choice("FeedForward", "final_dropout", final_dropout, (False,))
        require_choice("FeedForward", "bias", bias, (True,))
        inner_dim = inner_dim or int(dim * mult)
        self.net = nn.ModuleList([GEGLU(dim, inner_dim), nn.Dropout(dropout), nn.Linear(inner_dim, dim_out or dim)])

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        geglu, dropout, project_out = self.net
        hidden_states = direct.call(geglu, hidden_states)
        if self.training:  # dropout is the identity in eval: skip the call
            hidden_states = dropout(hidden_states)
        return direct.linear(project_out, hidden_states)


class BasicTransformerBlock(nn.Module):
    """Self-attention, cross-attention and feed-forward, each pre-normed with a residual.

    diffusers' constructor and ``forward`` signatures (community code replaces ``forward`` and
    reads ``norm1``..``norm3``, ``attn1``, ``attn2``, ``ff``, ``only_cross_attention`` and the
    ``use_ada_layer_norm*`` flags); the options SD 1.x/2.x do not use are accepted at their
    defaults only.
    """

    # diffusers' flags for its other norm types, read by code that patches forward
    use_ada_layer_norm = False
    use_ada_layer_norm_zero = False
    use_ada_layer_norm_single = False
    use_ada_layer_norm_continuous = False
    use_layer_norm = True
    norm_type = "layer_norm"
    pos_embed = None
    _chunk_size = None

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        attention_head_dim: int,
        dropout: float = 0.0,
        cross_attention_dim: int | None = None,
        activation_fn: str = "geglu",
        num_embeds_ada_norm: int | None = None,
        attention_bias: bool = False,
        only_cross_attention: bool = False,
        double_self_attention: bool = False,
        upcast_attention: bool = False,
        norm_elementwise_affine: bool = True,
        norm_type: str = "layer_norm",
        norm_eps: float = 1e-5,
        final_dropout: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        require_choice(name, "norm_type", norm_type, ("layer_norm",))
        require_choice(name, "num_embeds_ada_norm", num_embeds_ada_norm, (None,))
        require_choice(name, "double_self_attention", double_self_attention, (False,))
        require_choice(name, "norm_elementwise_affine", norm_elementwise_affine, (True,))
        self.only_cross_attention = only_cross_attention
        heads = {
            "heads": num_attention_heads, "dim_head": attention_head_dim, "dropout": dropout,
            "bias": attention_bias, "upcast_attention": upcast_attention,
        }
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn1 = Attention(dim, cross_attention_dim=cross_attention_dim if only_cross_attention else None, **heads)
        self.norm2: nn.LayerNorm | None = None
        self.attn2: Attention | None = None
        if cross_attention_dim is not None:
            self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
            self.attn2 = Attention(dim, cross_attention_dim=cross_attention_dim, **heads)
        self.norm3 = nn.LayerNorm(dim, eps=norm_eps)
        self.ff = FeedForward(dim, dropout=dropout, activation_fn=activation_fn, final_dropout=final_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        timestep: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        class_labels: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        # diffusers applies encoder_attention_mask to attn2 only, also when attn1 cross-attends.
        # Positional arguments in the order of diffusers' Attention.forward (cheaper than keywords).
        self_context = encoder_hidden_states if self.only_cross_attention else None
        normed = direct.layer_norm(self.norm1, hidden_states)
        if cross_attention_kwargs:
            kwargs = _processor_kwargs(cross_attention_kwargs)
            attn1 = direct.call(self.attn1, normed, self_context, attention_mask, **kwargs)
        else:
            kwargs = None
            attn1 = direct.call(self.attn1, normed, self_context, attention_mask)
        hidden_states = hidden_states + attn1
        if self.attn2 is not None and self.norm2 is not None:
            normed = direct.layer_norm(self.norm2, hidden_states)
            if kwargs:
                attn2 = direct.call(self.attn2, normed, encoder_hidden_states, encoder_attention_mask, **kwargs)
            else:
                attn2 = direct.call(self.attn2, normed, encoder_hidden_states, encoder_attention_mask)
            hidden_states = hidden_states + attn2
        return hidden_states + direct.call(self.ff, direct.layer_norm(self.norm3, hidden_states))


def _processor_kwargs(cross_attention_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """What the attention layers get: everything but GLIGEN's entry (which the block consumes)."""
    if not cross_attention_kwargs:
        return {}
    return {key: value for key, value in cross_attention_kwargs.items() if key != "gligen"}


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
        upcast_attention: bool = False,
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
                only_cross_attention=only_cross_attention, dropout=dropout, upcast_attention=upcast_attention,
            )
            for _ in range(num_layers)
        )
        self.proj_out = projection(inner_dim, in_channels)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        timestep: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, Any] | None = None,
        class_labels: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """diffusers' signature; masks given as ``(B, keys)`` 1/0 become additive biases."""
        if attention_mask is not None:
            attention_mask = _as_bias(attention_mask, hidden_states.dtype)
        if encoder_attention_mask is not None:
            encoder_attention_mask = _as_bias(encoder_attention_mask, hidden_states.dtype)
        batch, _, height, width = hidden_states.shape
        residual = hidden_states
        hidden_states = direct.group_norm(self.norm, hidden_states)
        if not self.use_linear_projection:
            hidden_states = direct.conv2d(self.proj_in, hidden_states)
        tokens = hidden_states.permute(0, 2, 3, 1).reshape(batch, height * width, -1)
        if self.use_linear_projection:
            tokens = direct.linear(self.proj_in, tokens)
        for block in self.transformer_blocks:  # positional, in the order of diffusers' signature
            tokens = direct.call(
                block, tokens, attention_mask, encoder_hidden_states, encoder_attention_mask, timestep,
                cross_attention_kwargs, class_labels,
            )
        if self.use_linear_projection:
            tokens = direct.linear(self.proj_out, tokens)
        hidden_states = tokens.reshape(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()
        if not self.use_linear_projection:
            hidden_states = direct.conv2d(self.proj_out, hidden_states)
        output = hidden_states + residual
        return Transformer2DModelOutput(sample=output) if return_dict else (output,)


def _as_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A ``(B, keys)`` keep-mask (1 = attend) -> ``(B, 1, keys)`` additive bias; others as given."""
    if mask.ndim != 2:
        return mask
    return ((1 - mask.to(dtype)) * -10000.0).unsqueeze(1)


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1)
