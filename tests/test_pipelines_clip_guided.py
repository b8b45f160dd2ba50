"""community/clip_guided_stable_diffusion.py on tiny random components, loaded as the seed does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_images_equal

import pipeyard
from pipeyard import DiffusionPipeline, StableDiffusionPipeline

@pytest.fixture(scope="module")
def clip_parts() -> tuple[Any, Any]:
    """A tiny random CLIPModel (text side shares the SD tokenizer's vocabulary) and its processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                         vocab_size=1000, bos_token_id=0, eos_token_id=2, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return CLIPModel(config).eval(), processor


@pytest.fixture(scope="module")
def guided(tiny_sd_folder: Path, clip_parts: tuple[Any, Any]) -> Any:
    clip_model, feature_extractor = clip_parts
    pipe = DiffusionPipeline.from_pretrained(
        tiny_sd_folder, custom_pipeline="clip_guided_stable_diffusion",
        clip_model=clip_model, feature_extractor=feature_extractor,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe: Any, scheduler: str, seed: int = 0, **kwargs: Any) -> np.ndarray:
    pipe.scheduler = getattr(pipeyard, scheduler).from_config(pipe.scheduler.config)
    kwargs = {"height": 16, "width": 16, "num_inference_steps": 2, "output_type": "np", **kwargs}
    return pipe("a photo of a cat", generator=torch.Generator().manual_seed(seed), **kwargs).images


def test_loads_by_community_name_with_the_callers_clip_model(guided: Any, clip_parts: tuple[Any, Any]) -> None:
    assert type(guided).__name__ == "CLIPGuidedStableDiffusion"
    assert guided.clip_model is clip_parts[0] and guided.feature_extractor is clip_parts[1]
    assert isinstance(guided.unet, pipeyard.UNet2DConditionModel)
    assert guided.cut_out_size == 32


@pytest.mark.parametrize(
    "scheduler, use_cutouts",
    [("DDIMScheduler", True), ("PNDMScheduler", False), ("LMSDiscreteScheduler", True), ("EulerDiscreteScheduler", False)],
)
def test_clip_guidance_moves_the_image(guided: Any, scheduler: str, use_cutouts: bool) -> None:
    steered = run(guided, scheduler, clip_guidance_scale=5000.0, num_cutouts=2, use_cutouts=use_cutouts)
    unguided = run(guided, scheduler, clip_guidance_scale=0.0)
    assert steered.shape == (1, 16, 16, 3) and np.isfinite(steered).all()
    assert np.abs(steered - unguided).max() > 1e-6


def test_the_same_generator_gives_the_same_cutouts_and_image(guided: Any) -> None:
    kwargs = dict(clip_guidance_scale=5000.0, num_cutouts=3, use_cutouts=True)
    assert_images_equal(run(guided, "EulerDiscreteScheduler", **kwargs), run(guided, "EulerDiscreteScheduler", **kwargs), atol=0.0)


def test_without_clip_guidance_it_is_stable_diffusion(guided: Any, tiny_sd_folder: Path) -> None:
    plain = StableDiffusionPipeline.from_pretrained(tiny_sd_folder, safety_checker=None, requires_safety_checker=False)
    plain.set_progress_bar_config(disable=True)
    plain.scheduler = pipeyard.DDIMScheduler.from_config(plain.scheduler.config)
    expected = plain("a photo of a cat", height=16, width=16, num_inference_steps=2, output_type="np",
                     generator=torch.Generator().manual_seed(0)).images
    assert_images_equal(run(guided, "DDIMScheduler", clip_guidance_scale=0.0), expected)


def test_batches_of_prompts_and_images_per_prompt(guided: Any) -> None:
    guided.scheduler = pipeyard.EulerDiscreteScheduler.from_config(guided.scheduler.config)
    out = guided(["a cat", "a dog"], height=16, width=16, num_inference_steps=2, num_images_per_prompt=2,
                 clip_guidance_scale=100.0, num_cutouts=3, generator=torch.Generator().manual_seed(0))
    assert len(out.images) == 4 and out.images[0].size == (16, 16) and out.nsfw_content_detected is None
