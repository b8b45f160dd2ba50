"""The ``interpolate_stable_diffusion`` community pipeline on tiny random SD components."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from pipeyard import DiffusionPipeline


@pytest.fixture(scope="module")
def pipes(tiny_sd_folder):
    kwargs = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    custom = DiffusionPipeline.from_pretrained(tiny_sd_folder, custom_pipeline="interpolate_stable_diffusion", **kwargs)
    plain = DiffusionPipeline.from_pretrained(tiny_sd_folder, **kwargs)
    return custom, plain


def test_the_walk_ends_at_the_plain_pipelines_images(pipes):
    custom, plain = pipes
    assert type(custom).__name__ == "InterpolateStableDiffusionPipeline"
    settings = dict(num_inference_steps=2, guidance_scale=2.0, output_type="np")
    frames = custom.walk(("a photo of a cat", 1), ("a photo of a dog", 2), num_frames=3, **settings)
    assert len(frames) == 3 and frames[0].shape == (*custom.default_size(), 3)
    cat = plain("a photo of a cat", generator=torch.Generator().manual_seed(1), **settings).images[0]
    dog = plain("a photo of a dog", generator=torch.Generator().manual_seed(2), **settings).images[0]
    np.testing.assert_array_equal(frames[0], cat)
    np.testing.assert_array_equal(frames[-1], dog)
    middle = frames[1]
    assert not np.allclose(middle, cat) and not np.allclose(middle, dog)


def test_slerp_keeps_the_norm_and_hits_the_ends(pipes):
    custom, _ = pipes
    slerp = sys.modules[type(custom).__module__].slerp
    v0, v1 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)).chunk(2)
    v1 = v1 * v0.norm() / v1.norm()
    mid = slerp(0.5, v0, v1)
    assert torch.equal(slerp(0.0, v0, v1), v0) and torch.equal(slerp(1.0, v0, v1), v1)
    assert abs(float(mid.norm() / v0.norm()) - 1) < 1e-4
    assert float((0.5 * (v0 + v1)).norm() / v0.norm()) < 0.9  # a straight line loses norm
    with pytest.raises(ValueError, match="num_frames must be at least 2"):
        custom.walk(("a cat", 0), ("a dog", 1), num_frames=1)
