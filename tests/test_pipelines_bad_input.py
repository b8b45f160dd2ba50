"""Bad arguments to the built-in pipelines fail early, with a typed error that says the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from pipeyard import DDIMPipeline, DDPMPipeline, DiffusionPipeline, StableDiffusionPipeline, errors


@pytest.fixture(scope="module")
def sd(tiny_sd_folder: Path) -> StableDiffusionPipeline:
    """The tiny SD pipeline whose UNet and text encoder fail the test if they are ever called."""
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_folder)
    pipe.set_progress_bar_config(disable=True)

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the pipeline did work before checking its arguments")

    pipe.unet.forward = must_not_run
    pipe.text_encoder.forward = must_not_run
    return pipe


@pytest.mark.parametrize("height, width", [(30, 32), (32, 36), (33, 33)])
def test_size_not_multiple_of_8_names_a_valid_size(sd: Any, height: int, width: int) -> None:
    with pytest.raises(errors.ImageSizeError) as info:
        sd("a cat", height=height, width=width)
    assert isinstance(info.value, ValueError)
    assert "multiples of 8" in str(info.value) and f"height={height}" in str(info.value)
    assert "use e.g. height=" in str(info.value)


def test_prompt_and_prompt_embeds_together_are_refused(sd: Any) -> None:
    with pytest.raises(errors.ConflictingInputsError, match="either prompt or prompt_embeds, not both"):
        sd("a cat", prompt_embeds=torch.zeros(1, 77, 32))
    with pytest.raises(errors.ConflictingInputsError, match="pass prompt or prompt_embeds"):
        sd()
    with pytest.raises(errors.ConflictingInputsError, match="negative_prompt or negative_prompt_embeds"):
        sd("a cat", negative_prompt="x", negative_prompt_embeds=torch.zeros(1, 77, 32))


@pytest.mark.parametrize(
    "count, expected, kwargs",
    [(2, 1, dict(prompt="a cat")), (3, 4, dict(prompt=["a", "b"], num_images_per_prompt=2))],
)
def test_generator_list_of_the_wrong_length_says_how_many(sd: Any, count: int, expected: int, kwargs: dict) -> None:
    generators = [torch.Generator().manual_seed(i) for i in range(count)]
    with pytest.raises(errors.BatchSizeMismatchError) as info:
        sd(generator=generators, **kwargs)
    assert (info.value.got, info.value.expected) == (count, expected)
    assert "exactly one per image" in str(info.value)


def test_negative_prompt_batch_mismatch(sd: Any) -> None:
    with pytest.raises(errors.BatchSizeMismatchError, match="negative_prompt has 3 entries but the batch has 2"):
        sd(["a cat", "a dog"], negative_prompt=["x", "y", "z"])


def test_negative_embeds_of_another_shape(sd: Any) -> None:
    with pytest.raises(errors.PipelineInputError, match="same shape"):
        sd(prompt_embeds=torch.zeros(2, 77, 32), negative_prompt_embeds=torch.zeros(1, 77, 32))


@pytest.mark.parametrize("bad", ["numpy", "PIL", None])
def test_unknown_output_type_lists_the_choices(sd: Any, bad: Any) -> None:
    with pytest.raises(errors.UnknownOutputTypeError) as info:
        sd("a cat", output_type=bad)
    assert "'pil', 'np', 'pt', 'latent'" in str(info.value)


def test_wrong_latents_shape_and_unknown_callback_inputs(sd: Any) -> None:
    with pytest.raises(errors.PipelineInputError, match=r"latents have shape \(1, 4, 4, 4\)"):
        sd(prompt_embeds=torch.zeros(1, 77, 32), guidance_scale=1.0, latents=torch.zeros(1, 4, 4, 4))
    with pytest.raises(errors.PipelineInputError, match="callback_on_step_end_tensor_inputs"):
        sd("a cat", callback_on_step_end_tensor_inputs=["noise_pred"])


@pytest.mark.parametrize("cls", [DDPMPipeline, DDIMPipeline])
def test_unconditional_pipelines_check_generators_and_output_type(tiny_ddpm_folder: Path, cls: type) -> None:
    pipe = cls.from_pretrained(tiny_ddpm_folder)
    with pytest.raises(errors.BatchSizeMismatchError, match="generator has 3 entries but the batch has 2"):
        pipe(batch_size=2, generator=[torch.Generator() for _ in range(3)])
    with pytest.raises(errors.UnknownOutputTypeError, match="'pil', 'np', 'pt'"):
        pipe(output_type="latent")


def test_model_index_naming_an_unknown_pipeline_class(tiny_ddpm_folder: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_ddpm_folder, tmp_path / "repo")
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableCascadePipeline"}))
    with pytest.raises(errors.PipelineNotFoundError) as info:
        DiffusionPipeline.from_pretrained(folder)
    message = str(info.value)
    assert "StableCascadePipeline" in message and "DDPMPipeline" in message and "custom_pipeline=" in message
    assert isinstance(info.value, LookupError)


def test_integer_attention_slicing_reaches_unet_and_one_head_vae(tiny_sd_folder):
    from pipeyard import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_folder, safety_checker=None, requires_safety_checker=False)
    pipe.enable_attention_slicing(2)
    sizes = {module.slice_size for module in pipe.vae.modules() if hasattr(module, "slice_size")}
    assert sizes == {1}  # capped at the VAE's single head
    assert {m.slice_size for m in pipe.unet.modules() if hasattr(m, "slice_size")} <= {1, 2}


@pytest.mark.parametrize("pipeline_class", [DDPMPipeline, DDIMPipeline])
@pytest.mark.parametrize("batch_size", [0, -1, 1.5, "2", True])
def test_a_batch_size_that_is_no_count_of_images_is_a_typed_error(pipeline_class, batch_size: Any) -> None:
    from pipeyard import DDIMScheduler, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    scheduler = DDPMScheduler() if pipeline_class is DDPMPipeline else DDIMScheduler()
    pipe = pipeline_class(unet=unet, scheduler=scheduler)
    with pytest.raises(errors.PipelineInputError, match=rf"batch_size={batch_size!r}.*whole number >= 1"):
        pipe(batch_size=batch_size, num_inference_steps=1)
