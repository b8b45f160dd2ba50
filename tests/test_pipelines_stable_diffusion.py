"""StableDiffusionPipeline: loads diffusers-saved folders unchanged and makes the same images.

Every equality test runs pipeyard (its own models and schedulers, loaded from a folder saved
by diffusers) and diffusers on the same folder, seeds and steps, and compares ``output_type="np"``
images within 1e-4.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_images_equal

import pipeyard
from pipeyard import DiffusionPipeline, StableDiffusionPipeline

diffusers = pytest.importorskip("diffusers")

# diffusers' sigma schedulers call np.interp on torch tensors (a numpy 2 deprecation of theirs)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

SCHEDULERS = (
    "PNDMScheduler", "DDIMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
)
STEPS = 3


def generators(seeds: int | list[int]) -> torch.Generator | list[torch.Generator]:
    """Fresh CPU generators: one for an int seed, a list for a list of seeds."""
    if isinstance(seeds, list):
        return [torch.Generator().manual_seed(s) for s in seeds]
    return torch.Generator().manual_seed(seeds)


@pytest.fixture(scope="module")
def ours(tiny_sd_folder: Path) -> StableDiffusionPipeline:
    pipe = DiffusionPipeline.from_pretrained(tiny_sd_folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def theirs(tiny_sd_folder: Path) -> Any:
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd_folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_both(ours: Any, theirs: Any, scheduler: str, seeds: int | list[int] = 0, **kwargs: Any) -> tuple[Any, Any]:
    """Swap both pipelines to ``scheduler`` (via from_config) and run them with fresh generators."""
    ours.scheduler = getattr(pipeyard, scheduler).from_config(ours.scheduler.config)
    theirs.scheduler = getattr(diffusers, scheduler).from_config(theirs.scheduler.config)
    kwargs = {"num_inference_steps": STEPS, "output_type": "np", **kwargs}
    return ours(generator=generators(seeds), **kwargs), theirs(generator=generators(seeds), **kwargs)


# ---------------------------------------------------------------------- loading


def test_diffusers_folder_loads_as_stable_diffusion_pipeline_with_pipeyard_components(ours: Any) -> None:
    assert type(ours) is StableDiffusionPipeline
    assert isinstance(ours.unet, pipeyard.UNet2DConditionModel)
    assert isinstance(ours.vae, pipeyard.AutoencoderKL)
    assert isinstance(ours.safety_checker, pipeyard.StableDiffusionSafetyChecker)
    assert isinstance(ours.scheduler, pipeyard.PNDMScheduler)
    assert type(ours.text_encoder).__name__ == "CLIPTextModel"
    assert ours.config.requires_safety_checker is True
    assert ours.vae_scale_factor == 2


# ---------------------------------------------------------------------- equality with diffusers

CASES = {
    "one-prompt": dict(prompt="a photo of a cat"),
    "negative-and-generator-list": dict(
        prompt=["a photo of a cat", "a dog riding a horse"], negative_prompt=["blurry", "low quality"], seeds=[3, 4]
    ),
    "two-per-prompt": dict(prompt="an astronaut", negative_prompt="blurry", num_images_per_prompt=2),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_images_equal_diffusers(ours: Any, theirs: Any, scheduler: str, case: str) -> None:
    a, b = run_both(ours, theirs, scheduler, **CASES[case])
    assert_images_equal(a.images, b.images)
    assert a.nsfw_content_detected == b.nsfw_content_detected
    assert len(a.nsfw_content_detected) == a.images.shape[0]


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler"])
def test_sd2_layout_v_prediction_equals_diffusers(tiny_sd2_folder: Path, scheduler: str) -> None:
    ours = DiffusionPipeline.from_pretrained(tiny_sd2_folder)
    theirs = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd2_folder)
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
    assert ours.unet.config.use_linear_projection and ours.scheduler.config.prediction_type == "v_prediction"
    a, b = run_both(ours, theirs, scheduler, prompt="a photo of a dog", negative_prompt="blurry")
    assert_images_equal(a.images, b.images)
    assert a.nsfw_content_detected is None


@pytest.mark.parametrize("slice_size", ["auto", "max"])
def test_attention_slicing_keeps_images_equal(ours: Any, theirs: Any, slice_size: Any) -> None:
    ours.enable_attention_slicing(slice_size)
    try:
        a, b = run_both(ours, theirs, "DPMSolverMultistepScheduler", prompt=["a cat", "a dog"], seeds=[1, 2])
    finally:
        ours.disable_attention_slicing()
    assert_images_equal(a.images, b.images)


def test_guidance_rescale_eta_and_no_guidance_equal_diffusers(ours: Any, theirs: Any) -> None:
    a, b = run_both(ours, theirs, "DDIMScheduler", prompt="a cat", guidance_rescale=0.7, eta=0.5)
    assert_images_equal(a.images, b.images)
    a, b = run_both(ours, theirs, "EulerDiscreteScheduler", prompt="a cat", guidance_scale=1.0)
    assert_images_equal(a.images, b.images)


def test_prompt_embeds_and_latents_equal_diffusers(ours: Any, theirs: Any) -> None:
    embeds, negative = ours.encode_prompt("a photo of a cat", ours.device, 1, True, "blurry")
    latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(7))
    kwargs = dict(prompt_embeds=embeds, negative_prompt_embeds=negative, latents=latents)
    a, b = run_both(ours, theirs, "EulerAncestralDiscreteScheduler", **kwargs)
    assert_images_equal(a.images, b.images)
    from_text, _ = run_both(ours, theirs, "EulerAncestralDiscreteScheduler", prompt="a photo of a cat",
                            negative_prompt="blurry", latents=latents)
    assert_images_equal(a.images, from_text.images, atol=0.0)


def test_flagged_images_are_blacked_out_like_diffusers(tiny_sd_folder: Path) -> None:
    ours = DiffusionPipeline.from_pretrained(tiny_sd_folder)
    theirs = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd_folder)
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
        with torch.no_grad():  # every concept's threshold below any similarity: all flagged
            pipe.safety_checker.concept_embeds_weights.fill_(-1.0)
    a, b = run_both(ours, theirs, "DDIMScheduler", prompt=["a cat", "a dog"], output_type="np")
    assert a.nsfw_content_detected == b.nsfw_content_detected == [True, True]
    assert_images_equal(a.images, b.images)
    assert np.all(a.images == 0.0)


# ---------------------------------------------------------------------- outputs


def test_output_types_and_tuple_return(ours: Any, theirs: Any) -> None:
    ours.scheduler = pipeyard.DDIMScheduler.from_config(ours.scheduler.config)
    kwargs = dict(prompt="a cat", num_inference_steps=2)
    pil = ours(generator=generators(0), **kwargs).images
    assert len(pil) == 1 and pil[0].size == (16, 16)
    pt = ours(generator=generators(0), output_type="pt", **kwargs).images
    assert isinstance(pt, torch.Tensor) and pt.shape == (1, 3, 16, 16) and 0 <= pt.min() <= pt.max() <= 1
    latent, nsfw = ours(generator=generators(0), output_type="latent", return_dict=False, **kwargs)
    assert latent.shape == (1, 4, 8, 8) and nsfw is None
    theirs.scheduler = diffusers.DDIMScheduler.from_config(theirs.scheduler.config)
    reference = theirs(generator=generators(0), output_type="latent", **kwargs).images
    assert_images_equal(latent, reference)


def test_decode_latents_to_output_finishes_a_latent_call_like_the_full_call(ours: Any) -> None:
    """The public last step of __call__, for pipelines with their own loop (community img2img)."""
    ours.scheduler = pipeyard.DDIMScheduler.from_config(ours.scheduler.config)
    kwargs = dict(prompt="a cat", num_inference_steps=2)
    full = ours(generator=generators(0), output_type="np", **kwargs)
    latents = ours(generator=generators(0), output_type="latent", **kwargs).images
    finished = ours.decode_latents_to_output(latents, output_type="np")
    assert_images_equal(finished.images, full.images)
    assert finished.nsfw_content_detected == full.nsfw_content_detected
    images, nsfw = ours.decode_latents_to_output(latents, "latent", return_dict=False)
    assert images is latents and nsfw is None


def test_height_and_width_change_the_image_size(ours: Any) -> None:
    out = ours("a cat", height=24, width=40, num_inference_steps=2, output_type="np", generator=generators(0))
    assert out.images.shape == (1, 24, 40, 3)


def test_callback_on_step_end_sees_and_replaces_tensors(ours: Any) -> None:
    ours.scheduler = pipeyard.EulerDiscreteScheduler.from_config(ours.scheduler.config)
    seen: list[tuple[int, tuple[int, ...]]] = []

    def zero_latents(pipe: Any, step: int, timestep: Any, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        seen.append((step, tuple(tensors["prompt_embeds"].shape)))
        assert pipe.num_timesteps == STEPS and pipe.guidance_scale == 7.5
        return {"latents": torch.zeros_like(tensors["latents"])}

    out = ours("a cat", num_inference_steps=STEPS, output_type="latent", generator=generators(0),
               callback_on_step_end=zero_latents, callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"])
    assert [s for s, _ in seen] == list(range(STEPS)) and seen[0][1][0] == 2  # uncond + text
    assert torch.count_nonzero(out.images) == 0


# ---------------------------------------------------------------------- components, safety checker, progress


def test_missing_safety_checker_warns_once_when_required(tiny_sd_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeyard"):
        pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_folder, safety_checker=None)
        pipe.set_progress_bar_config(disable=True)
        pipe("a cat", num_inference_steps=1, output_type="np")
        pipe("a dog", num_inference_steps=1, output_type="np")
    warnings = [r for r in caplog.records if "safety checker" in r.getMessage()]
    assert len(warnings) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeyard"):
        StableDiffusionPipeline.from_pretrained(tiny_sd_folder, safety_checker=None, requires_safety_checker=False)
    assert not [r for r in caplog.records if "safety checker" in r.getMessage()]


def test_component_swap_updates_saved_config_and_reloads(tiny_sd_folder: Path, tmp_path: Path) -> None:
    pipe = DiffusionPipeline.from_pretrained(tiny_sd_folder, safety_checker=None, feature_extractor=None)
    pipe.scheduler = pipeyard.DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.vae = pipeyard.AutoencoderKL.from_pretrained(tiny_sd_folder, subfolder="vae")
    assert pipe.config.scheduler[1] == "DPMSolverMultistepScheduler"
    pipe.save_pretrained(tmp_path / "saved")
    reloaded = DiffusionPipeline.from_pretrained(tmp_path / "saved")
    assert isinstance(reloaded.scheduler, pipeyard.DPMSolverMultistepScheduler)
    assert reloaded.safety_checker is None
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["scheduler"] == ["pipeyard", "DPMSolverMultistepScheduler"] and index["safety_checker"] == [None, None]
    theirs = diffusers.StableDiffusionPipeline.from_pretrained(tmp_path / "saved")  # still a diffusers layout
    assert type(theirs.scheduler).__name__ == "DPMSolverMultistepScheduler"


def test_torch_dtype_float16_loads_every_model_in_half(tiny_sd_folder: Path) -> None:
    pipe = DiffusionPipeline.from_pretrained(tiny_sd_folder, torch_dtype=torch.float16)
    assert pipe.dtype == torch.float16
    for name in ("unet", "vae", "text_encoder", "safety_checker"):
        assert next(getattr(pipe, name).parameters()).dtype == torch.float16, name


def test_progress_bar_counts_steps_and_can_be_disabled(ours: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ours.scheduler = pipeyard.DPMSolverMultistepScheduler.from_config(ours.scheduler.config)
    ours.set_progress_bar_config(desc="denoising")
    try:
        ours("a cat", num_inference_steps=2, output_type="latent")
    finally:
        ours.set_progress_bar_config(disable=True)
    err = capsys.readouterr().err
    assert "denoising" in err and "2/2" in err
    ours("a cat", num_inference_steps=2, output_type="latent")
    assert capsys.readouterr().err == ""


def test_preprocess_image_maps_pil_pixels_to_model_space() -> None:
    from PIL import Image

    image = Image.new("RGB", (4, 2), (255, 0, 128))
    batch = pipeyard.preprocess_image([image, image])
    assert batch.shape == (2, 3, 2, 4) and batch.dtype == torch.float32
    assert batch[0, :, 0, 0].tolist() == pytest.approx([1.0, -1.0, 128 / 127.5 - 1.0], abs=1e-6)  # float32
    tensor = torch.zeros(3, 2, 4)
    assert pipeyard.preprocess_image(tensor).shape == (1, 3, 2, 4)
