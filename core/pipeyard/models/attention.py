"""Multi-head attention through ``scaled_dot_product_attention``, with optional slicing.

One :class:`Attention` module serves three uses, with diffusers' key names
(``group_norm``, ``to_q``, ``to_k``, ``to_v``, ``to_out.0``):

- spatial self-attention of DDPM UNets and the VAE (4-d input, group norm, residual),
- self-attention ``attn1`` and cross-attention ``attn2`` of transformer blocks (3-d input).

Slicing (:meth:`Attention.set_slice_size`) runs the batch x heads axis in chunks so that only
one chunk's attention matrix lives at a time; it lowers peak memory for large batches and
gives the same result. Projections stay separate modules (diffusers' keys) but run fused: one
matmul for q/k/v of self-attention, one for k/v of cross-attention (:mod:`.fused`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from .. import errors
from . import direct
from .fused import FusedLinear, precomputed

SliceSize = int | str | None


class Attention(nn.Module):
    """``softmax(q k^T / sqrt(d)) v`` over ``heads`` heads of width ``dim_head``.

    Args:
        query_dim: channels of the input (and of the output).
        cross_attention_dim: channels of ``encoder_hidden_states``; ``None`` = self-attention.
        norm_num_groups: build a ``group_norm`` applied to the input first (spatial attention).
        residual_connection: add the input to the output, then divide by ``rescale_output_factor``.
    """

    def __init__(
        self,
        query_dim: int,
        *,
        heads: int = 8,
        dim_head: int = 64,
        cross_attention_dim: int | None = None,
        bias: bool = False,
        norm_num_groups: int | None = None,
        eps: float = 1e-5,
        residual_connection: bool = False,
        rescale_output_factor: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        inner_dim = heads * dim_head
        context_dim = cross_attention_dim or query_dim
        self.heads = heads
        self.is_cross_attention = cross_attention_dim is not None
        self.residual_connection = residual_connection
        self.rescale_output_factor = rescale_output_factor
        self.slice_size: int | None = None
        self.group_norm = nn.GroupNorm(norm_num_groups, query_dim, eps=eps) if norm_num_groups else None
        self.to_q = nn.Linear(query_dim, inner_dim, bias=bias)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=bias)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, query_dim), nn.Dropout(dropout)])
        # Plain attributes, not submodules: the state dict keeps to_q/to_k/to_v.
        self._qkv = FusedLinear([(self, "to_q"), (self, "to_k"), (self, "to_v")])
        self._kv = FusedLinear([(self, "to_k"), (self, "to_v")])

    @property
    def sliceable_head_dim(self) -> int:
        return self.heads

    def set_slice_size(self, slice_size: int | None) -> None:
        """Compute attention for ``slice_size`` (batch x head) pairs at a time; ``None`` = all."""
        self.slice_size = slice_size

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend; 4-d input ``(B, C, H, W)`` is treated as ``H*W`` tokens of ``C`` channels.

        ``attention_mask`` is an additive bias broadcastable to ``(B, heads, queries, keys)``,
        e.g. ``(B, 1, keys)``.
        """
        residual = hidden_states
        if hidden_states.ndim == 4:
            batch, channels, height, width = hidden_states.shape
            if self.group_norm is not None:
                hidden_states = direct.group_norm(self.group_norm, hidden_states)
            tokens = hidden_states.flatten(2).transpose(1, 2)
            out = self._attend(tokens, None, attention_mask)
            out = out.transpose(1, 2).reshape(batch, channels, height, width)
        else:
            tokens = hidden_states
            if self.group_norm is not None:
                tokens = direct.group_norm(self.group_norm, tokens.transpose(1, 2)).transpose(1, 2)
            out = self._attend(tokens, encoder_hidden_states, attention_mask)
        if self.residual_connection:
            out = out + residual
        if self.rescale_output_factor != 1.0:
            out = out / self.rescale_output_factor
        return out

    def _attend(
        self, tokens: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        batch = tokens.shape[0]
        query, key, value = self._project(tokens, context)
        if mask is not None and mask.ndim == 3:
            mask = mask.unsqueeze(1)  # (B, 1, keys) -> (B, 1, 1, keys): same bias for every head
        if self.slice_size is None:
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        else:
            out = self._sliced_attention(query, key, value, mask)
        out = out.transpose(1, 2).reshape(batch, -1, query.shape[1] * query.shape[3])
        out = direct.linear(self.to_out[0], out)
        return self.to_out[1](out) if self.training else out  # dropout is the identity in eval

    def _project(
        self, tokens: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(batch, heads, length, dim_head)`` queries, keys and values, with fused matmuls."""
        if context is None:  # self-attention: one matmul for q, k and v
            query, key, value = self._split_heads(self._qkv(tokens), 3).unbind(0)
            return query, key, value
        query = self._split_heads(direct.linear(self.to_q, tokens), 1)[0]
        keys_values = precomputed(self, context)  # the model's one matmul for all layers, if made
        if keys_values is None:
            keys_values = self._kv(context)
        key, value = self._split_heads(keys_values, 2).unbind(0)
        return query, key, value

    def _split_heads(self, x: torch.Tensor, parts: int) -> torch.Tensor:
        """``(B, L, parts * heads * d)`` -> ``(parts, B, heads, L, d)`` (a view)."""
        batch, length, _ = x.shape
        return x.view(batch, length, parts, self.heads, -1).permute(2, 0, 3, 1, 4)

    def _sliced_attention(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """SDPA over chunks of ``slice_size`` (batch x head) pairs; same result, smaller peak."""
        batch, heads, length, dim = query.shape
        q, k, v = (t.reshape(batch * heads, t.shape[2], dim) for t in (query, key, value))
        if mask is not None:
            mask = mask.expand(batch, heads, length, k.shape[1]).reshape(batch * heads, length, k.shape[1])
        out = torch.empty_like(q)
        step = int(self.slice_size or batch * heads)
        for start in range(0, batch * heads, step):
            part = slice(start, start + step)
            out[part] = F.scaled_dot_product_attention(
                q[part], k[part], v[part], attn_mask=None if mask is None else mask[part]
            )
        return out.view(batch, heads, length, dim)


# ---------------------------------------------------------------------- slicing, model-wide


def attention_modules(model: nn.Module) -> Iterator[Attention]:
    """Every :class:`Attention` inside ``model``, in registration order."""
    for module in model.modules():
        if isinstance(module, Attention):
            yield module


def resolve_slice_size(slice_size: SliceSize, heads: int) -> int | None:
    """``"auto"`` -> half the heads, ``"max"`` -> 1, ``None`` -> no slicing, an int -> that many
    heads at a time, capped at the layer's head count (so one ``pipe.enable_attention_slicing(2)``
    reaches a multi-head UNet and a one-head VAE alike).

    Raises:
        ModelConfigError: an int below 1, or an unknown string.
    """
    if slice_size is None:
        return None
    if slice_size == "auto":
        return max(heads // 2, 1)
    if slice_size == "max":
        return 1
    if isinstance(slice_size, int) and not isinstance(slice_size, bool) and slice_size >= 1:
        return min(slice_size, heads)
    raise errors.ModelConfigError(
        "set_attention_slice", "slice_size", slice_size, "'auto', 'max', None or an int >= 1 (heads at a time)"
    )


class AttentionSlicingMixin:
    """``set_attention_slice`` for models built from :class:`Attention` modules.

    Pipelines call ``set_attention_slice`` on every component that has it.
    """

    def set_attention_slice(self, slice_size: SliceSize | list[int]) -> None:
        """Slice attention to lower peak memory: ``"auto"`` (half the heads of each layer),
        ``"max"`` (one head at a time), an int (heads at a time, for every layer), a list of
        ints (one per attention layer) or ``None`` (off).
        """
        layers = list(attention_modules(self))  # type: ignore[arg-type]
        if isinstance(slice_size, list):
            if len(slice_size) != len(layers):
                raise errors.ModelConfigError(
                    type(self).__name__, "slice_size", slice_size, f"a list of {len(layers)} ints, one per layer"
                )
            sizes = [resolve_slice_size(s, layer.heads) for s, layer in zip(slice_size, layers)]
        else:
            sizes = [resolve_slice_size(slice_size, layer.heads) for layer in layers]
        for layer, size in zip(layers, sizes):
            layer.set_slice_size(size)

    def enable_attention_slicing(self, slice_size: SliceSize = "auto") -> None:
        self.set_attention_slice(slice_size)

    def disable_attention_slicing(self) -> None:
        self.set_attention_slice(None)


# ---------------------------------------------------------------------- old checkpoints

# Checkpoints from diffusers < 0.14 (e.g. the 2022 DDPM repos) named the spatial attention
# projections query/key/value/proj_attn; group_norm kept its name.
_LEGACY_ATTENTION_KEY = re.compile(
    r"^(?P<path>.*\.attentions\.\d+)\.(?P<old>query|key|value|proj_attn)\.(?P<p>weight|bias)$"
)
_LEGACY_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def rename_legacy_attention_keys(keys: list[str]) -> dict[str, str]:
    """``{old key: new key}`` for spatial-attention keys in the pre-2023 naming."""
    renamed = {}
    for key in keys:
        match = _LEGACY_ATTENTION_KEY.match(key)
        if match:
            renamed[key] = f"{match['path']}.{_LEGACY_NAMES[match['old']]}.{match['p']}"
    return renamed
