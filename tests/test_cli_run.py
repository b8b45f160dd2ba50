"""`pipeyard run`: from_pretrained(custom_pipeline=...), scheduler swap, PNG (grid), timings."""

from __future__ import annotations

import click
import numpy as np
import pytest
import torch
from PIL import Image

from pipeyard import errors
from pipeyard.cli import run_args, run_cmd
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


# --------------------------------------------------------------------------- what __call__ receives


class _Base:
    def __call__(self, prompt=None, num_inference_steps=50, num_images_per_prompt=1, generator=None):
        return None


class _ForwardsToBase(_Base):
    def __call__(self, prompt, negative_prompt=None, **kwargs):
        return None


class _OpenKwargs:
    def __call__(self, **kwargs):
        return None


class _NeedsImage:
    def __call__(self, prompt, image, mask_image, strength=0.8):
        return None


def test_options_reach_a_call_that_forwards_kwargs_to_its_base_class(capsys):
    kwargs = run_args.call_arguments(_ForwardsToBase(), "a cat", 7, 3, 2)
    assert kwargs.keys() == {"prompt", "num_inference_steps", "num_images_per_prompt", "generator"}
    assert kwargs["num_inference_steps"] == 7 and kwargs["num_images_per_prompt"] == 2
    assert "ignored" not in capsys.readouterr().err


def test_options_are_forwarded_into_kwargs_no_class_names_and_said_so(capsys):
    kwargs = run_args.call_arguments(_OpenKwargs(), "a cat", 7, 3, 2)
    assert kwargs.keys() == {"prompt", "num_inference_steps", "num_images_per_prompt", "generator"}
    assert ("note: _OpenKwargs.__call__ takes **kwargs; forwarded --prompt as prompt, --steps as "
            "num_inference_steps, --num-images as num_images_per_prompt") in capsys.readouterr().err
    assert run_args.call_arguments(_OpenKwargs(), None, None, 0, 1).keys() == {"generator"}


def test_required_inputs_the_command_cannot_supply_are_a_usage_error_naming_them():
    with pytest.raises(click.UsageError, match=r"_NeedsImage.__call__ needs image, mask_image, which `pipeyard run` "
                                               r"cannot supply .* call the pipeline from Python"):
        run_args.call_arguments(_NeedsImage(), "a cat", None, 0, 1)


def test_a_pipeline_needing_an_image_exits_2_before_sampling(invoke, tiny_ddpm_folder, tmp_path):
    pipeline = write_scaffold("needs_image", tmp_path).pipeline
    text = pipeline.read_text().replace("        batch_size: int = 1,\n", "        image: Any,\n        batch_size: int = 1,\n", 1)
    pipeline.write_text(text)
    result = invoke("run", pipeline, "--model", tiny_ddpm_folder, "--out", tmp_path / "x.png")
    assert result.exit_code == 2, result.output
    assert "NeedsImagePipeline.__call__ needs image, which `pipeyard run` cannot supply" in result.output
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------- --device and --out


@pytest.mark.parametrize(("device", "reason"), [("nope", "is not a torch device name"),
                                                 ("cuda:99", "is not present on this machine"),
                                                 ("cpu:3", "is not present on this machine")])
def test_a_device_that_does_not_exist_is_a_typed_error_before_loading(invoke, tmp_path, device, reason):
    result = invoke("run", "one_step_unet", "--model", tmp_path / "never-read", "--device", device)
    assert result.exit_code == 1
    assert result.output.startswith(f"DeviceError: device {device!r} {reason}; this machine has: cpu")
    with pytest.raises(errors.DeviceError) as caught:
        run_args.check_device(device)
    assert isinstance(caught.value, ValueError) and "cpu" in caught.value.available


def test_out_with_a_jpg_suffix_writes_jpeg(invoke, tiny_ddpm_folder, tmp_path):
    out = tmp_path / "one.jpg"
    result = invoke("run", "one_step_unet", "--model", tiny_ddpm_folder, "--out", out)
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.format == "JPEG" and image.size == (16, 16)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_a_missing_output_folder_is_a_usage_error_and_is_not_created(invoke, tmp_path):
    out = tmp_path / "missing" / "one.png"
    result = invoke("run", "one_step_unet", "--model", tmp_path / "never-read", "--out", out)
    assert result.exit_code == 2
    assert f"folder '{out.parent}' of '{out}' does not exist; create it first" in result.output
    assert not out.parent.exists()


def test_an_unknown_image_suffix_is_a_usage_error_naming_the_ones_written(invoke, tmp_path):
    result = invoke("run", "one_step_unet", "--model", tmp_path / "never-read", "--out", tmp_path / "x.gif")
    assert result.exit_code == 2
    assert "has no image suffix pipeyard writes; end it in .png, .jpg, .jpeg, .webp" in result.output


def test_run_forwards_steps_and_count_to_a_community_pipeline_taking_kwargs(invoke, tiny_sd_folder, tmp_path):
    """lpw_stable_diffusion's __call__ is (prompt, negative_prompt, **kwargs) over StableDiffusionPipeline's."""
    out = tmp_path / "lpw.png"
    result = invoke("run", "lpw_stable_diffusion", "--model", tiny_sd_folder, "--prompt", "a (cat:1.2)",
                    "--steps", "2", "--num-images", "2", "--out", out)
    assert result.exit_code == 0, result.output
    assert "ignored" not in result.output and "wrote" in result.output and "(2 image(s))" in result.output
    with Image.open(out) as image:
        assert image.size[0] == 2 * image.size[1]  # two images side by side
    missing = invoke("run", "lpw_stable_diffusion", "--model", tiny_sd_folder, "--out", out)
    assert missing.exit_code == 2 and "needs a prompt: pass --prompt TEXT" in missing.output
