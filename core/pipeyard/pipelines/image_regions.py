"""Regions of PIL images for inpainting a small masked area at full resolution.

``padding_mask_crop`` in an inpainting call: find the box around the mask's white pixels,
pad it, grow it to the output's aspect ratio (:func:`get_crop_region`); crop image and mask to
it and resize them to the output size keeping their aspect ratio (:func:`resize_and_fill`);
inpaint; then paste the result back into the box of the original image, keeping the original
wherever the mask is black (:func:`apply_overlay`). Pixel arithmetic and PIL calls follow
diffusers 0.42.1's ``VaeImageProcessor``, so results are identical.

Boxes are ``(x1, y1, x2, y2)``: left, top, right, bottom (right and bottom excluded), PIL's order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import PIL.Image
import PIL.ImageOps

Box = tuple[int, int, int, int]


def get_crop_region(mask_image: PIL.Image.Image, width: int, height: int, pad: int = 0) -> Box:
    """The box holding every non-black pixel of ``mask_image``, padded by ``pad`` pixels (within
    the image) and grown, centred, to the aspect ratio ``width / height`` as far as the image allows.

    Example: a mask drawn in a 128x32 area of a 512x512 image, for a 512x512 output, gives a
    128x128 box.
    """
    mask = np.array(mask_image.convert("L"))
    rows, cols = mask.shape
    left, right = _blank_margins(mask.any(axis=0))
    top, bottom = _blank_margins(mask.any(axis=1))
    x1, y1 = int(max(left - pad, 0)), int(max(top - pad, 0))
    x2, y2 = int(min(cols - right + pad, cols)), int(min(rows - bottom + pad, rows))
    wanted_ratio = width / height
    if (x2 - x1) / (y2 - y1) > wanted_ratio:
        y1, y2 = _grow_span(y1, y2, (x2 - x1) / wanted_ratio, mask_image.height)
    else:
        x1, x2 = _grow_span(x1, x2, (y2 - y1) * wanted_ratio, mask_image.width)
    return x1, y1, x2, y2


def _blank_margins(marked: np.ndarray) -> tuple[int, int]:
    """How many unmarked entries lead and trail ``marked`` (all of them for an empty mask)."""
    hits = np.flatnonzero(marked)
    if hits.size == 0:
        return marked.size, marked.size
    return int(hits[0]), int(marked.size - 1 - hits[-1])


def _grow_span(start: int, stop: int, wanted: float, limit: int) -> tuple[int, int]:
    """Widen ``[start, stop)`` to about ``wanted``, centred, then shift it back inside ``[0, limit]``."""
    extra = int(wanted - (stop - start))
    start -= extra // 2
    stop += extra - extra // 2
    if stop >= limit:
        overshoot = stop - limit
        start, stop = start - overshoot, stop - overshoot
    if start < 0:
        start, stop = 0, stop - start
    return start, min(stop, limit)


def _scaled_size(image: PIL.Image.Image, width: int, height: int, to_width: bool) -> tuple[int, int]:
    """``image``'s size scaled, keeping its aspect ratio, to ``width`` (``to_width``) or to ``height``."""
    if to_width:
        return width, image.height * width // image.width
    return image.width * height // image.height, height


def resize_and_fill(image: PIL.Image.Image, width: int, height: int, resample: int) -> PIL.Image.Image:
    """``image`` scaled to fit ``width`` x ``height``, centred; the bands left over are filled
    by stretching the image's outermost row (or column) of pixels."""
    size = _scaled_size(image, width, height, to_width=width / height < image.width / image.height)
    resized = image.resize(size, resample=resample)
    canvas = PIL.Image.new("RGB", (width, height))
    canvas.paste(resized, box=(width // 2 - size[0] // 2, height // 2 - size[1] // 2))
    band_height, band_width = height // 2 - size[1] // 2, width // 2 - size[0] // 2
    if width / height < image.width / image.height and band_height > 0:
        canvas.paste(resized.resize((width, band_height), box=(0, 0, width, 0)), box=(0, 0))
        edge = (0, resized.height, width, resized.height)
        canvas.paste(resized.resize((width, band_height), box=edge), box=(0, band_height + size[1]))
    elif width / height > image.width / image.height and band_width > 0:
        canvas.paste(resized.resize((band_width, height), box=(0, 0, 0, height)), box=(0, 0))
        edge = (resized.width, 0, resized.width, height)
        canvas.paste(resized.resize((band_width, height), box=edge), box=(band_width + size[0], 0))
    return canvas


def resize_and_crop(image: PIL.Image.Image, width: int, height: int, resample: int) -> PIL.Image.Image:
    """``image`` scaled to cover ``width`` x ``height``, centred; what sticks out is cut off."""
    size = _scaled_size(image, width, height, to_width=width / height > image.width / image.height)
    canvas = PIL.Image.new("RGB", (width, height))
    canvas.paste(image.resize(size, resample=resample), box=(width // 2 - size[0] // 2, height // 2 - size[1] // 2))
    return canvas


def apply_overlay(
    mask: PIL.Image.Image,
    init_image: PIL.Image.Image,
    image: PIL.Image.Image,
    crop_coords: Box | None,
    resize_to_crop: Callable[[PIL.Image.Image, int, int], PIL.Image.Image],
) -> PIL.Image.Image:
    """``image`` (the inpainted crop, when ``crop_coords`` is given) put into the box of
    ``init_image``, then ``init_image`` laid over it wherever ``mask`` is black."""
    kept = PIL.Image.new("RGBa", init_image.size)
    kept.paste(init_image.convert("RGBA").convert("RGBa"), mask=PIL.ImageOps.invert(mask.convert("L")))
    kept = kept.convert("RGBA")
    if crop_coords is not None:
        x1, y1, x2, y2 = crop_coords
        placed = PIL.Image.new("RGBA", init_image.size)
        placed.paste(resize_to_crop(image, y2 - y1, x2 - x1), (x1, y1))
        image = placed.convert("RGB")
    image = image.convert("RGBA")
    image.alpha_composite(kept)
    return image.convert("RGB")
