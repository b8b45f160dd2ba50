"""Custom components: a model_index entry ``[module, Class]`` naming a module of the repository.

``"unet": ["my_unet", "MyUNet"]`` with ``unet/my_unet.py`` (where diffusers looks) or
``my_unet.py`` at the root: the class is loaded through the host (same commit as the weights,
verified, trust-gated, stored, imported) and its weights from ``unet/`` like any model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import pipeyard.trust
from pipeyard import DDPMPipeline, DDPMScheduler, DiffusionPipeline, errors

PIPEYARD_MODULE = '''\
import torch

from pipeyard import ModelMixin, register_to_config


class MyUNet(ModelMixin):
    """A tiny custom model."""

    MARK = "{mark}"

    @register_to_config
    def __init__(self, width: int = 4):
        super().__init__()
        self.proj = torch.nn.Linear(width, width)

    def forward(self, x):
        return self.proj(x)
'''

DIFFUSERS_MODULE = '''\
import torch

from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config


class MyUNet(ModelMixin, ConfigMixin):
    MARK = "diffusers-written"

    @register_to_config
    def __init__(self, width: int = 4):
        super().__init__()
        self.proj = torch.nn.Linear(width, width)
'''


def module_text(mark: str = "one") -> str:
    return PIPEYARD_MODULE.replace("{mark}", mark)


def _weights_of(folder: Path) -> dict[str, torch.Tensor]:
    """Save a MyUNet (its text run here, in the test, as a fixture) into ``folder``; its weights."""
    namespace: dict = {}
    exec(compile(module_text(), "<fixture>", "exec"), namespace)  # noqa: S102 - the test's own text
    torch.manual_seed(0)
    model = namespace["MyUNet"](width=4)
    model.save_pretrained(folder)
    return {k: v.clone() for k, v in model.state_dict().items()}


def build_repo(root: Path, *, text: str | None = None, place: str = "unet/my_unet.py", entry=("my_unet", "MyUNet")):
    """A DDPM pipeline folder whose unet is the repository's own class; its unet weights."""
    root.mkdir(parents=True, exist_ok=True)
    weights = _weights_of(root / "unet")
    DDPMScheduler(num_train_timesteps=10).save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "DDPMPipeline", "unet": list(entry), "scheduler": ["pipeyard", "DDPMScheduler"],
    }))
    target = root / place
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text if text is not None else module_text(), encoding="utf-8")
    return weights


# --------------------------------------------------------------------------- a local folder


def test_a_repository_module_is_refused_without_trust_naming_component_and_file(tmp_path):
    """A local folder's module was named by the repository, not by the caller: it needs trust."""
    build_repo(tmp_path / "repo")
    with pytest.raises(errors.UntrustedCodeError) as caught:
        DiffusionPipeline.from_pretrained(tmp_path / "repo")
    message = str(caught.value)
    assert "component 'unet'" in message and "'unet/my_unet.py'" in message
    assert caught.value.path == str(tmp_path / "repo" / "unet" / "my_unet.py")


def test_with_trust_the_class_loads_and_its_weights_come_from_the_subfolder(tmp_path):
    weights = build_repo(tmp_path / "repo")
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "repo", trust_remote_code=True)
    assert isinstance(pipe, DDPMPipeline)
    assert type(pipe.unet).__name__ == "MyUNet" and pipe.unet.MARK == "one"
    for key, value in weights.items():
        assert torch.equal(pipe.unet.state_dict()[key], value)
    assert pipe.config["unet"] == ["my_unet", "MyUNet"]


def test_a_module_at_the_repository_root_works_too(tmp_path):
    build_repo(tmp_path / "repo", place="my_unet.py")
    pipe = DDPMPipeline.from_pretrained(tmp_path / "repo", trust_remote_code=True)
    assert type(pipe.unet).__name__ == "MyUNet"


def test_the_component_folder_wins_over_the_root_as_in_diffusers(tmp_path):
    build_repo(tmp_path / "repo", text=module_text("subfolder"))
    (tmp_path / "repo" / "my_unet.py").write_text(module_text("root"))
    pipe = DDPMPipeline.from_pretrained(tmp_path / "repo", trust_remote_code=True)
    assert pipe.unet.MARK == "subfolder"


def test_a_diffusers_written_component_runs_through_the_compat_mapping(tmp_path):
    build_repo(tmp_path / "repo", text=DIFFUSERS_MODULE)
    pipe = DDPMPipeline.from_pretrained(tmp_path / "repo", trust_remote_code=True)
    assert pipe.unet.MARK == "diffusers-written" and isinstance(pipe.unet, pipeyard.ModelMixin)


def test_trusting_the_digest_allows_it_and_a_changed_file_is_refused_again(tmp_path):
    build_repo(tmp_path / "repo")
    with pytest.raises(errors.UntrustedCodeError) as caught:
        DDPMPipeline.from_pretrained(tmp_path / "repo")
    pipeyard.trust.add(caught.value.sha256, source="reviewed")
    assert type(DDPMPipeline.from_pretrained(tmp_path / "repo").unet).__name__ == "MyUNet"
    (tmp_path / "repo" / "unet" / "my_unet.py").write_text(module_text("changed"))
    with pytest.raises(errors.UntrustedCodeError, match="component 'unet'"):
        DDPMPipeline.from_pretrained(tmp_path / "repo")


def test_a_repository_file_never_shadows_a_library_pipeyard_loads(tmp_path):
    """``unet/diffusers.py`` must not stand in for diffusers (diffusers itself would load it)."""
    build_repo(tmp_path / "repo", place="unet/diffusers.py", entry=("diffusers", "MyUNet"))
    with pytest.raises(errors.UnknownComponentClassError) as caught:
        DDPMPipeline.from_pretrained(tmp_path / "repo", trust_remote_code=True)
    assert caught.value.looked_for == []


def test_a_missing_module_is_an_unknown_class_naming_the_files_looked_for(tmp_path):
    build_repo(tmp_path / "repo", place="unet/other.py")
    with pytest.raises(errors.UnknownComponentClassError) as caught:
        DDPMPipeline.from_pretrained(tmp_path / "repo", trust_remote_code=True)
    assert caught.value.looked_for == ["unet/my_unet.py", "my_unet.py"]
    assert "'unet/my_unet.py' or 'my_unet.py'" in str(caught.value)


def test_a_module_without_the_named_class_fails_verification_before_it_runs(tmp_path):
    text = "raise SystemExit('ran')\n\nclass Other:\n    pass\n"
    build_repo(tmp_path / "repo", text=text)
    with pytest.raises(errors.PipelineVerificationError, match=r"no top-level class of that name .*Other \(line 3\)"):
        DDPMPipeline.from_pretrained(tmp_path / "repo", trust_remote_code=True)


def test_an_object_passed_by_the_caller_means_the_module_is_never_loaded(tmp_path):
    build_repo(tmp_path / "repo", text="raise SystemExit('ran')\n")
    unet = torch.nn.Linear(2, 2)
    pipe = DDPMPipeline.from_pretrained(tmp_path / "repo", unet=unet)
    assert pipe.unet is unet


# --------------------------------------------------------------------------- saving


def test_saving_copies_the_module_beside_the_weights_and_reload_asks_trust_again(tmp_path):
    build_repo(tmp_path / "repo", place="my_unet.py")
    pipe = DDPMPipeline.from_pretrained(tmp_path / "repo", trust_remote_code=True)
    pipe.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "unet" / "my_unet.py").read_text() == module_text()
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["unet"] == ["my_unet", "MyUNet"]
    with pytest.raises(errors.UntrustedCodeError, match="component 'unet'"):
        DDPMPipeline.from_pretrained(tmp_path / "saved")
    again = DDPMPipeline.from_pretrained(tmp_path / "saved", trust_remote_code=True)
    assert torch.equal(again.unet.proj.weight, pipe.unet.proj.weight)


def test_trust_saved_code_trusts_the_saved_module_for_your_reloads(tmp_path):
    build_repo(tmp_path / "repo")
    pipe = DDPMPipeline.from_pretrained(tmp_path / "repo", trust_remote_code=True)
    pipe.save_pretrained(tmp_path / "saved", trust_saved_code=True)
    assert type(DDPMPipeline.from_pretrained(tmp_path / "saved").unet).__name__ == "MyUNet"


# --------------------------------------------------------------------------- a Hub repo


def _publish(olah_hub, root: Path) -> tuple[str, object, str]:
    build_repo(root)
    repo_id, repo = olah_hub.new_repo()
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return repo_id, repo, repo.commit(files)


def test_a_hub_repo_module_is_refused_then_loaded_at_the_weights_commit(olah_hub, tmp_path):
    repo_id, _, commit = _publish(olah_hub, tmp_path / "build")
    with pytest.raises(errors.UntrustedCodeError) as caught:
        DDPMPipeline.from_pretrained(repo_id)
    assert caught.value.commit == commit and "component 'unet'" in str(caught.value)
    pipe = DDPMPipeline.from_pretrained(repo_id, trust_remote_code=True)
    assert type(pipe.unet).__name__ == "MyUNet"
    assert pipe.unet.__class__.__pipeyard_provenance__.commit == commit


def test_a_hub_module_changed_at_the_same_path_is_refused(olah_hub, tmp_path):
    repo_id, repo, _ = _publish(olah_hub, tmp_path / "build")
    with pytest.raises(errors.UntrustedCodeError) as caught:
        DDPMPipeline.from_pretrained(repo_id)
    pipeyard.trust.add(caught.value.sha256, source=repo_id)
    assert type(DDPMPipeline.from_pretrained(repo_id).unet).__name__ == "MyUNet"
    repo.commit({"unet/my_unet.py": module_text("changed")})
    with pytest.raises(errors.UntrustedCodeError) as caught:
        DDPMPipeline.from_pretrained(repo_id)
    assert "unet/my_unet.py" in str(caught.value)


def test_an_offline_reload_of_a_hub_repo_makes_zero_requests(olah_hub, tmp_path, hub_requests, monkeypatch):
    repo_id, *_ = _publish(olah_hub, tmp_path / "build")
    cold = DDPMPipeline.from_pretrained(repo_id, trust_remote_code=True)
    hub_requests.clear()
    monkeypatch.setenv("PIPEYARD_OFFLINE", "1")
    warm = DDPMPipeline.from_pretrained(repo_id, trust_remote_code=True)
    assert type(warm.unet) is type(cold.unet)
    assert hub_requests == []


@pytest.fixture
def diffusers_modules_in_tmp(tmp_path, monkeypatch):
    """diffusers copies dynamic modules to a cache it fixed at import (HF_HOME/modules): here a tmp dir."""
    import sys

    from diffusers.utils import dynamic_modules_utils

    monkeypatch.setattr(dynamic_modules_utils, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [n for n in sys.modules if n.startswith("diffusers_modules")]:
        monkeypatch.delitem(sys.modules, name)  # put back after the test
    yield
    for name in [n for n in sys.modules if n.startswith("diffusers_modules")]:
        del sys.modules[name]


def test_a_saved_diffusers_written_component_reloads_in_diffusers(tmp_path, diffusers_modules_in_tmp):
    """The oracle: diffusers finds the module where pipeyard saved it and reads the same weights."""
    import diffusers

    from conftest import _quiet_diffusers

    _quiet_diffusers()
    build_repo(tmp_path / "repo", text=DIFFUSERS_MODULE)
    pipe = DDPMPipeline.from_pretrained(tmp_path / "repo", trust_remote_code=True)
    pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "DDPMScheduler"]  # the component this test is not about
    (tmp_path / "saved" / "model_index.json").write_text(json.dumps(index))
    theirs = diffusers.DDPMPipeline.from_pretrained(tmp_path / "saved", trust_remote_code=True)
    assert type(theirs.unet).__name__ == "MyUNet"
    assert torch.equal(theirs.unet.proj.weight, pipe.unet.proj.weight)


SIBLING_MODULE = module_text("sibling").replace(
    "from pipeyard import ModelMixin, register_to_config\n",
    "from pipeyard import ModelMixin, register_to_config\n\nfrom .blocks import SCALE\n",
)


def test_a_component_module_with_a_sibling_is_one_package_saved_together(tmp_path):
    build_repo(tmp_path / "repo", text=SIBLING_MODULE)
    (tmp_path / "repo" / "unet" / "blocks.py").write_text("SCALE = 3\n")
    with pytest.raises(errors.UntrustedCodeError) as caught:
        DDPMPipeline.from_pretrained(tmp_path / "repo")
    pipe = DDPMPipeline.from_pretrained(tmp_path / "repo", trust_remote_code=True)
    assert __import__("sys").modules[type(pipe.unet).__module__].SCALE == 3
    pipe.save_pretrained(tmp_path / "saved", trust_saved_code=True)
    assert (tmp_path / "saved" / "unet" / "blocks.py").read_text() == "SCALE = 3\n"
    assert type(DDPMPipeline.from_pretrained(tmp_path / "saved").unet).__name__ == "MyUNet"
    assert caught.value.sha256 in {e.sha256 for e in pipeyard.trust.list()}  # the same package digest


def test_a_sibling_above_the_module_folder_cannot_be_saved_apart(tmp_path):
    build_repo(tmp_path / "repo", text=SIBLING_MODULE.replace("from .blocks", "from ..blocks"))
    (tmp_path / "repo" / "blocks.py").write_text("SCALE = 3\n")
    pipe = DDPMPipeline.from_pretrained(tmp_path / "repo", trust_remote_code=True)
    with pytest.raises(errors.CustomPipelineError, match="'blocks.py', which lies outside the module's folder"):
        pipe.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()  # nothing half-written
