"""Turning a decoded image batch into what ``output_type`` asks for, and input images into tensors.

Every built-in pipeline ends the same way: a ``(batch, channels, height, width)`` tensor in
[-1, 1] (or latents) becomes a tensor in [0, 1] (``"pt"``), a ``(batch, height, width,
channels)`` float array (``"np"``) or a list of PIL images (``"pil"``). The arithmetic is kept
in the order diffusers uses, so the numbers are bit-identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import errors

#: output types every built-in pipeline accepts
IMAGE_OUTPUT_TYPES = ("pil", "np", "pt")
#: latent pipelines also return the raw latents
LATENT_OUTPUT_TYPES = (*IMAGE_OUTPUT_TYPES, "latent")


def check_output_type(output_type: Any, allowed: Sequence[str] = IMAGE_OUTPUT_TYPES) -> None:
    """Refuse an ``output_type`` the pipeline cannot produce, before any work is done.

    Raises:
        UnknownOutputTypeError: names the accepted values.
    """
    if output_type not in allowed:
        raise errors.UnknownOutputTypeError(output_type, allowed)


def preprocess_image(image: Any) -> torch.Tensor:
    """A ``(B, 3, H, W)`` float32 tensor in [-1, 1] from a PIL image or a list of them; a
    tensor is taken as already in model space (a 3-d one gains the batch axis)."""
    if isinstance(image, torch.Tensor):
        return image if image.ndim == 4 else image.unsqueeze(0)
    images = image if isinstance(image, list) else [image]
    arrays = [np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0 for img in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Map model space [-1, 1] to image space [0, 1], clamping the excess."""
    return (images / 2 + 0.5).clamp(0, 1)


def to_numpy(images: torch.Tensor) -> Any:
    """``(b, c, h, w)`` tensor -> ``(b, h, w, c)`` float32 numpy array on the CPU."""
    return images.cpu().permute(0, 2, 3, 1).float().numpy()


def to_pil(images: Any) -> list[Any]:
    """``(b, h, w, c)`` floats in [0, 1] -> list of PIL images."""
    from .base import DiffusionPipeline

    return DiffusionPipeline.numpy_to_pil(images)


def postprocess(
    images: torch.Tensor, output_type: str = "pil", do_denormalize: Sequence[bool] | None = None
) -> Any:
    """Convert a decoded batch in [-1, 1] to ``output_type``.

    Args:
        images: decoded images ``(b, c, h, w)``, or latents when ``output_type="latent"``.
        output_type: ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"`` (returned unchanged).
        do_denormalize: per image, whether to map it from [-1, 1] to [0, 1] (the safety
            checker blacks out flagged images, which are then left as they are); all by default.
    """
    check_output_type(output_type, LATENT_OUTPUT_TYPES)
    if output_type == "latent":
        return images
    if do_denormalize is None or all(do_denormalize):
        images = denormalize(images)
    else:
        images = torch.stack([denormalize(img) if flag else img for img, flag in zip(images, do_denormalize)])
    if output_type == "pt":
        return images
    array = to_numpy(images)
    return array if output_type == "np" else to_pil(array)
