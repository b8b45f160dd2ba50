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
