"""padding_mask_crop's image helpers equal diffusers' VaeImageProcessor pixel for pixel:
get_crop_region, resize_mode "fill" / "crop", apply_overlay."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from pipeyard import errors
from pipeyard.pipelines.image_processor import VaeImageProcessor

diffusers_image_processor = pytest.importorskip("diffusers.image_processor")


def _mask(height: int, width: int, box: tuple[int, int, int, int] | None) -> PIL.Image.Image:
    mask = np.zeros((height, width), dtype=np.uint8)
    if box is not None:
        x1, y1, x2, y2 = box
        mask[y1:y2, x1:x2] = 255
    return PIL.Image.fromarray(mask, mode="L")


def _image(height: int, width: int, seed: int = 0) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


MASKS = {
    "wide-strip": (64, 64, (10, 30, 50, 34)),
    "tall-strip": (64, 64, (30, 5, 33, 60)),
    "touching-the-right-edge": (48, 64, (50, 10, 64, 20)),
    "touching-the-bottom": (64, 48, (5, 50, 40, 64)),
    "one-pixel": (40, 56, (7, 9, 8, 10)),
    "everything": (32, 32, (0, 0, 32, 32)),
}


@pytest.mark.parametrize("pad", [0, 4, 100])
@pytest.mark.parametrize(("width", "height"), [(32, 32), (64, 32), (24, 48)])
@pytest.mark.parametrize("case", list(MASKS))
def test_get_crop_region_equals_diffusers(case: str, width: int, height: int, pad: int) -> None:
    mask = _mask(*MASKS[case])
    expected = diffusers_image_processor.VaeImageProcessor.get_crop_region(mask, width, height, pad=pad)
    assert VaeImageProcessor.get_crop_region(mask, width, height, pad=pad) == tuple(expected)


@pytest.mark.parametrize("mode", ["fill", "crop"])
@pytest.mark.parametrize(("source", "target"), [((40, 20), (16, 16)), ((20, 40), (16, 16)), ((30, 30), (32, 16)),
                                               ((30, 30), (16, 32)), ((17, 23), (24, 24)), ((32, 32), (16, 16))])
def test_resize_fill_and_crop_equal_diffusers(mode: str, source: tuple[int, int], target: tuple[int, int]) -> None:
    image = _image(*source)
    ours = VaeImageProcessor().resize(image, target[0], target[1], resize_mode=mode)
    theirs = diffusers_image_processor.VaeImageProcessor().resize(image, target[0], target[1], resize_mode=mode)
    assert ours.size == theirs.size == (target[1], target[0])
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


@pytest.mark.parametrize("crop", [None, (8, 4, 40, 36)])
def test_apply_overlay_equals_diffusers(crop: tuple[int, int, int, int] | None) -> None:
    init, mask = _image(48, 48, seed=1), _mask(48, 48, (10, 8, 30, 30))
    inpainted = _image(16, 16, seed=2) if crop else _image(48, 48, seed=2)
    ours = VaeImageProcessor().apply_overlay(mask, init, inpainted, crop)
    theirs = diffusers_image_processor.VaeImageProcessor().apply_overlay(mask, init, inpainted, crop)
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_preprocess_with_crop_and_fill_equals_diffusers() -> None:
    image, mask = _image(64, 48, seed=3), _mask(64, 48, (5, 40, 20, 60))
    box = VaeImageProcessor.get_crop_region(mask, 32, 32, pad=3)
    ours = VaeImageProcessor().preprocess(image, 32, 32, resize_mode="fill", crops_coords=box)
    theirs = diffusers_image_processor.VaeImageProcessor().preprocess(image, 32, 32, resize_mode="fill", crops_coords=box)
    assert torch.equal(ours, theirs)


def test_fill_of_an_array_is_refused_naming_the_mode_and_the_type() -> None:
    with pytest.raises(errors.PipelineInputError, match="resize_mode='fill' needs a PIL image, got ndarray"):
        VaeImageProcessor().resize(np.zeros((1, 8, 8, 3), dtype=np.float32), 4, 4, resize_mode="fill")


def test_unknown_resize_mode_is_refused_naming_the_choices() -> None:
    with pytest.raises(errors.PipelineInputError, match="resize_mode='stretch' is not one of default, fill, crop"):
        VaeImageProcessor().resize(_image(8, 8), 4, 4, resize_mode="stretch")
