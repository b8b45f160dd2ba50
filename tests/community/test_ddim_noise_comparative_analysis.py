"""The ``ddim_noise_comparative_analysis`` community pipeline on a tiny random UNet2DModel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeyard import DDIMPipeline, DDIMScheduler, DiffusionPipeline


@pytest.fixture(scope="module")
def pipe(tiny_ddpm_folder):
    return DiffusionPipeline.from_pretrained(tiny_ddpm_folder, custom_pipeline="ddim_noise_comparative_analysis")


def _seed(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_without_an_image_it_samples_like_the_builtin_ddim_pipeline(pipe, tiny_ddpm_folder):
    assert type(pipe).__name__ == "DDIMNoiseComparativeAnalysisPipeline"
    assert isinstance(pipe.scheduler, DDIMScheduler)
    ours = pipe(batch_size=2, num_inference_steps=3, generator=_seed(), output_type="np").images
    builtin = DDIMPipeline.from_pretrained(tiny_ddpm_folder)
    theirs = builtin(batch_size=2, num_inference_steps=3, generator=_seed(), output_type="np").images
    assert ours.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_strength_zero_returns_the_image_and_more_strength_moves_further(pipe):
    image = torch.rand((1, 3, 16, 16), generator=_seed(3)) * 2 - 1
    same, start = pipe(image=image, strength=0.0, num_inference_steps=4, output_type="pt", return_dict=False)
    assert start is None
    torch.testing.assert_close(same, (image / 2 + 0.5).clamp(0, 1))
    distance = {}
    for strength in (0.25, 1.0):
        out, start = pipe(image=image, strength=strength, num_inference_steps=4, generator=_seed(), output_type="pt",
                          return_dict=False)
        distance[strength] = float((out - same).abs().mean())
    assert start > 700  # strength 1 starts at the top of the schedule
    assert 0 < distance[0.25] < distance[1.0]


def test_a_seed_makes_it_reproducible_and_bad_strength_is_refused(pipe):
    image = torch.zeros((1, 3, 16, 16))
    first = pipe(image=image, strength=0.5, num_inference_steps=2, generator=_seed(), output_type="np").images
    again = pipe(image=image, strength=0.5, num_inference_steps=2, generator=_seed(), output_type="np").images
    np.testing.assert_array_equal(first, again)
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\], got 1.5"):
        pipe(image=image, strength=1.5)
