"""The ``seed_resize_stable_diffusion`` community pipeline on tiny random SD components."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeyard import DiffusionPipeline


@pytest.fixture(scope="module")
def pipes(tiny_sd_folder):
    kwargs = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    custom = DiffusionPipeline.from_pretrained(tiny_sd_folder, custom_pipeline="seed_resize_stable_diffusion", **kwargs)
    plain = DiffusionPipeline.from_pretrained(tiny_sd_folder, **kwargs)
    return custom, plain


def _run(pipe, seed=0, **kwargs):
    return pipe("a photo of a dog", num_inference_steps=2, guidance_scale=2.0,
                generator=torch.Generator().manual_seed(seed), **kwargs).images


def test_at_the_reference_size_it_equals_the_plain_pipeline(pipes):
    custom, plain = pipes
    assert type(custom).__name__ == "SeedResizeStableDiffusionPipeline"
    np.testing.assert_array_equal(_run(custom, output_type="np"), _run(plain, output_type="np"))


def test_the_reference_noise_sits_at_the_centre_of_a_larger_image(pipes):
    custom, plain = pipes
    (height, width), factor = custom.default_size(), custom.vae_scale_factor
    reference = _run(custom, output_type="latent")  # (1, 4, h, w)
    h, w = reference.shape[-2:]
    larger = _run(custom, height=height + 8 * factor, width=width + 4 * factor, output_type="latent")
    unrelated = _run(plain, height=height + 8 * factor, width=width + 4 * factor, output_type="latent")
    assert larger.shape == (1, 4, h + 8, w + 4)

    def centre_distance(latents):
        return float((latents[..., 4:4 + h, 2:2 + w] - reference).abs().mean())

    assert centre_distance(larger) < 0.5 * centre_distance(unrelated)


def test_a_smaller_image_is_the_centre_crop_of_the_reference_noise(pipes):
    custom, _ = pipes
    f = custom.vae_scale_factor
    noise = custom.resized_noise(1, 8 * f, 12 * f, (16 * f, 16 * f), torch.Generator().manual_seed(0), torch.float32)
    reference = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(noise, reference[..., 4:12, 2:14])
    with pytest.raises(ValueError, match="pass a generator, not latents"):
        custom("a dog", latents=reference)
