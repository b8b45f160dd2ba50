"""IP-Adapter attention processors: image prompts as a second, decoupled cross-attention.

IP-Adapter (Ye et al. 2023, arXiv:2308.06721) keeps the text cross-attention of every ``attn2``
layer and adds, per adapter ``k``, an attention of the same queries over the projected image
tokens with its own key / value layers::

    out = Attn(q, K_text, V_text) + sum_k scale_k * Attn(q, to_k_ip[k](img_k), to_v_ip[k](img_k))

The UNet hands such a layer ``encoder_hidden_states = (text_tokens, [img_1, ...])`` (its
``encoder_hid_proj`` makes the image tokens from ``added_cond_kwargs["image_embeds"]``). The
processors are modules: their ``to_k_ip`` / ``to_v_ip`` weights are part of the UNet's state,
under diffusers' names (``...attn2.processor.to_k_ip.0.weight``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from .. import errors
from .attention_processor import output_projection, processor_inputs, sdpa_tokens

if TYPE_CHECKING:
    from .attention import Attention


class _IPAdapterProcessor(nn.Module):
    """What both IP-Adapter processors share: the per-adapter key / value layers and scales.

    Args:
        hidden_size: the layer's inner width (``heads * head_dim``).
        cross_attention_dim: the width of the image tokens.
        num_tokens: image tokens per adapter (only used to split an old-style concatenated context).
        scale: one weight for all adapters, or one per adapter.
    """

    def __init__(
        self,
        hidden_size: int,
        cross_attention_dim: int | None = None,
        num_tokens: int | Sequence[int] = (4,),
        scale: float | list[float] = 1.0,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.cross_attention_dim = cross_attention_dim
        self.num_tokens = list(num_tokens) if isinstance(num_tokens, (tuple, list)) else [num_tokens]
        self.scale = scale if isinstance(scale, list) else [scale] * len(self.num_tokens)
        if len(self.scale) != len(self.num_tokens):
            raise errors.AttentionProcessorError(
                type(self).__name__, "__init__", f"{len(self.scale)} scales for {len(self.num_tokens)} adapters",
                "pass one scale, or one per adapter (as many as num_tokens)",
            )
        in_features = cross_attention_dim if cross_attention_dim is not None else hidden_size
        self.to_k_ip = nn.ModuleList([nn.Linear(in_features, hidden_size, bias=False) for _ in self.num_tokens])
        self.to_v_ip = nn.ModuleList([nn.Linear(in_features, hidden_size, bias=False) for _ in self.num_tokens])

    def _split(self, encoder_hidden_states: Any) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """``(text, [image tokens per adapter])``; a plain tensor holds the image tokens at its
        end (the old layout, deprecated as in diffusers)."""
        if encoder_hidden_states is None or isinstance(encoder_hidden_states, tuple):
            return encoder_hidden_states if encoder_hidden_states is not None else (None, [])
        from ..utils.deprecation import deprecate

        deprecate(
            "encoder_hidden_states not a tuple", "1.0.0",
            "passing the image tokens concatenated to encoder_hidden_states is deprecated: pass "
            "(text_tokens, [image_tokens, ...]) as the UNet does", standard_warn=False,
        )
        end = encoder_hidden_states.shape[1] - self.num_tokens[0]
        return encoder_hidden_states[:, :end], [encoder_hidden_states[:, end:]]

    def _adapters(self, ip_hidden_states: list[torch.Tensor], ip_adapter_masks: Any) -> list[tuple]:
        """``(image tokens, scale, to_k_ip, to_v_ip)`` of each adapter whose scale is not 0."""
        if ip_adapter_masks is not None:
            raise errors.AttentionProcessorError(
                type(self).__name__, "__call__", "ip_adapter_masks (regional IP-Adapter masks) are not implemented",
                "leave ip_adapter_masks out of cross_attention_kwargs",
            )
        chosen = []
        for tokens, scale, to_k, to_v in zip(ip_hidden_states, self.scale, self.to_k_ip, self.to_v_ip):
            if (all(s == 0 for s in scale) if isinstance(scale, list) else scale == 0):
                continue
            chosen.append((tokens, scale, to_k, to_v))
        return chosen


class IPAdapterAttnProcessor2_0(_IPAdapterProcessor):
    """IP-Adapter attention through ``scaled_dot_product_attention`` (diffusers' default)."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Any = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        scale: float = 1.0,
        ip_adapter_masks: Any = None,
    ) -> torch.Tensor:
        context, ip_hidden_states = self._split(encoder_hidden_states)
        residual = hidden_states
        view, tokens, context = processor_inputs(attn, hidden_states, context, temb)
        context_or_tokens = tokens if context is None else context
        query = attn.to_q(tokens)
        out, heads_query = sdpa_tokens(
            attn, query, attn.to_k(context_or_tokens), attn.to_v(context_or_tokens), attention_mask,
            context_or_tokens.shape[:2],
        )
        batch, head_dim = tokens.shape[0], heads_query.shape[-1]
        for image_tokens, weight, to_k, to_v in self._adapters(ip_hidden_states, ip_adapter_masks):
            key, value = (
                layer(image_tokens).view(batch, -1, attn.heads, head_dim).transpose(1, 2) for layer in (to_k, to_v)
            )
            extra = F.scaled_dot_product_attention(heads_query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False)
            out = out + weight * extra.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(heads_query.dtype)
        return output_projection(attn, out, view, residual)


class IPAdapterAttnProcessor(_IPAdapterProcessor):
    """IP-Adapter attention as ``bmm(softmax(q k^T * scale), v)`` (the textbook path)."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Any = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        scale: float = 1.0,
        ip_adapter_masks: Any = None,
    ) -> torch.Tensor:
        context, ip_hidden_states = self._split(encoder_hidden_states)
        residual = hidden_states
        view, tokens, context = processor_inputs(attn, hidden_states, context, temb)
        batch, length = (tokens if context is None else context).shape[:2]
        attention_mask = attn.prepare_attention_mask(attention_mask, length, batch)
        context = tokens if context is None else context
        query = attn.head_to_batch_dim(attn.to_q(tokens))
        key, value = attn.head_to_batch_dim(attn.to_k(context)), attn.head_to_batch_dim(attn.to_v(context))
        out = attn.batch_to_head_dim(torch.bmm(attn.get_attention_scores(query, key, attention_mask), value))
        for image_tokens, weight, to_k, to_v in self._adapters(ip_hidden_states, ip_adapter_masks):
            ip_key, ip_value = attn.head_to_batch_dim(to_k(image_tokens)), attn.head_to_batch_dim(to_v(image_tokens))
            extra = torch.bmm(attn.get_attention_scores(query, ip_key, None), ip_value)
            out = out + weight * attn.batch_to_head_dim(extra)
        return output_projection(attn, out, view, residual)


__all__ = ["IPAdapterAttnProcessor", "IPAdapterAttnProcessor2_0"]
