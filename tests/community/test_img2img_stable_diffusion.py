"""The ``img2img_stable_diffusion`` community pipeline on tiny random SD components."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeyard import DiffusionPipeline


@pytest.fixture(scope="module")
def pipe(tiny_sd_folder):
    return DiffusionPipeline.from_pretrained(
        tiny_sd_folder, custom_pipeline="img2img_stable_diffusion", safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


@pytest.fixture(scope="module")
def init_image():
    return torch.rand((1, 3, 32, 32), generator=torch.Generator().manual_seed(5)) * 2 - 1


def _run(pipe, image, strength, seed=0, **kwargs):
    return pipe("a photo of a cat", image=image, strength=strength, num_inference_steps=4, guidance_scale=2.0,
                generator=torch.Generator().manual_seed(seed), **kwargs).images


def test_strength_zero_returns_the_init_latents(pipe, init_image):
    assert type(pipe).__name__ == "StableDiffusionImg2ImgCommunityPipeline"
    latents = _run(pipe, init_image, 0.0, output_type="latent")
    with torch.no_grad():
        expected = pipe.vae.encode(init_image).latent_dist.mode() * pipe.vae.config.scaling_factor
    torch.testing.assert_close(latents, expected)


def test_more_strength_moves_further_from_the_init_image(pipe, init_image):
    start = _run(pipe, init_image, 0.0, output_type="latent")
    distances = [float((_run(pipe, init_image, s, output_type="latent") - start).abs().mean()) for s in (0.25, 1.0)]
    assert 0 < distances[0] < distances[1]


def test_a_seed_reproduces_the_images_and_pil_input_works(pipe, init_image):
    from PIL import Image

    pil = Image.fromarray(((init_image[0].permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).byte().numpy())
    first = _run(pipe, pil, 0.5, output_type="np")
    again = _run(pipe, pil, 0.5, output_type="np")
    assert first.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, _run(pipe, pil, 0.5, seed=1, output_type="np"))
    with pytest.raises(ValueError, match="strength must be in"):
        _run(pipe, pil, -0.1)
