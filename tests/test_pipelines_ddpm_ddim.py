"""DDPMPipeline and DDIMPipeline: diffusers-saved folders load unchanged and sample the same images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import assert_images_equal

import pipeyard
from pipeyard import DDIMPipeline, DDPMPipeline, DiffusionPipeline

diffusers = pytest.importorskip("diffusers")


def generators(seeds: int | list[int]) -> torch.Generator | list[torch.Generator]:
    if isinstance(seeds, list):
        return [torch.Generator().manual_seed(s) for s in seeds]
    return torch.Generator().manual_seed(seeds)


def quiet(pipe: Any) -> Any:
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_folder_loads_as_ddpm_pipeline_with_pipeyard_components(tiny_ddpm_folder: Path) -> None:
    pipe = DiffusionPipeline.from_pretrained(tiny_ddpm_folder)
    assert type(pipe) is DDPMPipeline
    assert isinstance(pipe.unet, pipeyard.UNet2DModel)
    assert isinstance(pipe.scheduler, pipeyard.DDPMScheduler)


@pytest.mark.parametrize("seeds", [0, [5, 6]], ids=["one-generator", "generator-list"])
def test_ddpm_images_equal_diffusers(tiny_ddpm_folder: Path, seeds: Any) -> None:
    ours = quiet(DiffusionPipeline.from_pretrained(tiny_ddpm_folder))
    theirs = quiet(diffusers.DDPMPipeline.from_pretrained(tiny_ddpm_folder))
    kwargs = dict(batch_size=2, num_inference_steps=4, output_type="np")
    a = ours(generator=generators(seeds), **kwargs).images
    b = theirs(generator=generators(seeds), **kwargs).images
    assert a.shape == (2, 16, 16, 3)
    assert_images_equal(a, b)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_images_equal_diffusers(tiny_ddpm_folder: Path, eta: float) -> None:
    ours = quiet(DDIMPipeline.from_pretrained(tiny_ddpm_folder))
    theirs = quiet(diffusers.DDIMPipeline.from_pretrained(tiny_ddpm_folder))
    assert isinstance(ours.scheduler, pipeyard.DDIMScheduler)  # re-read from the DDPM config
    kwargs = dict(batch_size=2, num_inference_steps=5, eta=eta, output_type="np")
    a = ours(generator=generators([1, 2]), **kwargs).images
    b = theirs(generator=generators([1, 2]), **kwargs).images
    assert_images_equal(a, b)


def test_ddim_with_attention_slicing_equals_diffusers(tiny_ddpm_folder: Path) -> None:
    ours = quiet(DDIMPipeline.from_pretrained(tiny_ddpm_folder))
    ours.enable_attention_slicing("max")
    theirs = quiet(diffusers.DDIMPipeline.from_pretrained(tiny_ddpm_folder))
    a = ours(generator=generators(3), num_inference_steps=3, output_type="np").images
    b = theirs(generator=generators(3), num_inference_steps=3, output_type="np").images
    assert_images_equal(a, b)


def test_output_types_and_tuple(tiny_ddpm_folder: Path) -> None:
    pipe = quiet(DDIMPipeline.from_pretrained(tiny_ddpm_folder))
    images = pipe(generator=generators(0), num_inference_steps=2).images
    assert len(images) == 1 and images[0].size == (16, 16)
    (tensor,) = pipe(generator=generators(0), num_inference_steps=2, output_type="pt", return_dict=False)
    assert tensor.shape == (1, 3, 16, 16) and 0 <= tensor.min() <= tensor.max() <= 1


def test_progress_bar_runs_over_the_timesteps(tiny_ddpm_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipe = DDPMPipeline.from_pretrained(tiny_ddpm_folder)
    pipe(num_inference_steps=3, output_type="np")
    assert "3/3" in capsys.readouterr().err
