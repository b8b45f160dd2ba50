"""StableDiffusionImg2ImgPipeline and StableDiffusionInpaintPipeline: the same images as diffusers.

Each equality test loads pipeyard's pipeline and diffusers' from one folder saved by diffusers
(a 4-channel UNet, or a 9-channel inpainting UNet), runs both with the same seeds, schedulers
and arguments, and compares ``output_type="np"`` images within 1e-4.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import assert_images_equal

import pipeyard
from pipeyard import errors
from pipeyard.pipelines.stable_diffusion_img2img import (
    StableDiffusionImg2ImgPipeline,
    preprocess,
    retrieve_latents,
)
from pipeyard.pipelines.stable_diffusion_inpaint import StableDiffusionInpaintPipeline

diffusers = pytest.importorskip("diffusers")

STEPS = 4
SCHEDULERS = ("PNDMScheduler", "DDIMScheduler")


def generators(seeds: int | list[int]) -> torch.Generator | list[torch.Generator]:
    if isinstance(seeds, list):
        return [torch.Generator().manual_seed(s) for s in seeds]
    return torch.Generator().manual_seed(seeds)


def start_image(seed: int = 0, size: int = 16) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def square_mask(size: int = 16) -> PIL.Image.Image:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[4:12, 2:10] = 255
    return PIL.Image.fromarray(mask, mode="L")


def run_both(ours: Any, theirs: Any, scheduler: str, seeds: int | list[int] = 0, **kwargs: Any) -> tuple[Any, Any]:
    ours.scheduler = getattr(pipeyard, scheduler).from_config(ours.scheduler.config)
    theirs.scheduler = getattr(diffusers, scheduler).from_config(theirs.scheduler.config)
    kwargs = {"num_inference_steps": STEPS, "output_type": "np", **kwargs}
    return ours(generator=generators(seeds), **kwargs), theirs(generator=generators(seeds), **kwargs)


@pytest.fixture(scope="module")
def i2i_pair(tiny_sd_folder: Path) -> tuple[Any, Any]:
    ours = StableDiffusionImg2ImgPipeline.from_pretrained(tiny_sd_folder)
    theirs = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained(tiny_sd_folder)
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
    return ours, theirs


@pytest.fixture(scope="module")
def inpaint4_pair(tiny_sd_folder: Path) -> tuple[Any, Any]:
    ours = StableDiffusionInpaintPipeline.from_pretrained(tiny_sd_folder)
    theirs = diffusers.StableDiffusionInpaintPipeline.from_pretrained(tiny_sd_folder)
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
    return ours, theirs


@pytest.fixture(scope="module")
def tiny_inpaint9_folder(tiny_sd_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny SD folder with a 9-channel (latents + mask + masked-image latents) UNet."""
    base = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd_folder)
    torch.manual_seed(1)
    unet = diffusers.UNet2DConditionModel(**{**dict(base.unet.config), "in_channels": 9})
    folder = tmp_path_factory.mktemp("tiny-inpaint9") / "pipe"
    diffusers.StableDiffusionInpaintPipeline(**{**base.components, "unet": unet}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def inpaint9_pair(tiny_inpaint9_folder: Path) -> tuple[Any, Any]:
    ours = StableDiffusionInpaintPipeline.from_pretrained(tiny_inpaint9_folder)
    theirs = diffusers.StableDiffusionInpaintPipeline.from_pretrained(tiny_inpaint9_folder)
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
    return ours, theirs


# ---------------------------------------------------------------------- image-to-image

I2I_CASES = {
    "strength-0.6": dict(prompt="a photo of a cat", image=start_image(), strength=0.6),
    "full-strength-negative": dict(prompt="a cat", image=start_image(1), strength=1.0, negative_prompt="blurry"),
    "generator-list-two-per-prompt": dict(
        prompt=["a cat", "a dog"], image=[start_image(2), start_image(3)], strength=0.75,
        num_images_per_prompt=2, seeds=[1, 2, 3, 4],
    ),
    "no-guidance-eta": dict(prompt="a cat", image=start_image(4), strength=0.5, guidance_scale=1.0, eta=0.3),
    "latents-as-image-latent-output": dict(
        prompt="a cat", image=torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(9)), strength=0.5,
        output_type="latent",
    ),
}


@pytest.mark.parametrize("case", list(I2I_CASES))
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_img2img_images_equal_diffusers(i2i_pair: tuple[Any, Any], scheduler: str, case: str) -> None:
    a, b = run_both(*i2i_pair, scheduler, **I2I_CASES[case])
    assert_images_equal(a.images, b.images)
    assert a.nsfw_content_detected == b.nsfw_content_detected


def test_img2img_strength_0_with_pndm_runs_its_one_extra_step_like_diffusers(i2i_pair: tuple[Any, Any]) -> None:
    a, b = run_both(*i2i_pair, "PNDMScheduler", prompt="a cat", image=start_image(5), strength=0.0)
    assert_images_equal(a.images, b.images)


def test_img2img_strength_leaving_no_timestep_is_refused(i2i_pair: tuple[Any, Any]) -> None:
    ours = i2i_pair[0]
    ours.scheduler = pipeyard.DDIMScheduler.from_config(ours.scheduler.config)
    with pytest.raises(errors.PipelineInputError, match="strength=0.1 of num_inference_steps=4 leaves no timestep"):
        ours("a cat", image=start_image(), strength=0.1, num_inference_steps=4)


def test_img2img_callback_sees_the_kept_steps_and_replaces_latents(i2i_pair: tuple[Any, Any]) -> None:
    ours = i2i_pair[0]
    ours.scheduler = pipeyard.DDIMScheduler.from_config(ours.scheduler.config)
    seen: list[int] = []

    def zero_latents(pipe: Any, step: int, timestep: Any, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        seen.append(int(timestep))
        return {"latents": torch.zeros_like(tensors["latents"])}

    out = ours("a cat", image=start_image(), strength=0.5, num_inference_steps=4, output_type="latent",
               callback_on_step_end=zero_latents)
    assert len(seen) == 2 and ours.num_timesteps == 2
    assert seen == ours.scheduler.timesteps[2:].tolist()
    assert torch.equal(out.images, torch.zeros(1, 4, 8, 8))


def test_subclass_overrides_of_the_helpers_are_used_by_the_call(tiny_sd_folder: Path) -> None:
    calls: list[str] = []

    class Recording(StableDiffusionImg2ImgPipeline):
        def get_timesteps(self, num_inference_steps: int, strength: float, device: Any) -> Any:
            calls.append("get_timesteps")
            return super().get_timesteps(num_inference_steps, strength, device)

        def prepare_latents(self, image: Any, timestep: Any, *args: Any) -> Any:
            calls.append(f"prepare_latents {tuple(image.shape)} t={timestep.tolist()}")
            return super().prepare_latents(image, timestep, *args)

    pipe = Recording.from_pretrained(tiny_sd_folder)
    pipe.set_progress_bar_config(disable=True)
    pipe("a cat", image=start_image(), strength=0.5, num_inference_steps=4, output_type="latent")
    assert calls[0] == "get_timesteps"
    assert calls[1].startswith("prepare_latents (1, 3, 16, 16) t=")


def test_img2img_one_image_for_two_prompts_repeats_with_a_future_warning(i2i_pair: tuple[Any, Any]) -> None:
    ours, theirs = i2i_pair
    kwargs = dict(prompt=["a cat", "a dog"], image=start_image(), strength=0.7)
    with pytest.warns(FutureWarning) as caught:
        a, b = run_both(ours, theirs, "DDIMScheduler", **kwargs)
    assert any("pass one image per prompt" in str(w.message) for w in caught)
    assert a.images.shape == (2, 16, 16, 3)
    assert_images_equal(a.images, b.images)


def test_img2img_get_timesteps_keeps_the_strength_tail_and_sets_the_begin_index(i2i_pair: tuple[Any, Any]) -> None:
    ours, theirs = i2i_pair
    for pipe, library in ((ours, pipeyard), (theirs, diffusers)):
        pipe.scheduler = library.DDIMScheduler.from_config(pipe.scheduler.config)
        pipe.scheduler.set_timesteps(10)
    ours_t, ours_n = ours.get_timesteps(10, 0.35, "cpu")
    theirs_t, theirs_n = theirs.get_timesteps(10, 0.35, "cpu")
    assert ours_n == theirs_n == 3
    assert ours_t.tolist() == theirs_t.tolist()
    assert ours.scheduler.begin_index == 7


def test_img2img_prepare_latents_from_latents_only_adds_noise(i2i_pair: tuple[Any, Any]) -> None:
    ours, theirs = i2i_pair
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    results = []
    for pipe, library in ((ours, pipeyard), (theirs, diffusers)):
        pipe.scheduler = library.DDIMScheduler.from_config(pipe.scheduler.config)
        pipe.scheduler.set_timesteps(STEPS)
        results.append(pipe.prepare_latents(
            latents, torch.tensor([500]), 1, 2, torch.float32, torch.device("cpu"), torch.Generator().manual_seed(5)
        ))
    assert results[0].shape == (2, 4, 8, 8)
    assert torch.allclose(results[0], results[1], atol=1e-6)


def test_img2img_strength_outside_unit_interval_is_refused_naming_the_value(i2i_pair: tuple[Any, Any]) -> None:
    with pytest.raises(errors.StrengthError, match=r"strength must be between 0\.0 and 1\.0, got 1\.5") as info:
        i2i_pair[0](prompt="a cat", image=start_image(), strength=1.5)
    assert isinstance(info.value, ValueError) and info.value.strength == 1.5


def test_img2img_old_callback_keyword_is_refused_naming_the_replacement(i2i_pair: tuple[Any, Any]) -> None:
    with pytest.raises(errors.PipelineInputError, match="callback.*use callback_on_step_end"):
        i2i_pair[0](prompt="a cat", image=start_image(), callback=print)


def test_img2img_without_image_is_refused(i2i_pair: tuple[Any, Any]) -> None:
    with pytest.raises(errors.PipelineInputError, match="image=..."):
        i2i_pair[0](prompt="a cat")


def test_retrieve_latents_sample_argmax_and_latents_forms() -> None:
    vae = diffusers.AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=4)
    output = vae.encode(torch.rand(1, 3, 8, 8))
    sampled = retrieve_latents(output, torch.Generator().manual_seed(0))
    assert torch.equal(sampled, output.latent_dist.sample(torch.Generator().manual_seed(0)))
    assert torch.equal(retrieve_latents(output, sample_mode="argmax"), output.latent_dist.mode())

    class Direct:
        latents = torch.ones(1)

    assert torch.equal(retrieve_latents(Direct()), torch.ones(1))
    with pytest.raises(errors.EncoderLatentsError, match="found no latents in a object") as info:
        retrieve_latents(object())
    assert isinstance(info.value, AttributeError)


def test_deprecated_preprocess_equals_diffusers_and_warns() -> None:
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import preprocess as theirs

    image = start_image(size=20)
    with pytest.warns(FutureWarning, match="image_processor.preprocess"):
        ours = preprocess(image)
    with pytest.warns(FutureWarning):
        expected = theirs(image)
    assert ours.shape == (1, 3, 16, 16)
    assert torch.equal(ours, expected)


# ---------------------------------------------------------------------- inpainting

INPAINT_CASES = {
    "strength-0.7": dict(prompt="a photo of a cat", image=start_image(), mask_image=square_mask(), strength=0.7),
    "full-strength-two-per-prompt": dict(
        prompt="a cat", image=start_image(1), mask_image=square_mask(), num_images_per_prompt=2,
        negative_prompt="blurry",
    ),
    "generator-list-no-guidance": dict(
        prompt=["a cat", "a dog"], image=start_image(2), mask_image=square_mask(), strength=0.6,
        guidance_scale=1.0, seeds=[5, 6],
    ),
}


@pytest.mark.parametrize("case", list(INPAINT_CASES))
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_inpaint_4_channel_unet_blends_latents_like_diffusers(
    inpaint4_pair: tuple[Any, Any], scheduler: str, case: str
) -> None:
    a, b = run_both(*inpaint4_pair, scheduler, **INPAINT_CASES[case])
    assert_images_equal(a.images, b.images)
    assert a.nsfw_content_detected == b.nsfw_content_detected


@pytest.mark.parametrize("case", list(INPAINT_CASES))
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_inpaint_9_channel_unet_equals_diffusers(inpaint9_pair: tuple[Any, Any], scheduler: str, case: str) -> None:
    a, b = run_both(*inpaint9_pair, scheduler, **INPAINT_CASES[case])
    assert_images_equal(a.images, b.images)


@pytest.fixture(scope="module")
def inpaint_asym_pair(tiny_sd_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """The tiny SD folder with an AsymmetricAutoencoderKL as its VAE (mask-conditioned decoder)."""
    base = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd_folder)
    torch.manual_seed(2)
    vae = diffusers.AsymmetricAutoencoderKL(
        down_block_out_channels=(32, 64), up_block_out_channels=(32, 64), sample_size=16,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )
    folder = tmp_path_factory.mktemp("tiny-inpaint-asym") / "pipe"
    diffusers.StableDiffusionInpaintPipeline(**{**base.components, "vae": vae}).save_pretrained(folder)
    ours = StableDiffusionInpaintPipeline.from_pretrained(folder)
    theirs = diffusers.StableDiffusionInpaintPipeline.from_pretrained(folder)
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
    return ours, theirs


@pytest.mark.parametrize("case", ["strength-0.7"])
def test_inpaint_with_asymmetric_vae_decodes_with_image_and_mask_like_diffusers(
    inpaint_asym_pair: tuple[Any, Any], case: str
) -> None:
    assert type(inpaint_asym_pair[0].vae) is pipeyard.AsymmetricAutoencoderKL
    a, b = run_both(*inpaint_asym_pair, "DDIMScheduler", **INPAINT_CASES[case])
    assert_images_equal(a.images, b.images)


def test_inpaint_with_asymmetric_vae_decodes_a_batch_from_one_image_where_diffusers_fails(
    inpaint_asym_pair: tuple[Any, Any],
) -> None:
    ours, theirs = inpaint_asym_pair
    case = dict(INPAINT_CASES["strength-0.7"], num_images_per_prompt=2, num_inference_steps=2, output_type="np")
    with pytest.raises(KeyError):  # diffusers 0.42.1 looks up the condition features by the batch's shape
        theirs(generator=generators(0), **case)
    images = ours(generator=generators(0), **case).images
    assert images.shape == (2, 16, 16, 3)
    single = ours(generator=generators(0), **{**case, "num_images_per_prompt": 1}).images
    kept = np.asarray(square_mask()) == 0
    assert np.abs(images[0] - single[0])[kept].max() < 0.5  # same image kept outside the mask


def test_inpaint_9_channel_with_masked_image_latents_and_latents_equals_diffusers(
    inpaint9_pair: tuple[Any, Any],
) -> None:
    masked = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(8))
    a, b = run_both(
        *inpaint9_pair, "DDIMScheduler", prompt="a cat", image=start_image(), mask_image=square_mask(),
        masked_image_latents=masked, latents=latents,
    )
    assert_images_equal(a.images, b.images)


def test_inpaint_callback_receives_mask_and_masked_image_latents(inpaint9_pair: tuple[Any, Any]) -> None:
    ours = inpaint9_pair[0]
    received: list[tuple[int, ...]] = []

    def record(pipe: Any, step: int, timestep: Any, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        received.append(tuple(tensors["mask"].shape) + tuple(tensors["masked_image_latents"].shape))
        return {}

    ours("a cat", image=start_image(), mask_image=square_mask(), num_inference_steps=2, output_type="latent",
         callback_on_step_end=record, callback_on_step_end_tensor_inputs=["latents", "mask", "masked_image_latents"])
    assert received == [(2, 1, 8, 8, 2, 4, 8, 8)] * 2


def test_inpaint_mask_processor_binarizes_grayscale_without_normalizing(inpaint4_pair: tuple[Any, Any]) -> None:
    ours, theirs = inpaint4_pair
    soft = PIL.Image.fromarray(np.linspace(0, 255, 256, dtype=np.uint8).reshape(16, 16), mode="L")
    mask = ours.mask_processor.preprocess(soft, height=16, width=16)
    assert mask.shape == (1, 1, 16, 16)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(mask, theirs.mask_processor.preprocess(soft, height=16, width=16))


def test_inpaint_prepare_mask_latents_equals_diffusers(inpaint4_pair: tuple[Any, Any]) -> None:
    ours, theirs = inpaint4_pair
    mask = ours.mask_processor.preprocess(square_mask())
    image = ours.image_processor.preprocess(start_image())
    results = [
        pipe.prepare_mask_latents(mask, image * (mask < 0.5), 2, 16, 16, torch.float32, torch.device("cpu"),
                                  torch.Generator().manual_seed(0), True)
        for pipe in (ours, theirs)
    ]
    assert results[0][0].shape == (4, 1, 8, 8) and results[0][1].shape == (4, 4, 8, 8)
    assert torch.equal(results[0][0], results[1][0])
    assert torch.allclose(results[0][1], results[1][1], atol=1e-5)


def test_inpaint_unet_with_other_channel_count_is_refused(inpaint4_pair: tuple[Any, Any]) -> None:
    ours = inpaint4_pair[0]
    odd = StableDiffusionInpaintPipeline(**{**ours.components, "unet": _unet_with_channels(ours.unet, 5)})
    with pytest.raises(errors.UnetChannelsError, match="4 .* or 9 .*got 5") as info:
        odd(prompt="a cat", image=start_image(), mask_image=square_mask(), num_inference_steps=2)
    assert isinstance(info.value, ValueError) and info.value.channels == 5


def _corner_mask(size: int = 32) -> PIL.Image.Image:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[3:9, 20:24] = 255
    return PIL.Image.fromarray(mask, mode="L")


@pytest.mark.parametrize("pair", ["inpaint4_pair", "inpaint9_pair"])
def test_inpaint_padding_mask_crop_equals_diffusers(pair: str, request: pytest.FixtureRequest) -> None:
    ours, theirs = request.getfixturevalue(pair)
    a, b = run_both(
        ours, theirs, "DDIMScheduler", prompt="a cat", image=start_image(3, size=32), mask_image=_corner_mask(),
        height=16, width=16, padding_mask_crop=2, output_type="pil",
    )
    assert a.images[0].size == (32, 32)  # pasted back into the full image
    # PIL output: uint8, so a 1e-6 difference can round to one level apart
    assert_images_equal(np.stack([np.asarray(i) for i in a.images]), np.stack([np.asarray(i) for i in b.images]), atol=1)
    kept = np.asarray(_corner_mask()) == 0
    assert (np.asarray(a.images[0])[kept] == np.asarray(start_image(3, size=32))[kept]).mean() > 0.99


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"image": np.zeros((32, 32, 3), dtype=np.float32)}, "padding_mask_crop needs image as one PIL image, got ndarray"),
    ({"mask_image": torch.zeros(1, 1, 32, 32)}, "padding_mask_crop needs mask_image as one PIL image, got Tensor"),
    ({"output_type": "np"}, "output_type must be 'pil', got 'np'"),
])
def test_inpaint_padding_mask_crop_refuses_non_pil_inputs_and_outputs_like_diffusers(
    inpaint4_pair: tuple[Any, Any], kwargs: dict[str, Any], message: str
) -> None:
    call = {"prompt": "a cat", "image": start_image(size=32), "mask_image": _corner_mask(), "padding_mask_crop": 2,
            "num_inference_steps": 2, **kwargs}
    with pytest.raises(errors.PipelineInputError, match=message):
        inpaint4_pair[0](**call)
    with pytest.raises(ValueError):
        inpaint4_pair[1](**call)


def test_inpaint_without_mask_is_refused(inpaint4_pair: tuple[Any, Any]) -> None:
    with pytest.raises(errors.PipelineInputError, match="mask_image"):
        inpaint4_pair[0](prompt="a cat", image=start_image())


def test_inpaint_strength_too_small_for_one_step_is_refused(inpaint4_pair: tuple[Any, Any]) -> None:
    with pytest.raises(errors.PipelineInputError, match="strength=0.1 .*no denoising step"):
        inpaint4_pair[0](
            prompt="a cat", image=start_image(), mask_image=square_mask(), strength=0.1, num_inference_steps=4
        )


def _unet_with_channels(unet: Any, channels: int) -> Any:
    config = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    return type(unet).from_config({**config, "in_channels": channels})


def test_a_repository_naming_the_img2img_or_inpaint_class_builds_it(tiny_sd_folder, tmp_path):
    """model_index.json's _class_name may name these built-in pipelines (pipeyard.names)."""
    import json
    import shutil

    import pipeyard
    from pipeyard import DiffusionPipeline

    for name in ("StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"):
        folder = tmp_path / name
        shutil.copytree(tiny_sd_folder, folder)
        index = json.loads((folder / "model_index.json").read_text())
        (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": name}))
        assert type(DiffusionPipeline.from_pretrained(folder)) is getattr(pipeyard, name)
