"""``PIL_INTERPOLATION``: resampling filters by the names pipelines use for them."""

from __future__ import annotations

from PIL import Image

#: ``PIL_INTERPOLATION["lanczos"]`` and so on: Pillow's resampling filters by name.
PIL_INTERPOLATION: dict[str, Image.Resampling] = {
    "linear": Image.Resampling.BILINEAR,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}
