"""Attention processors: the object an :class:`~.attention.Attention` layer hands its inputs to.

diffusers' protocol, which community pipelines program against (prompt-to-prompt, PAG,
reference-only, ...): a layer's ``forward`` calls ``layer.processor(layer, hidden_states,
encoder_hidden_states=..., attention_mask=..., **cross_attention_kwargs)``, and a processor is
any callable with that signature. It reads the layer's parts (``to_q``, ``to_k``, ``to_v``,
``to_out``, ``heads``, ``group_norm``, ...) and its helpers (``prepare_attention_mask``,
``head_to_batch_dim``, ``get_attention_scores``, ``batch_to_head_dim``).

- :class:`AttnProcessor2_0` is every layer's default. A layer whose processor is exactly an
  ``AttnProcessor2_0`` (not a subclass) runs pipeyard's fast path instead of calling it: fused
  projections, no module calls (:mod:`.fused`, :mod:`.direct`); the numbers are the same to
  float rounding.
- :class:`AttnProcessor` is the textbook path (``softmax(q k^T * scale + mask) v`` with bmm),
  :class:`FusedAttnProcessor2_0` reads the ``to_qkv`` / ``to_kv`` layers that
  ``fuse_qkv_projections()`` builds.
- :class:`AttentionProcessorMixin` gives a model ``attn_processors``, ``set_attn_processor``,
  ``set_default_attn_processor`` and ``fuse_qkv_projections``, with diffusers' key names
  (``down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor``).

Example::

    class Recorder:
        def __init__(self):
            self.calls = 0

        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None):
            self.calls += 1
            return AttnProcessor2_0()(attn, hidden_states, encoder_hidden_states, attention_mask)

    unet.set_attn_processor(Recorder())
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from .. import errors

if TYPE_CHECKING:
    from .attention import Attention

logger = logging.getLogger(__name__)

AttentionProcessor = Callable[..., torch.Tensor]

# Keys diffusers passes on without a log line even when the processor does not take them.
_QUIET_KEYS = frozenset({"ip_adapter_masks", "ip_hidden_states"})


def _warn_scale(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """diffusers deprecated a positional or ``scale=`` argument to processors (LoRA scale moved)."""
    if args or kwargs.get("scale") is not None:
        warnings.warn(
            "passing `scale` to an attention processor is deprecated and ignored; pass it in the "
            "model's cross_attention_kwargs instead",
            FutureWarning,
            stacklevel=3,
        )


class TokenView:
    """A processor's view of its input: ``(B, C, H, W)`` maps become ``(B, H*W, C)`` tokens."""

    def __init__(self, hidden_states: torch.Tensor) -> None:
        self.shape4 = tuple(hidden_states.shape) if hidden_states.ndim == 4 else None
        if self.shape4 is not None:
            batch, channels = hidden_states.shape[:2]
            hidden_states = hidden_states.view(batch, channels, -1).transpose(1, 2)
        self.tokens = hidden_states

    def restore(self, out: torch.Tensor) -> torch.Tensor:
        if self.shape4 is None:
            return out
        return out.transpose(-1, -2).reshape(self.shape4)


def processor_inputs(
    attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None, temb: torch.Tensor | None
) -> tuple[TokenView, torch.Tensor, torch.Tensor | None]:
    """Spatial norm, tokens, group norm, cross norm: what both processors do before projecting."""
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    view = TokenView(hidden_states)
    tokens = view.tokens
    if attn.group_norm is not None:
        tokens = attn.group_norm(tokens.transpose(1, 2)).transpose(1, 2)
    view.tokens = tokens
    if encoder_hidden_states is not None and attn.norm_cross is not None:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    return view, tokens, encoder_hidden_states


def output_projection(attn: Attention, out: torch.Tensor, view: TokenView, residual: torch.Tensor) -> torch.Tensor:
    """Output projection, dropout, back to the input's layout, residual and rescale."""
    out = attn.to_out[1](attn.to_out[0](out))
    out = view.restore(out)
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


class AttnProcessor:
    """Attention as ``bmm(softmax(q k^T * scale + mask), v)`` over ``(batch * heads)`` rows."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        _warn_scale(args, kwargs)
        residual = hidden_states
        view, tokens, context = processor_inputs(attn, hidden_states, encoder_hidden_states, temb)
        batch, length = (tokens if context is None else context).shape[:2]
        attention_mask = attn.prepare_attention_mask(attention_mask, length, batch)
        context = tokens if context is None else context
        query = attn.head_to_batch_dim(attn.to_q(tokens))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, attention_mask)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        return output_projection(attn, out, view, residual)


class SlicedAttnProcessor:
    """As :class:`AttnProcessor`, ``slice_size`` (batch x head) rows at a time: lower peak memory,
    the same numbers.

    Args:
        slice_size: rows of ``(batch * heads)`` attended at once.
    """

    def __init__(self, slice_size: int) -> None:
        self.slice_size = slice_size

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        residual = hidden_states
        view, tokens, context = processor_inputs(attn, hidden_states, encoder_hidden_states, None)
        batch, length = (tokens if context is None else context).shape[:2]
        attention_mask = attn.prepare_attention_mask(attention_mask, length, batch)
        context = tokens if context is None else context
        query = attn.head_to_batch_dim(attn.to_q(tokens))
        key, value = attn.head_to_batch_dim(attn.to_k(context)), attn.head_to_batch_dim(attn.to_v(context))
        out = torch.zeros_like(query[..., :1]).expand(-1, -1, value.shape[-1]).contiguous()
        for start in range(0, query.shape[0], self.slice_size):
            rows = slice(start, start + self.slice_size)
            mask = attention_mask[rows] if attention_mask is not None else None
            out[rows] = torch.bmm(attn.get_attention_scores(query[rows], key[rows], mask), value[rows])
        return output_projection(attn, attn.batch_to_head_dim(out), view, residual)


class AttnProcessor2_0:
    """Attention through ``torch.nn.functional.scaled_dot_product_attention`` (the default)."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        _warn_scale(args, kwargs)
        residual = hidden_states
        view, tokens, context = processor_inputs(attn, hidden_states, encoder_hidden_states, temb)
        context_or_tokens = tokens if context is None else context
        query = attn.to_q(tokens)
        key = attn.to_k(context_or_tokens)
        value = attn.to_v(context_or_tokens)
        return _sdpa_output(attn, query, key, value, attention_mask, view, residual, context_or_tokens.shape[:2])


class FusedAttnProcessor2_0:
    """As :class:`AttnProcessor2_0`, reading the ``to_qkv`` (self-attention) or ``to_kv``
    (cross-attention) layer that ``fuse_qkv_projections()`` builds."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        _warn_scale(args, kwargs)
        residual = hidden_states
        view, tokens, context = processor_inputs(attn, hidden_states, encoder_hidden_states, temb)
        if context is None:
            to_qkv = getattr(attn, "to_qkv", None)
            if to_qkv is None:
                raise _not_fused(attn)
            query, key, value = to_qkv(tokens).chunk(3, dim=-1)
            lengths = tokens.shape[:2]
        else:
            to_kv = getattr(attn, "to_kv", None)
            if to_kv is None:
                raise _not_fused(attn)
            query = attn.to_q(tokens)
            key, value = to_kv(context).chunk(2, dim=-1)
            lengths = context.shape[:2]
        return _sdpa_output(attn, query, key, value, attention_mask, view, residual, lengths)


def _not_fused(attn: Attention) -> errors.AttentionProcessorError:
    return errors.AttentionProcessorError(
        type(attn).__name__, "FusedAttnProcessor2_0", "the layer's projections are not fused",
        "call model.fuse_qkv_projections() before setting FusedAttnProcessor2_0",
    )


def _sdpa_output(
    attn: Attention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    view: TokenView,
    residual: torch.Tensor,
    lengths: tuple[int, ...] | torch.Size,
) -> torch.Tensor:
    out = sdpa_tokens(attn, query, key, value, attention_mask, lengths)[0]
    return output_projection(attn, out, view, residual)


def sdpa_tokens(
    attn: Attention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    lengths: tuple[int, ...] | torch.Size,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SDPA of projected ``(B, L, heads * d)`` inputs -> ``(out (B, L, heads * d), query (B, heads, L, d))``:
    before the output projection, so a processor can add more attention to ``out`` (IP-Adapter)."""
    batch, length = lengths
    if attention_mask is not None:  # (B, 1, keys) bias -> (B, heads, 1, keys), as SDPA wants it
        attention_mask = attn.prepare_attention_mask(attention_mask, length, batch)
        attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
    head_dim = key.shape[-1] // attn.heads
    query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False)
    return out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype), query


# ---------------------------------------------------------------------- calling a processor

# Classes whose default behaviour set_default_attn_processor may replace (diffusers' rule).
_REPLACEABLE = (AttnProcessor, AttnProcessor2_0, FusedAttnProcessor2_0, SlicedAttnProcessor)


def processor_parameters(processor: AttentionProcessor) -> frozenset[str]:
    """The parameter names of ``processor``'s call: the ``cross_attention_kwargs`` it receives.

    Cached per function (a processor class's ``__call__``, a plain function), weakly: processors
    made on the fly do not pile up.
    """
    call = _call_function(processor)
    try:
        return _PARAMETERS[call]
    except (KeyError, TypeError):  # TypeError: a builtin callable, which takes no weak reference
        pass
    try:
        names = frozenset(inspect.signature(call).parameters)
    except (TypeError, ValueError):  # no signature to read: it takes none of the extra kwargs
        names = frozenset()
    with contextlib.suppress(TypeError):
        _PARAMETERS[call] = names
    return names


def _call_function(processor: AttentionProcessor) -> Any:
    if inspect.isfunction(processor):
        return processor
    if inspect.ismethod(processor):
        return processor.__func__
    return type(processor).__call__


_PARAMETERS: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def select_kwargs(processor: AttentionProcessor, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``cross_attention_kwargs`` ``processor`` takes by name; the others are logged and
    dropped, as diffusers does (a processor with ``**kwargs`` still gets only named ones)."""
    if not kwargs:
        return kwargs
    accepted = processor_parameters(processor)
    unused = [key for key in kwargs if key not in accepted and key not in _QUIET_KEYS]
    if unused:
        logger.warning(
            "cross_attention_kwargs %s are not taken by %s and are ignored", unused, type(processor).__name__
        )
    return {key: value for key, value in kwargs.items() if key in accepted}


# ---------------------------------------------------------------------- model-wide


def _processor_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, layer)`` for every layer with ``get_processor``, in diffusers' walk order."""

    def walk(prefix: str, module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        if hasattr(module, "get_processor"):
            yield prefix, module
        for name, child in module.named_children():
            yield from walk(f"{prefix}.{name}", child)

    for name, child in model.named_children():
        yield from walk(name, child)


class AttentionProcessorMixin:
    """diffusers' processor API on a model made of :class:`~.attention.Attention` layers."""

    @property
    def attn_processors(self) -> dict[str, AttentionProcessor]:
        """``{"<layer path>.processor": processor}`` for every attention layer."""
        return {f"{name}.processor": layer.get_processor() for name, layer in _processor_layers(self)}  # type: ignore[arg-type]

    def set_attn_processor(self, processor: AttentionProcessor | dict[str, AttentionProcessor]) -> None:
        """Set one processor on every attention layer, or one per layer from a dict keyed as
        :attr:`attn_processors` (all keys, nothing else).

        Raises:
            AttentionProcessorError: a dict that misses layers or names unknown ones.
        """
        layers = list(_processor_layers(self))  # type: ignore[arg-type]
        if isinstance(processor, dict):
            self._check_processor_keys(processor, [f"{name}.processor" for name, _ in layers])
            for name, layer in layers:
                layer.set_processor(processor[f"{name}.processor"])
            return
        for _, layer in layers:
            layer.set_processor(processor)

    def _check_processor_keys(self, processors: dict[str, Any], expected: list[str]) -> None:
        missing = [key for key in expected if key not in processors]
        unknown = [key for key in processors if key not in set(expected)]
        if missing or unknown:
            problem = "; ".join(
                part for part in (
                    f"missing {len(missing)}: {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}" if missing else "",
                    f"unknown {len(unknown)}: {', '.join(map(repr, unknown[:3]))}" if unknown else "",
                ) if part
            )
            raise errors.AttentionProcessorError(
                type(self).__name__, "set_attn_processor", problem,
                f"pass one processor, or a dict with exactly the {len(expected)} keys of model.attn_processors",
            )

    def set_default_attn_processor(self) -> None:
        """Put back :class:`AttnProcessor` on every layer (diffusers' choice of "default").

        Raises:
            AttentionProcessorError: a layer holds a processor of another kind (as diffusers).
        """
        others = sorted({type(p).__name__ for p in self.attn_processors.values() if not isinstance(p, _REPLACEABLE)})
        if others:
            raise errors.AttentionProcessorError(
                type(self).__name__, "set_default_attn_processor", f"layers hold {', '.join(others)}",
                "set the processors you want with set_attn_processor(...) instead",
            )
        self.set_attn_processor(AttnProcessor())

    def fuse_qkv_projections(self) -> None:
        """Build each layer's ``to_qkv`` / ``to_kv`` (for :class:`FusedAttnProcessor2_0`)."""
        for _, layer in _processor_layers(self):  # type: ignore[arg-type]
            layer.fuse_projections()

    def unfuse_qkv_projections(self) -> None:
        """Drop the layers ``fuse_qkv_projections`` built."""
        for _, layer in _processor_layers(self):  # type: ignore[arg-type]
            layer.unfuse_projections()
