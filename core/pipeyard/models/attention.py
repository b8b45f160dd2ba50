"""Multi-head attention through ``scaled_dot_product_attention``, with optional slicing.

One :class:`Attention` module serves three uses, with diffusers' key names
(``group_norm``, ``to_q``, ``to_k``, ``to_v``, ``to_out.0``):

- spatial self-attention of DDPM UNets and the VAE (4-d input, group norm, residual),
- self-attention ``attn1`` and cross-attention ``attn2`` of transformer blocks (3-d input).

It speaks diffusers' attention-processor protocol (:mod:`.attention_processor`): ``forward``
hands its inputs to ``self.processor``, which reads ``to_q``/``to_k``/``to_v``/``to_out``,
``heads``, ``scale`` and the helpers below. While the processor is the default
:class:`~.attention_processor.AttnProcessor2_0`, the layer runs its fast path instead: the
projections stay separate modules (diffusers' keys) but run fused, one matmul for q/k/v of
self-attention, one for k/v of cross-attention (:mod:`.fused`).

Slicing (:meth:`Attention.set_slice_size`) runs the batch x heads axis of the fast path in
chunks so that only one chunk's attention matrix lives at a time; it lowers peak memory for
large batches and gives the same result.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .. import errors
from . import direct
from .attention_processor import AttentionProcessor, AttentionProcessorMixin, AttnProcessor2_0, select_kwargs
from .fused import FusedLinear, precomputed
from .validation import require_choice

SliceSize = int | str | None


class Attention(nn.Module):
    """``softmax(q k^T / sqrt(d)) v`` over ``heads`` heads of width ``dim_head``.

    Args:
        query_dim: channels of the input (and of the output).
        cross_attention_dim: channels of ``encoder_hidden_states``; ``None`` = self-attention.
        norm_num_groups: build a ``group_norm`` applied to the input first (spatial attention).
        residual_connection: add the input to the output, then divide by ``rescale_output_factor``.
        upcast_attention, upcast_softmax: compute scores / softmax in float32
            (:meth:`get_attention_scores`, used by :class:`~.attention_processor.AttnProcessor`).
        processor: the attention processor; ``None`` = :class:`~.attention_processor.AttnProcessor2_0`.

    Example (a processor that sees every call)::

        def processor(attn, hidden_states, encoder_hidden_states=None, attention_mask=None):
            print(hidden_states.shape)
            return AttnProcessor2_0()(attn, hidden_states, encoder_hidden_states, attention_mask)

        layer.set_processor(processor)
    """

    def __init__(
        self,
        query_dim: int,
        cross_attention_dim: int | None = None,
        heads: int = 8,
        kv_heads: int | None = None,
        dim_head: int = 64,
        dropout: float = 0.0,
        bias: bool = False,
        upcast_attention: bool = False,
        upcast_softmax: bool = False,
        cross_attention_norm: str | None = None,
        cross_attention_norm_num_groups: int = 32,
        qk_norm: str | None = None,
        added_kv_proj_dim: int | None = None,
        added_proj_bias: bool | None = True,
        norm_num_groups: int | None = None,
        spatial_norm_dim: int | None = None,
        out_bias: bool = True,
        scale_qk: bool = True,
        only_cross_attention: bool = False,
        eps: float = 1e-5,
        rescale_output_factor: float = 1.0,
        residual_connection: bool = False,
        _from_deprecated_attn_block: bool = False,
        processor: AttentionProcessor | None = None,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        _require_sd_options(
            kv_heads=(kv_heads, (None, heads)), cross_attention_norm=(cross_attention_norm, (None,)),
            qk_norm=(qk_norm, (None,)), added_kv_proj_dim=(added_kv_proj_dim, (None,)),
            spatial_norm_dim=(spatial_norm_dim, (None,)), scale_qk=(scale_qk, (True,)),
            only_cross_attention=(only_cross_attention, (False,)), out_dim=(out_dim, (None, query_dim)),
        )
        inner_dim = heads * dim_head
        self.query_dim = query_dim
        self.inner_dim = inner_dim
        self.cross_attention_dim = cross_attention_dim or query_dim
        self.heads = heads
        self.sliceable_head_dim = heads
        self.scale = dim_head**-0.5
        self.use_bias = bias
        self.dropout = dropout
        self.is_cross_attention = cross_attention_dim is not None
        self.upcast_attention = upcast_attention
        self.upcast_softmax = upcast_softmax
        self.residual_connection = residual_connection
        self.rescale_output_factor = rescale_output_factor
        # Parts of diffusers' Attention that SD 1.x/2.x never builds; processors test them.
        self.only_cross_attention = False
        self.added_kv_proj_dim = None
        self.norm_cross = None
        self.spatial_norm = None
        self.norm_q = self.norm_k = None
        self.fused_projections = False
        self.slice_size: int | None = None
        self.group_norm = nn.GroupNorm(norm_num_groups, query_dim, eps=eps) if norm_num_groups else None
        self.to_q = nn.Linear(query_dim, inner_dim, bias=bias)
        self.to_k = nn.Linear(self.cross_attention_dim, inner_dim, bias=bias)
        self.to_v = nn.Linear(self.cross_attention_dim, inner_dim, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, query_dim, bias=out_bias), nn.Dropout(dropout)])
        # Plain attributes, not submodules: the state dict keeps to_q/to_k/to_v.
        self._qkv = FusedLinear([(self, "to_q"), (self, "to_k"), (self, "to_v")])
        self._kv = FusedLinear([(self, "to_k"), (self, "to_v")])
        self.set_processor(AttnProcessor2_0() if processor is None else processor)

    # ------------------------------------------------------------------ the processor protocol

    def set_processor(self, processor: AttentionProcessor) -> None:
        """Use ``processor`` for this layer (a module processor is registered as a submodule)."""
        if isinstance(self._modules.get("processor"), nn.Module) and not isinstance(processor, nn.Module):
            del self._modules["processor"]
        self.processor = processor

    def get_processor(self, return_deprecated_lora: bool = False) -> AttentionProcessor:
        return self.processor

    def uses_fast_path(self) -> bool:
        """Whether ``forward`` runs pipeyard's own path (the processor is the plain default)."""
        return type(self.__dict__.get("processor")) is AttnProcessor2_0

    def set_slice_size(self, slice_size: int | None) -> None:
        """Compute attention for ``slice_size`` (batch x head) pairs at a time; ``None`` = all."""
        self.slice_size = slice_size

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **cross_attention_kwargs: Any,
    ) -> torch.Tensor:
        """Attend; 4-d input ``(B, C, H, W)`` is treated as ``H*W`` tokens of ``C`` channels.

        ``attention_mask`` is an additive bias broadcastable to ``(B, heads, queries, keys)``,
        e.g. ``(B, 1, keys)``. ``cross_attention_kwargs`` reach the processor when its
        ``__call__`` names them (others are logged and dropped, as in diffusers).
        """
        processor = self.processor
        if type(processor) is not AttnProcessor2_0:
            kwargs = select_kwargs(processor, cross_attention_kwargs)
            return processor(
                self, hidden_states, encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask,
                **kwargs,
            )
        if cross_attention_kwargs:
            select_kwargs(processor, cross_attention_kwargs)  # logs the ones the default does not take
        # the fast path: what AttnProcessor2_0 computes, with fused projections and direct calls
        residual = hidden_states
        if hidden_states.ndim == 4:
            batch, channels, height, width = hidden_states.shape
            if self.group_norm is not None:
                hidden_states = direct.group_norm(self.group_norm, hidden_states)
            tokens = hidden_states.flatten(2).transpose(1, 2)
            out = self._attend(tokens, encoder_hidden_states, attention_mask)
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

    # ------------------------------------------------------------------ helpers processors call

    def head_to_batch_dim(self, tensor: torch.Tensor, out_dim: int = 3) -> torch.Tensor:
        """``(B, L, heads * d)`` -> ``(B * heads, L, d)`` (``out_dim=3``) or ``(B, heads, L, d)``.

        A 4-d ``(B, E, L, heads * d)`` input is read as ``E * L`` tokens.
        """
        if tensor.ndim == 3:
            batch, length, dim = tensor.shape
            extra = 1
        else:
            batch, extra, length, dim = tensor.shape
        tensor = tensor.reshape(batch, length * extra, self.heads, dim // self.heads).permute(0, 2, 1, 3)
        if out_dim == 3:
            tensor = tensor.reshape(batch * self.heads, length * extra, dim // self.heads)
        return tensor

    def batch_to_head_dim(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(B * heads, L, d)`` -> ``(B, L, heads * d)``."""
        rows, length, dim = tensor.shape
        batch = rows // self.heads
        tensor = tensor.reshape(batch, self.heads, length, dim).permute(0, 2, 1, 3)
        return tensor.reshape(batch, length, dim * self.heads)

    def get_attention_scores(
        self, query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``softmax(scale * q k^T + mask)`` over ``(B * heads, Lq, d)`` x ``(B * heads, Lk, d)``,
        in the query's dtype (float32 inside when ``upcast_attention`` / ``upcast_softmax``)."""
        dtype = query.dtype
        if self.upcast_attention:
            query, key = query.float(), key.float()
        if attention_mask is None:
            scores = torch.baddbmm(
                torch.empty(query.shape[0], query.shape[1], key.shape[1], dtype=query.dtype, device=query.device),
                query, key.transpose(-1, -2), beta=0, alpha=self.scale,
            )
        else:
            scores = torch.baddbmm(attention_mask, query, key.transpose(-1, -2), beta=1, alpha=self.scale)
        if self.upcast_softmax:
            scores = scores.float()
        return scores.softmax(dim=-1).to(dtype)

    def prepare_attention_mask(
        self, attention_mask: torch.Tensor | None, target_length: int, batch_size: int, out_dim: int = 3
    ) -> torch.Tensor | None:
        """An additive mask ``(B, 1, keys)`` made ready for the scores: padded with
        ``target_length`` zeros when its last axis differs (diffusers pads by the full length),
        then repeated per head: ``(B * heads, 1, keys)`` (``out_dim=3``) or ``(B, heads, 1, keys)``.
        """
        if attention_mask is None:
            return None
        if attention_mask.shape[-1] != target_length:
            attention_mask = F.pad(attention_mask, (0, target_length), value=0.0)
        if out_dim == 3:
            if attention_mask.shape[0] < batch_size * self.heads:
                attention_mask = attention_mask.repeat_interleave(self.heads, dim=0)
        elif out_dim == 4:
            attention_mask = attention_mask.unsqueeze(1).repeat_interleave(self.heads, dim=1)
        return attention_mask

    def norm_encoder_hidden_states(self, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """``norm_cross`` applied to the context (pipeyard builds none: SD uses none)."""
        if self.norm_cross is None:
            raise errors.AttentionProcessorError(
                type(self).__name__, "norm_encoder_hidden_states", "this layer has no norm_cross",
                "check attn.norm_cross before calling it, as diffusers' processors do",
            )
        return self.norm_cross(encoder_hidden_states)

    @torch.no_grad()
    def fuse_projections(self, fuse: bool = True) -> None:
        """Build ``to_qkv`` (self-attention) or ``to_kv`` (cross-attention) from the weights."""
        layers = [self.to_k, self.to_v] if self.is_cross_attention else [self.to_q, self.to_k, self.to_v]
        weight = torch.cat([layer.weight for layer in layers])
        fused = nn.Linear(weight.shape[1], weight.shape[0], bias=self.use_bias, device=weight.device, dtype=weight.dtype)
        fused.weight.copy_(weight)
        if self.use_bias:
            fused.bias.copy_(torch.cat([layer.bias for layer in layers]))
        setattr(self, "to_kv" if self.is_cross_attention else "to_qkv", fused)
        self.fused_projections = fuse

    def unfuse_projections(self) -> None:
        """Remove what :meth:`fuse_projections` built."""
        for name in ("to_qkv", "to_kv"):
            self._modules.pop(name, None)
        self.fused_projections = False

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


def _require_sd_options(**options: tuple[Any, tuple[Any, ...]]) -> None:
    """diffusers' Attention options for other families: accepted at their SD 1.x/2.x values only."""
    for key, (value, allowed) in options.items():
        require_choice("Attention", key, value, allowed)


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


class AttentionSlicingMixin(AttentionProcessorMixin):
    """``set_attention_slice`` for models built from :class:`Attention` modules, and the
    processor API of :class:`~.attention_processor.AttentionProcessorMixin`.

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
