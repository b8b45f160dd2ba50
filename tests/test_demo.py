"""The main job (`pipeyard demo`), run through the CLI runner with few steps."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from PIL import Image

from pipeyard.cli import cli


def test_demo_samples_the_bundled_models_through_built_in_and_custom_pipelines(tmp_path):
    args = ["demo", "--out", str(tmp_path), "--steps", "2", "--t2i-steps", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "custom pipelines: DDIMNoiseComparativeAnalysisPipeline, UnetSchedulerOneForwardPipeline" in result.output
    assert "load through custom_pipeline='ddim_noise_comparative_analysis'" in result.output
    assert "loaded UnetSchedulerOneForwardPipeline from Hub repo 'demo/tiny-ddpm'" in result.output
    sizes = {"demo_grid.png": (256, 256), "ddpm_grid.png": (256, 64), "one_step_unet_grid.png": (256, 64)}
    # text-to-image: 32x32 pictures scaled up 4x; 8 prompts four to a row, 6 frames, sketch + result, 6 schedulers
    sizes |= {"t2i_grid.png": (512, 256), "lpw_grid.png": (512, 256), "interpolation.png": (768, 128),
              "img2img.png": (256, 128), "schedulers.png": (768, 128)}
    for name, size in sizes.items():  # 16x16 tiles scaled up 4x, four to a row
        assert f"wrote {tmp_path / name}" in result.output
        with Image.open(tmp_path / name) as image:
            assert image.size == size
    for custom in ("lpw_stable_diffusion", "interpolate_stable_diffusion", "img2img_stable_diffusion"):
        assert f"load through custom_pipeline='{custom}'" in result.output
    assert "scheduler comparison: 6 schedulers, 2 steps each" in result.output
    assert "t2i_grid.png tile 1: 'a big red circle on the left on a white background'" in result.output
    again = CliRunner().invoke(cli, args[:-2] + ["--steps", "1", "--t2i-steps", "1"])
    assert again.exit_code == 0, again.output  # replaces the copied model folders


def test_scheduler_comparison_gives_the_pipeline_its_scheduler_back(tmp_path):
    from pipeyard import DiffusionPipeline
    from pipeyard.demo import DemoReport
    from pipeyard.demo_t2i import BUNDLED_T2I_MODEL, _run_schedulers

    pipe = DiffusionPipeline.from_pretrained(BUNDLED_T2I_MODEL)
    original = pipe.scheduler
    report = DemoReport(tmp_path)
    _run_schedulers(report, pipe, tmp_path, seed=0, steps=1)
    assert pipe.scheduler is original
    assert report.images == [tmp_path / "schedulers.png"]


def test_demo_reports_a_missing_t2i_model_with_the_fix(tmp_path, monkeypatch):
    import pipeyard.demo_t2i

    monkeypatch.setattr(pipeyard.demo_t2i, "BUNDLED_T2I_MODEL", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="text-to-image model is missing from .*nowhere.*reinstall pipeyard"):
        pipeyard.demo_t2i.copy_t2i_model(tmp_path / "copy")


def test_the_bundled_model_draws_shapes_on_a_light_background(tmp_path):
    """The trained model, not noise: most of each sample is the near-white background."""
    import numpy as np
    import torch

    from pipeyard import DiffusionPipeline
    from pipeyard.demo import BUNDLED_MODEL

    pipe = DiffusionPipeline.from_pretrained(BUNDLED_MODEL, custom_pipeline="ddim_noise_comparative_analysis")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster on shared cores
    try:
        images = pipe(batch_size=4, num_inference_steps=10, generator=torch.Generator().manual_seed(0),
                      output_type="np").images
    finally:
        torch.set_num_threads(threads)
    background = (images.min(axis=-1) > 0.8).mean(axis=(1, 2))  # share of near-white pixels per image
    assert np.all(background > 0.5), background
    assert np.all(background < 0.98), background  # and something is drawn on it


def test_expected_errors_print_one_line_and_exit_1(tmp_path, monkeypatch):
    import pipeyard.demo

    def broken(*args, **kwargs):
        from pipeyard.errors import EntryNotFoundError

        raise EntryNotFoundError(str(tmp_path), "model_index.json")

    monkeypatch.setattr(pipeyard.demo, "run_demo", broken)
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == f"EntryNotFoundError: 'model_index.json' does not exist in '{tmp_path}'"
    assert "Traceback" not in result.output


def test_demo_hub_serves_a_folder_as_a_repo(tmp_path, monkeypatch):
    import json

    from pipeyard import ConfigMixin, hub
    from pipeyard.demo_hub import DemoHub
    from pipeyard.errors import RepositoryNotFoundError

    (tmp_path / "repo" / "sub").mkdir(parents=True)
    (tmp_path / "repo" / "sub" / "config.json").write_text(json.dumps({"a": 1}))
    with DemoHub({"me/repo": tmp_path / "repo"}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        source = hub.open_source("me/repo")
        assert source.files == ("sub/config.json",) and source.commit == server.commits["me/repo"]
        assert ConfigMixin.load_config("me/repo", subfolder="sub")["a"] == 1
        with pytest.raises(RepositoryNotFoundError):
            hub.open_source("me/other")
