"""Images between the stages: what a pipeline returned -> one ``uint8`` array -> PNG bytes.

Workers hand the driver ``(height, width, channels)`` ``uint8`` arrays, never PIL objects:
arrays travel through Ray's object store as plain buffers, and PNG is lossless, so the file
holds exactly the array. The conversion from floats rounds (``round(x * 255)``), like
``DiffusionPipeline.numpy_to_pil``, so a file equals what ``pipe(...).images[0]`` shows.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np


class NotAnImageError(TypeError):
    """Raised inside a worker for an output that holds no single image (reported per item)."""


def to_uint8(output: Any) -> np.ndarray:
    """The one image of a pipeline output, as a ``(H, W, C)`` ``uint8`` array.

    Accepts ``.images`` (or a tuple's first item) holding PIL images, a float array in [0, 1]
    (``N, H, W, C``) or a tensor (``N, C, H, W``) in [0, 1]; a bare tensor returned by
    ``__call__`` is a sample in [-1, 1].

    Raises:
        NotAnImageError: not one image.
    """
    import torch

    if isinstance(output, torch.Tensor):
        return _one(_float_to_uint8(((output.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()))
    images = output[0] if isinstance(output, tuple) else getattr(output, "images", output)
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    if isinstance(images, np.ndarray):
        return _one(images if images.dtype == np.uint8 else _float_to_uint8(images))
    if isinstance(images, list) and images and all(hasattr(i, "save") for i in images):
        return _one(np.stack([np.asarray(image) for image in images]))
    raise NotAnImageError(f"the pipeline returned {type(output).__name__}, not images (.images or a tensor)")


def _float_to_uint8(images: np.ndarray) -> np.ndarray:
    return (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)


def _one(images: np.ndarray) -> np.ndarray:
    if images.ndim == 3:  # (N, H, W): grayscale
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] != 1 or images.shape[-1] not in (1, 3, 4):
        raise NotAnImageError(f"expected one (H, W, 1|3|4) image, the pipeline returned shape {images.shape}")
    return np.ascontiguousarray(images[0])


def png_bytes(image: np.ndarray) -> bytes:
    """``image`` as PNG (no metadata: the same array always gives the same bytes)."""
    from PIL import Image

    array = image[..., 0] if image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
