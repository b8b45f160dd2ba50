"""The main job (`pipeyard demo`), run through the CLI runner with few steps."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from PIL import Image

from pipeyard.cli import cli


def test_demo_writes_pngs_and_prints_timings(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert "custom pipeline: UnetSchedulerOneForwardPipeline" in result.output
    assert "load through custom_pipeline='one_step_unet'" in result.output
    assert "loaded UnetSchedulerOneForwardPipeline from Hub repo 'demo/tiny-ddpm'" in result.output
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
