"""Argument checks shared by the built-in pipelines' ``__call__`` (each raises a typed error)."""

from __future__ import annotations

from typing import Any

import torch

from .. import errors

Generator = torch.Generator | list[torch.Generator] | None


def check_count(name: str, value: Any) -> int:
    """A count of images (``batch_size``, ``num_images_per_prompt``): a whole number >= 1.

    Raises:
        PipelineInputError: anything else (``0``, ``-1``, ``1.5``, ``"2"``, ``True``).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise errors.PipelineInputError(
            f"{name}={value!r}: it counts images, so it must be a whole number >= 1 (e.g. {name}=1)"
        )
    return value


def check_generators(generator: Generator, batch_size: int, batch_meaning: str = "batch_size") -> None:
    """A list of generators must hold exactly one per image.

    Raises:
        BatchSizeMismatchError: the list has another length.
    """
    if isinstance(generator, list) and len(generator) != batch_size:
        raise errors.BatchSizeMismatchError(
            "generator", len(generator), batch_size,
            f"pass one torch.Generator for the whole batch, or a list with exactly one per image "
            f"({batch_meaning})",
        )


def unconditional_shape(unet: Any, batch_size: int) -> tuple[int, ...]:
    """``(batch, channels, height, width)`` of the images an unconditional UNet makes
    (``batch_size`` checked by the caller with :func:`check_count`)."""
    size = unet.config.sample_size
    spatial = (size, size) if isinstance(size, int) else tuple(size)
    return (batch_size, unet.config.in_channels, *spatial)
