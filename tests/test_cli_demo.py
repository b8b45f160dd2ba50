"""`pipeyard demo` offline: the part that needs a local Hub server says it is skipped, exit 0."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipeyard.cli import cli


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "PIPEYARD_OFFLINE"])
def test_demo_completes_offline_and_says_the_hub_part_is_skipped(tmp_path, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--steps", "1"])
    assert result.exit_code == 0, result.output
    assert "skipped: loading from a Hub-style repo on 127.0.0.1 (offline mode is on" in result.output
    assert "loaded UnetSchedulerOneForwardPipeline from Hub repo" not in result.output
    assert (tmp_path / "demo_grid.png").is_file() and not (tmp_path / "hub-cache").exists()
