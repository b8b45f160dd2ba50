"""`pipeyard run`: from_pretrained(custom_pipeline=...), scheduler swap, PNG (grid), timings."""

from __future__ import annotations

import click
import numpy as np
import pytest
import torch
from PIL import Image

from pipeyard.cli import run_cmd
from pipeyard.cli.scaffold import write_scaffold


def test_run_bundled_one_step_unet_writes_a_grid_of_its_tensor_output(invoke, tiny_ddpm_folder, tmp_path):
    out = tmp_path / "grid.png"
    result = invoke("run", "one_step_unet", "--model", tiny_ddpm_folder, "--num-images", "4",
                    "--steps", "3", "--out", out)
    assert result.exit_code == 0, result.output
    assert "pipeline: UnetSchedulerOneForwardPipeline  scheduler: DDPMScheduler" in result.output
    assert "note: UnetSchedulerOneForwardPipeline.__call__ takes no --steps; ignored" in result.output
    for step in ("load", "sample", "save"):
        assert f" s  {step}" in result.output
    assert f"wrote {out} (4 image(s))" in result.output
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (32, 32)  # 2 x 2 grid of 16 x 16


def test_run_a_local_file_with_another_scheduler(invoke, tiny_ddpm_folder, tmp_path):
    pipeline = write_scaffold("two_steps", tmp_path).pipeline
    out = tmp_path / "one.png"
    result = invoke("run", pipeline, "--model", tiny_ddpm_folder, "--steps", "2", "--prompt", "a cat",
                    "--scheduler", "EulerDiscreteScheduler", "--dtype", "float32", "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    assert "pipeline: TwoStepsPipeline  scheduler: EulerDiscreteScheduler" in result.output
    assert "takes no --prompt; ignored" in result.output
    with Image.open(out) as image:
        assert image.size == (16, 16)


def test_an_unknown_scheduler_is_refused_before_loading_with_the_valid_names(invoke, tmp_path):
    result = invoke("run", "one_step_unet", "--model", tmp_path / "never-read", "--scheduler", "FastScheduler")
    assert result.exit_code == 1
    assert result.output.startswith("UnknownSchedulerError: unknown scheduler 'FastScheduler'; pipeyard's schedulers: ")
    assert "DDIMScheduler" in result.output and "EulerDiscreteScheduler" in result.output


def test_a_missing_model_folder_is_one_line(invoke, tmp_path):
    result = invoke("run", "one_step_unet", "--model", str(tmp_path / "nowhere") + "/")
    assert result.exit_code == 1
    assert result.output.startswith("LocalPathError: ") and "Traceback" not in result.output


class _Pipe:
    def __call__(self, prompt, num_inference_steps=50, num_images_per_prompt=1, generator=None):
        return None


def test_call_arguments_pass_only_what_call_accepts():
    kwargs = run_cmd.call_arguments(_Pipe(), "a cat", 7, 3, 2)
    assert kwargs.keys() == {"prompt", "num_inference_steps", "num_images_per_prompt", "generator"}
    assert kwargs["num_images_per_prompt"] == 2 and kwargs["generator"].initial_seed() == 3
    with pytest.raises(click.UsageError, match="_Pipe needs a prompt: pass --prompt TEXT"):
        run_cmd.call_arguments(_Pipe(), None, None, 0, 1)


def test_output_images_accept_tensors_arrays_and_pil():
    sample = torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 3, 1, 1).expand(2, 3, 2, 2)
    images = run_cmd.output_images(sample)  # a bare tensor is a sample in [-1, 1]
    assert len(images) == 2 and images[0].getpixel((0, 0)) == (0, 128, 255)
    from pipeyard.pipelines.outputs import ImagePipelineOutput

    array = np.ones((3, 4, 4, 3), dtype=np.float32)
    assert len(run_cmd.output_images(ImagePipelineOutput(images=array))) == 3
    assert run_cmd.output_images((torch.zeros(1, 3, 4, 4),))[0].size == (4, 4)
    pil = [Image.new("RGB", (5, 5))]
    assert run_cmd.output_images(ImagePipelineOutput(images=pil)) == pil
    with pytest.raises(click.ClickException, match="cannot save what the pipeline returned"):
        run_cmd.output_images("text")


def test_run_loads_pickle_weights_only_with_allow_pickle(invoke, tiny_ddpm_folder, tmp_path):
    import shutil

    from safetensors.torch import load_file

    model = tmp_path / "model"
    shutil.copytree(tiny_ddpm_folder, model)
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), model / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    refused = invoke("run", "one_step_unet", "--model", model, "--out", tmp_path / "a.png")
    assert refused.exit_code == 1 and refused.output.startswith("PickleWeightsError:")
    done = invoke("run", "one_step_unet", "--model", model, "--out", tmp_path / "b.png", "--allow-pickle")
    assert done.exit_code == 0, done.output
