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

import torch
from torch import nn
from torch.nn import functional as F


class FusedLinear:
    """``torch.cat([owner.<name>(x) for name in names], -1)`` as one ``F.linear`` call.

    Not a module: it looks the layers up on ``owner`` at each call (so a layer replaced later,
    e.g. by an adapter, is seen) and adds no parameters. When one of them is not a plain
    ``nn.Linear``, the layers are called one by one.

    Example::

        qkv = FusedLinear(attn, ["to_q", "to_k", "to_v"])
        q, k, v = qkv(tokens).split(qkv.out_features, dim=-1)
    """

    def __init__(self, owner: nn.Module, names: list[str]) -> None:
        self._owner_modules = owner._modules  # the owner's own dict: no reference cycle
        self.names = names
        self._key: tuple[object, ...] | None = None
        self._weight: torch.Tensor | None = None
        self._bias: torch.Tensor | None = None

    @property
    def layers(self) -> list[nn.Module]:
        return [self._owner_modules[name] for name in self.names]  # type: ignore[misc]

    @property
    def out_features(self) -> list[int]:
        return [layer.out_features for layer in self.layers]  # type: ignore[misc]

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        layers = self.layers
        if not all(type(layer) is nn.Linear for layer in layers):
            return torch.cat([layer(inputs) for layer in layers], dim=-1)
        weight, bias = self.weight_and_bias()
        return F.linear(inputs, weight, bias)

    def weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The concatenated weight and bias, from the cache when the cache rule allows."""
        params = self._parameters()
        if torch.is_grad_enabled() or any(p.is_inference() for p in params):
            return self._concatenate()  # inference tensors have no version counter to key on
        key = tuple((id(p), p._version, p.dtype, p.device) for p in params)
        if key != self._key:
            self._weight, self._bias = self._concatenate()
            self._key = key
        assert self._weight is not None
        return self._weight, self._bias

    def clear(self) -> None:
        """Drop the cached weight (it is rebuilt on the next call)."""
        self._key = self._weight = self._bias = None

    def _parameters(self) -> list[torch.Tensor]:
        params = [layer.weight for layer in self.layers]
        params += [layer.bias for layer in self.layers if layer.bias is not None]
        return params

    def _concatenate(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        layers = self.layers
        weight = torch.cat([layer.weight for layer in layers])
        if all(layer.bias is None for layer in layers):
            return weight, None
        biases = [layer.weight.new_zeros(layer.out_features) if layer.bias is None else layer.bias for layer in layers]
        return weight, torch.cat(biases)
