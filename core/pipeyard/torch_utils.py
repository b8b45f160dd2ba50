"""Small torch helpers shared by schedulers, models and pipelines."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

logger = logging.getLogger(__name__)


def randn_tensor(
    shape: Sequence[int],
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    layout: torch.layout | None = None,
) -> torch.Tensor:
    """Standard normal noise of ``shape``, reproducible across devices.

    The noise is drawn on the generator's device (CPU generators give the same numbers whatever
    ``device`` is) and then moved. A list of generators draws one batch element from each, so
    image ``i`` depends only on ``generator[i]``; this matches diffusers' sampling exactly.
    ``layout`` is the tensor layout (``torch.strided`` when None).

    Raises:
        ValueError: a list of generators whose length differs from ``shape[0]``.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    layout = layout or torch.strided
    shape = tuple(shape)
    if isinstance(generator, (list, tuple)) and len(generator) == 1:
        generator = generator[0]  # one generator in a list means one for the whole batch
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            from .errors import PipelineInputError

            raise PipelineInputError(
                f"got {len(generator)} generators for a batch of {shape[0]}: pass one generator, "
                f"or a list with exactly one per image"
            )
        rand_device = generator[0].device
        draws = [
            torch.randn((1, *shape[1:]), generator=g, device=rand_device, dtype=dtype, layout=layout) for g in generator
        ]
        return torch.cat(draws, dim=0).to(device)
    rand_device = generator.device if generator is not None else device
    if generator is not None and rand_device.type != device.type and rand_device.type != "cpu":
        raise ValueError(
            f"cannot draw noise for device {device} with a generator on {rand_device}: "
            f"use a CPU generator or one on {device}"
        )
    return torch.randn(shape, generator=generator, device=rand_device, dtype=dtype, layout=layout).to(device)
