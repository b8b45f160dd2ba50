"""Fused projections: several ``nn.Linear`` layers applied to one input as a single matmul.

The layers stay registered as they are (``to_q``, ``to_k``, ``to_v``), so state-dict keys and
checkpoints do not change; only the forward pass concatenates their weights into one
``(sum of out_features, in_features)`` matrix and splits the result.

When the concatenated weight is reused (the cache rule)
    The fused weight is cached only while autograd is off (``torch.no_grad()`` or
    ``torch.inference_mode()``): with autograd on it is rebuilt every call, so that gradients
    reach each layer (and reach the input, as in guidance that differentiates through the UNet).
    Parameters created under ``torch.inference_mode()`` have no version counter: never cached. The cache is keyed on the identity, the
    in-place version counter (``tensor._version``), dtype and device of every parameter, so
    ``.to()``, ``.half()``, ``load_state_dict``, ``copy_`` and any other in-place edit rebuild
    it on the next call. Rebinding ``layer.weight`` to a new tensor also does.

    One case the key cannot see: a captured CUDA graph replays the fused weight it captured.
    After editing weights, call ``pipe.disable_cuda_graph()`` and enable it again.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from . import direct


class FusedLinear:
    """``torch.cat([owner.<name>(x) for owner, name in layers], -1)`` as one ``F.linear`` call.

    Not a module: it looks the layers up on their owners at each call (so a layer replaced
    later, e.g. by an adapter, is seen) and adds no parameters. When one of them is not a plain,
    hook-free ``nn.Linear`` (:func:`.direct.is_direct`), the layers are called one by one. The
    owners may differ: layers all over a model that read the same input fuse as well.

    Example::

        qkv = FusedLinear([(attn, "to_q"), (attn, "to_k"), (attn, "to_v")])
        q, k, v = qkv(tokens).split(qkv.out_features, dim=-1)
    """

    def __init__(self, layers: list[tuple[nn.Module, str]]) -> None:
        # the owners' own dicts, not the owners: no reference cycle when an owner holds this
        self._slots: list[tuple[dict[str, nn.Module | None], str]] = [(owner._modules, name) for owner, name in layers]
        self._key: tuple[object, ...] | None = None
        self._weight: torch.Tensor | None = None
        self._bias: torch.Tensor | None = None

    @property
    def layers(self) -> list[nn.Module]:
        return [modules[name] for modules, name in self._slots]  # type: ignore[misc]

    @property
    def out_features(self) -> list[int]:
        return [layer.out_features for layer in self.layers]  # type: ignore[misc]

    def fusable(self, layers: list[nn.Module] | None = None) -> bool:
        """Whether one matmul is exactly the layers' calls (all plain, hook-free ``nn.Linear``)."""
        return all(direct.is_direct(layer, nn.Linear) for layer in (self.layers if layers is None else layers))

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        layers = self.layers
        if not self.fusable(layers):
            return torch.cat([layer(inputs) for layer in layers], dim=-1)
        weight, bias = self.weight_and_bias(layers)
        return F.linear(inputs, weight, bias)

    def weight_and_bias(self, layers: list[nn.Module] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The concatenated weight and bias, from the cache when the cache rule allows."""
        layers = self.layers if layers is None else layers
        params = [layer.weight for layer in layers] + [layer.bias for layer in layers if layer.bias is not None]
        if torch.is_grad_enabled() or any(p.is_inference() for p in params):
            return _concatenate(layers)  # inference tensors have no version counter to key on
        key = tuple((id(p), p._version, p.dtype, p.device) for p in params)
        if key != self._key:
            self._weight, self._bias = _concatenate(layers)
            self._key = key
        assert self._weight is not None
        return self._weight, self._bias

    def clear(self) -> None:
        """Drop the cached weight (it is rebuilt on the next call)."""
        self._key = self._weight = self._bias = None


def _concatenate(layers: list[nn.Module]) -> tuple[torch.Tensor, torch.Tensor | None]:
    weight = torch.cat([layer.weight for layer in layers])
    if all(layer.bias is None for layer in layers):
        return weight, None
    biases = [layer.weight.new_zeros(layer.out_features) if layer.bias is None else layer.bias for layer in layers]
    return weight, torch.cat(biases)


class PerCallProjections:
    """Layers all over a model that read one same tensor per model call, run as one matmul.

    Every resnet's ``time_emb_proj`` reads the activated time embedding, and every
    cross-attention's ``to_k``/``to_v`` read the text embeddings: 22 and 32 layers per SD UNet
    call that become one matmul each. The model opens a scope with the shared input at the
    start of its forward and closes it at the end; each *consumer* (the module owning the
    layers) asks :func:`precomputed` for its slice instead of running its layers.

    Rules (why a result is never stale)
        - Results live for one model call: :meth:`open` ... :meth:`close` (in ``finally``).
        - A consumer gets its slice only when called with the very tensor the scope was
          opened with (``is``); a block called on its own, or during another thread's call,
          computes its own projection (same numbers).
        - Nothing is precomputed when a layer is not a plain, hook-free ``nn.Linear``
          (:meth:`FusedLinear.fusable`): replaced or hooked layers are always called.
        - Nothing is precomputed when a consumer does not take part (``takes_part``): an
          attention layer with a custom processor runs its projections itself, and the others
          compute theirs one by one (the fused matmul would be wasted work for that layer).

    Example::

        times = PerCallProjections(resnets, ["time_emb_proj"])
        with opened((times, emb)):  # open(emb) ... close()
            ...  # in resnet.forward: projected = precomputed(self, temb)
    """

    def __init__(
        self,
        consumers: list[nn.Module],
        names: list[str],
        *,
        takes_part: Callable[[nn.Module], bool] | None = None,
    ) -> None:
        self._fused = FusedLinear([(consumer, name) for consumer in consumers for name in names])
        self._takes_part = takes_part
        # weak references: the consumers hold this object, it must not keep them alive
        self._consumers = [weakref.ref(consumer) for consumer in consumers]
        self._per_consumer = len(names)
        self._scope: tuple[torch.Tensor, tuple[torch.Tensor, ...]] | None = None
        for index, consumer in enumerate(consumers):
            consumer.__dict__["_per_call"] = (self, index)  # a plain attribute, not a submodule

    def open(self, inputs: torch.Tensor) -> None:
        """Run the fused matmul on ``inputs``; consumers called with ``inputs`` get slices."""
        layers = self._fused.layers
        if not self._fused.fusable(layers) or not self._all_take_part():
            return
        weight, bias = self._fused.weight_and_bias(layers)
        step = self._per_consumer
        sizes = [sum(layer.out_features for layer in layers[i : i + step]) for i in range(0, len(layers), step)]
        self._scope = (inputs, F.linear(inputs, weight, bias).split(sizes, dim=-1))

    def _all_take_part(self) -> bool:
        """Whether every consumer will ask for its slice (``takes_part``, e.g. an attention
        layer whose processor is the default; a custom processor computes its own keys)."""
        if self._takes_part is None:
            return True
        for ref in self._consumers:
            consumer = ref()
            if consumer is None or not self._takes_part(consumer):
                return False
        return True

    def close(self) -> None:
        self._scope = None

    def get(self, index: int, inputs: torch.Tensor) -> torch.Tensor | None:
        scope = self._scope  # read once: another thread may open or close meanwhile
        if scope is None or scope[0] is not inputs:
            return None
        return scope[1][index]


@contextlib.contextmanager
def opened(*scopes: tuple[PerCallProjections | None, torch.Tensor]) -> Iterator[None]:
    """Open each ``(projections, shared input)`` for the body of a model's forward, then close."""
    opened_here = [projections for projections, _ in scopes if projections is not None]
    try:
        for projections, inputs in scopes:
            if projections is not None:
                projections.open(inputs)
        yield
    finally:
        for projections in opened_here:
            projections.close()


def precomputed(consumer: nn.Module, inputs: torch.Tensor) -> torch.Tensor | None:
    """``consumer``'s slice of an open :class:`PerCallProjections` scope over ``inputs``, or None."""
    link = consumer.__dict__.get("_per_call")
    if link is None:
        return None
    projections, index = link
    return projections.get(index, inputs)
