"""Saving a custom pipeline copies its code; the saved folder reloads in a fresh process.
Saving trusts nothing by itself: only ``trust_saved_code=True`` lets the saving machine reload
it without asking, and other machines always ask."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from pipeyard import DiffusionPipeline, trust
from pipeyard.errors import UntrustedCodeError

_PIPELINE = textwrap.dedent(
    '''
    """Scales the UNet's output at timestep 5: a custom pipeline for the save tests."""
    import torch

    from pipeyard import DiffusionPipeline

    from .helpers.scale import FACTOR


    class ScaledUnetPipeline(DiffusionPipeline):
        def __init__(self, unet, scheduler):
            super().__init__()
            self.register_modules(unet=unet, scheduler=scheduler)

        @torch.no_grad()
        def __call__(self, seed: int = 0):
            size = self.unet.config.sample_size
            noise = torch.randn(1, self.unet.config.in_channels, size, size,
                                generator=torch.Generator().manual_seed(seed))
            return self.unet(noise, 5).sample * FACTOR
    '''
)


@pytest.fixture
def custom_folder(tmp_path):
    """A local folder pipeline with a sibling package imported relatively."""
    folder = tmp_path / "custom"
    (folder / "helpers").mkdir(parents=True)
    (folder / "pipeline.py").write_text(_PIPELINE)
    (folder / "helpers" / "__init__.py").write_text("")
    (folder / "helpers" / "scale.py").write_text("FACTOR = 3.0\n")
    return folder


@pytest.fixture
def saved_custom(tiny_ddpm_folder, custom_folder, tmp_path):
    pipe = DiffusionPipeline.from_pretrained(tiny_ddpm_folder, custom_pipeline=str(custom_folder))
    out = tmp_path / "saved"
    pipe.save_pretrained(out, trust_saved_code=True)
    return pipe, out


def test_a_plain_save_trusts_nothing_and_its_reload_asks(tiny_ddpm_folder, custom_folder, tmp_path):
    pipe = DiffusionPipeline.from_pretrained(tiny_ddpm_folder, custom_pipeline=str(custom_folder))
    pipe.save_pretrained(tmp_path / "saved")
    assert trust.list() == []
    with pytest.raises(UntrustedCodeError) as info:
        DiffusionPipeline.from_pretrained(tmp_path / "saved")
    assert "trust_remote_code=True" in str(info.value)
    assert info.value.path == str(tmp_path / "saved" / "pipeline.py")  # the file to read is the saved one
    reloaded = DiffusionPipeline.from_pretrained(tmp_path / "saved", trust_remote_code=True)
    assert torch.equal(reloaded(seed=3), pipe(seed=3))
    assert trust.list() == []  # a one-off flag is not remembered


def test_save_copies_the_code_and_records_its_source(saved_custom, custom_folder):
    pipe, out = saved_custom
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline.py", "ScaledUnetPipeline"]
    source = index["_pipeyard_source"]
    assert source["kind"] == "LOCAL_FOLDER" and str(custom_folder) in source["origin"]
    assert (out / "pipeline.py").read_text() == _PIPELINE
    assert (out / "helpers" / "scale.py").read_text() == "FACTOR = 3.0\n"
    assert source["sha256"] in {entry.sha256 for entry in trust.list()}


def test_saved_folder_reloads_in_a_fresh_process(saved_custom):
    pipe, out = saved_custom
    expected = pipe(seed=1)
    script = textwrap.dedent(
        f"""
        import torch
        from pipeyard import DiffusionPipeline
        pipe = DiffusionPipeline.from_pretrained({str(out)!r})
        print(type(pipe).__name__, type(pipe.unet).__name__, type(pipe.scheduler).__name__)
        torch.save(pipe(seed=1), {str(out / "result.pt")!r})
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ScaledUnetPipeline", "UNet2DModel", "DDPMScheduler"]
    assert torch.equal(torch.load(out / "result.pt"), expected)


def test_the_same_folder_elsewhere_asks_for_trust(saved_custom, tmp_path, monkeypatch):
    _, out = saved_custom
    monkeypatch.setenv("PIPEYARD_HOME", str(tmp_path / "someone-else"))
    with pytest.raises(UntrustedCodeError) as info:
        DiffusionPipeline.from_pretrained(out)
    assert "trust_remote_code=True" in str(info.value)
    assert type(DiffusionPipeline.from_pretrained(out, trust_remote_code=True)).__name__ == "ScaledUnetPipeline"


def test_saving_twice_and_reloading_the_reloaded_pipeline(saved_custom, tmp_path):
    pipe, out = saved_custom
    again = DiffusionPipeline.from_pretrained(out)
    again.save_pretrained(tmp_path / "second", trust_saved_code=True)
    index = json.loads((tmp_path / "second" / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline.py", "ScaledUnetPipeline"]
    assert torch.equal(DiffusionPipeline.from_pretrained(tmp_path / "second")(seed=2), pipe(seed=2))


def test_bundled_community_pipeline_saves_and_reloads(tiny_ddpm_folder, tmp_path):
    pipe = DiffusionPipeline.from_pretrained(tiny_ddpm_folder, custom_pipeline="one_step_unet")
    pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["_class_name"] == ["one_step_unet.py", "UnetSchedulerOneForwardPipeline"]
    assert index["_pipeyard_source"]["kind"] == "BUNDLED"
    reloaded = DiffusionPipeline.from_pretrained(tmp_path / "saved")
    assert type(reloaded) is type(pipe)


def test_entry_point_pipeline_is_saved_by_name_and_reloads(tiny_ddpm_folder, tmp_path, install_pipeline_distribution):
    install_pipeline_distribution("acme_unet", "acme_pipes_mod", (
        "from pipeyard import DiffusionPipeline\n\n\n"
        "class AcmeUnetPipeline(DiffusionPipeline):\n"
        "    def __init__(self, unet, scheduler):\n"
        "        super().__init__()\n"
        "        self.register_modules(unet=unet, scheduler=scheduler)\n"
    ), "AcmeUnetPipeline")
    pipe = DiffusionPipeline.from_pretrained(tiny_ddpm_folder, custom_pipeline="acme_unet")
    pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["_class_name"] == "AcmeUnetPipeline"
    assert index["_pipeyard_source"]["kind"] == "ENTRY_POINT" and index["_pipeyard_source"]["location"] == "acme_unet"
    assert not (tmp_path / "saved" / "acme_pipes_mod.py").exists()
    assert type(DiffusionPipeline.from_pretrained(tmp_path / "saved")) is type(pipe)
