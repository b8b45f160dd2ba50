"""Checks shared by the models: config values they cannot honour, and forward inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .. import errors
from .embeddings import broadcast_timesteps


def require_defaults(model: str, values: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Refuse config options pipeyard accepts for compatibility but does not implement yet.

    Raises:
        ModelConfigError: the first key whose value differs from its (only supported) default.
    """
    for key, default in defaults.items():
        if values[key] != default:
            raise errors.ModelConfigError(model, key, values[key], f"{default!r} (other values are not supported yet)")


def require_choice(model: str, key: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise errors.ModelConfigError(model, key, value, f"one of {', '.join(map(repr, choices))}")


def per_block(model: str, key: str, value: Any, count: int) -> list[Any]:
    """A scalar repeated ``count`` times, or a list/tuple that must have ``count`` items."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise errors.ModelConfigError(model, key, value, f"a single value or {count} values, one per block")
        return list(value)
    return [value] * count


def check_sample(model: str, sample: torch.Tensor, channels: int, factor: int, argument: str = "sample") -> None:
    """``sample`` must be ``(B, channels, H, W)`` with ``H`` and ``W`` multiples of ``factor``.

    Raises:
        InputShapeError: with the expected layout and the shape received.
    """
    shape = tuple(sample.shape)
    if sample.ndim != 4 or shape[1] != channels:
        raise errors.InputShapeError(model, argument, f"(batch, {channels}, height, width)", shape)
    if shape[2] % factor or shape[3] % factor:
        raise errors.InputShapeError(
            model, argument, f"of height and width divisible by {factor} (the model downsamples {factor}x)", shape
        )


def timesteps_for_batch(
    model: str, timestep: torch.Tensor | float | int, sample: torch.Tensor, scalar_dtype: torch.dtype | None
) -> torch.Tensor:
    """One timestep per batch element, from a python number, a 0-d or a 1-d tensor.

    Raises:
        InputShapeError: a tensor that is neither 0-d nor 1-d of 1 or ``batch`` values.
    """
    batch = sample.shape[0]
    if torch.is_tensor(timestep) and (timestep.ndim > 1 or timestep.numel() not in (1, batch)):
        expected = f"a number, a 0-d tensor or a 1-d tensor of 1 or {batch} values"
        raise errors.InputShapeError(model, "timestep", expected, tuple(timestep.shape))
    return broadcast_timesteps(timestep, batch, sample.device, scalar_dtype)
