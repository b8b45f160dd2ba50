"""Outputs of the built-in pipelines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..outputs import BaseOutput


@dataclass
class ImagePipelineOutput(BaseOutput):
    """Images produced by a pipeline.

    Attributes:
        images: a list of ``PIL.Image.Image``, a numpy array ``(batch, height, width, channels)``
            in [0, 1], or a torch tensor, depending on ``output_type``.
    """

    images: Any


@dataclass
class StableDiffusionPipelineOutput(BaseOutput):
    """Images produced by a Stable Diffusion pipeline.

    Attributes:
        images: PIL images, a numpy array ``(batch, height, width, channels)`` in [0, 1], a
            torch tensor, or latents, depending on ``output_type``.
        nsfw_content_detected: per image, whether the safety checker flagged (and blacked out)
            it; ``None`` when there is no safety checker or nothing was decoded.
    """

    images: Any
    nsfw_content_detected: list[bool] | None
