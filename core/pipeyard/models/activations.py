"""Activation functions by the names used in diffusers configs (``act_fn``)."""

from __future__ import annotations

from torch import nn

from .. import errors

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "mish": nn.Mish,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
}


def activation(name: str, model: str = "model") -> nn.Module:
    """A fresh activation module for a config name (``"silu"``, ``"swish"``, ...).

    Raises:
        ModelConfigError: the name is not one of the known activations.
    """
    try:
        return _ACTIVATIONS[name.lower()]()
    except KeyError:
        raise errors.ModelConfigError(model, "act_fn", name, f"one of {', '.join(_ACTIVATIONS)}") from None
