"""Calling plain torch layers as functions on their parameters, skipping ``nn.Module.__call__``.

A UNet call runs about 500 leaf modules (norms, convolutions, linear layers, activations). Each
``module(x)`` goes through ``__call__``, the hook machinery and the layer's ``forward`` before
the one aten operator that does the work; on a GPU that Python time is what the GPU waits for.
The helpers here run that operator directly when doing so is *exactly* ``module(x)``:

    direct call  <=>  type(module) is the plain torch class (not a subclass, not a replacement
                      such as a LoRA or quantized layer)
                      and the module has no hooks of its own (forward, forward-pre, backward)
                      and no global module hooks are registered
                      and ``forward`` is not overridden on the instance (accelerate-style hooks)
                      and the module was not compiled on its own (``module.compile()``)
                      and ``torch.compile`` is not tracing the call (it removes the Python
                      cost itself; the plain module code gives it one graph, no breaks)
                      and the layer's options are ones the direct call reproduces
                      (``padding_mode="zeros"``, a non-inplace activation)

Anything else is called as a module, so hooks, adapters and wrappers behave as usual. The
aten operator and its arguments are the same either way: results are bitwise identical.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules import module as _module


# torch registers global module hooks into these dicts in place (never rebinding them); a test
# registers one and checks that every helper steps aside.
_GLOBAL_HOOKS = (
    _module._global_forward_hooks,
    _module._global_forward_pre_hooks,
    _module._global_backward_hooks,
    _module._global_backward_pre_hooks,
)
_cudnn_enabled = torch._C._get_cudnn_enabled  # what F.group_norm / F.layer_norm pass


def _unhooked(module: nn.Module) -> bool:
    """Nothing would happen in ``module.__call__`` besides ``module.forward``."""
    forward, forward_pre, backward, backward_pre = _GLOBAL_HOOKS
    return not (
        torch.compiler.is_compiling()  # dynamo traces modules itself (and cannot trace these checks)
        or module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
        or forward
        or forward_pre
        or backward
        or backward_pre
        or module._compiled_call_impl is not None
    )


def is_direct(layer: nn.Module, kind: type[nn.Module]) -> bool:
    """Whether calling ``kind``'s operator on ``layer``'s parameters is exactly ``layer(x)``."""
    return type(layer) is kind and _unhooked(layer) and "forward" not in layer.__dict__


def call(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``module(*args, **kwargs)`` without ``nn.Module.__call__`` when nothing hooks into that call.

    ``module.forward`` is looked up on the instance, so a ``forward`` replaced there (as
    community pipelines do to patch blocks) is what runs.
    """
    if _unhooked(module) and not torch._C._get_tracing_state():
        return module.forward(*args, **kwargs)
    return module(*args, **kwargs)


def linear(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``layer(inputs)`` for an ``nn.Linear`` (or whatever replaced it)."""
    if is_direct(layer, nn.Linear):
        return F.linear(inputs, layer.weight, layer.bias)
    return layer(inputs)


def conv2d(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``layer(inputs)`` for an ``nn.Conv2d`` with zero padding (or whatever replaced it)."""
    if is_direct(layer, nn.Conv2d) and layer.padding_mode == "zeros":
        return F.conv2d(
            inputs, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups  # type: ignore[arg-type]
        )
    return layer(inputs)


def group_norm(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``layer(inputs)`` for an ``nn.GroupNorm`` (or whatever replaced it)."""
    if is_direct(layer, nn.GroupNorm):
        return torch.group_norm(inputs, layer.num_groups, layer.weight, layer.bias, layer.eps, _cudnn_enabled())
    return layer(inputs)


def layer_norm(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``layer(inputs)`` for an ``nn.LayerNorm`` (or whatever replaced it)."""
    if is_direct(layer, nn.LayerNorm):
        return torch.layer_norm(inputs, layer.normalized_shape, layer.weight, layer.bias, layer.eps, _cudnn_enabled())
    return layer(inputs)


def activation(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``layer(inputs)`` for an activation module; SiLU (every SD resnet's) runs directly."""
    if is_direct(layer, nn.SiLU) and not layer.inplace:
        return F.silu(inputs)
    return layer(inputs)
