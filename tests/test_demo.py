"""The main job (`pipeyard demo`), run through the CLI runner with few steps."""

from __future__ import annotations

from click.testing import CliRunner
from PIL import Image

from pipeyard.cli import cli


def test_demo_writes_pngs_and_prints_timings(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert "custom pipeline: UnetSchedulerOneForwardPipeline" in result.output
    assert "load through custom_pipeline='one_step_unet'" in result.output
    for name in ("ddpm_grid.png", "one_step_unet_grid.png"):
        assert f"wrote {tmp_path / name}" in result.output
        with Image.open(tmp_path / name) as image:
            assert image.size == (128, 32)
    again = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--steps", "1"])
    assert again.exit_code == 0, again.output  # reuses the model folder


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
