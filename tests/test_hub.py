"""Models and pipelines from a Hub repo (a real Hub-compatible server, olah, on 127.0.0.1):
only the needed files are downloaded, revisions pin commits, offline works from the cache."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from pipeyard import ConfigMixin, DiffusionPipeline, constants, hub, plugins, register_to_config
from pipeyard.errors import (
    InvalidRepoIdError,
    InvalidSubfolderError,
    LocalPathError,
    OfflineError,
    VariantNotFoundError,
)


class HubSchedule(ConfigMixin):
    config_name = "scheduler_config.json"

    @register_to_config
    def __init__(self, steps: int = 10):
        self.steps = steps


class HubPipeline(DiffusionPipeline):
    def __init__(self, model, scheduler):
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler)


def _folder_files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def model_repo(olah_hub, tmp_path, toy_model_class):
    """A Hub repo holding a model (safetensors, .bin and an fp16 variant) and a pipeline."""

    class Resolver:
        @plugins.hookimpl
        def pipeyard_resolve_component_class(self, library, class_name):
            return {"ToyModel": toy_model_class, "HubSchedule": HubSchedule}.get(class_name)

    plugins.register(Resolver(), name="hub-test-resolver")
    torch.manual_seed(0)
    model = toy_model_class(width=4)
    pipe = HubPipeline(model, HubSchedule(3))
    pipe.save_pretrained(tmp_path / "pipe")
    model.save_pretrained(tmp_path / "pipe" / "model", safe_serialization=False)
    copy.deepcopy(model).to(torch.float16).save_pretrained(tmp_path / "pipe" / "model", variant="fp16")
    repo_id, git = olah_hub.new_repo()
    first = git.commit(_folder_files(tmp_path / "pipe"), tag="v1")
    return repo_id, git, first, model


def _x():
    return torch.randn(2, 4, generator=torch.Generator().manual_seed(0))


def test_model_from_hub_downloads_only_config_and_chosen_weights(model_repo, toy_model_class, hub_requests):
    repo_id, _, _, model = model_repo
    loaded = toy_model_class.from_pretrained(repo_id, subfolder="model")
    assert torch.equal(loaded(_x()), model(_x()))
    fetched = " ".join(hub_requests)
    assert "model/diffusion_pytorch_model.safetensors" in fetched
    assert "diffusion_pytorch_model.bin" not in fetched and "fp16" not in fetched


def test_variant_from_hub(model_repo, toy_model_class):
    repo_id = model_repo[0]
    assert toy_model_class.from_pretrained(repo_id, subfolder="model", variant="fp16").dtype == torch.float16
    with pytest.raises(VariantNotFoundError, match="available variants"):
        toy_model_class.from_pretrained(repo_id, subfolder="model", variant="ema")


def test_pipeline_from_hub_skips_subfolders_of_passed_components(model_repo, hub_requests):
    repo_id, _, _, model = model_repo
    pipe = HubPipeline.from_pretrained(repo_id, scheduler=HubSchedule(9))
    assert torch.equal(pipe.model(_x()), model(_x())) and pipe.scheduler.steps == 9
    assert not [r for r in hub_requests if "scheduler/" in r]


def test_revision_pins_a_commit(model_repo, toy_model_class):
    repo_id, git, first, model = model_repo
    index = json.loads((git.path / "model" / "config.json").read_text())
    index["scale"] = 5.0
    git.commit({"model/config.json": json.dumps(index)})
    assert toy_model_class.from_pretrained(repo_id, subfolder="model").config.scale == 5.0
    assert toy_model_class.from_pretrained(repo_id, subfolder="model", revision="v1").config.scale == 1.0
    source = hub.open_source(repo_id, revision="v1")
    assert source.commit == first


def test_offline_after_a_warm_load_and_offline_cold_fails(model_repo, toy_model_class, monkeypatch, hub_requests):
    repo_id = model_repo[0]
    HubPipeline.from_pretrained(repo_id)
    monkeypatch.setenv("PIPEYARD_OFFLINE", "1")
    hub_requests.clear()
    pipe = HubPipeline.from_pretrained(repo_id)
    assert pipe.scheduler.steps == 3 and hub_requests == []
    with pytest.raises(OfflineError, match="offline mode is on"):
        toy_model_class.from_pretrained(repo_id, subfolder="model", variant="fp16")


def test_path_like_value_that_does_not_exist_is_not_sent_to_the_hub(hub_requests):
    with pytest.raises(LocalPathError, match="'./missing/model' does not exist"):
        DiffusionPipeline.from_pretrained("./missing/model")
    assert hub_requests == []


# ---------------------------------------------------------------- names checked before any request


BAD_REPO_IDS = ["x-", "my model", "a/b/c", "", "alice/x--y", "alice/model.git", "-alice/model"]


@pytest.mark.parametrize("value", BAD_REPO_IDS)
@pytest.mark.parametrize("loader", ["pipeline", "model", "config"])
def test_invalid_repo_id_is_a_typed_error_before_any_request(value, loader, toy_model_class, hub_requests):
    load = {"pipeline": DiffusionPipeline.from_pretrained, "model": toy_model_class.from_pretrained,
            "config": ConfigMixin.load_config}[loader]
    for local_files_only in (False, True):
        with pytest.raises(InvalidRepoIdError) as caught:
            load(value, local_files_only=local_files_only)
        message = str(caught.value)
        assert f"pretrained_model_name_or_path={value!r}" in message and "'owner/name'" in message
        assert isinstance(caught.value, ValueError) and caught.value.value == value
    assert hub_requests == []


@pytest.mark.parametrize("value", ["alice/x-", "alice/x--y", "alice/.hidden"])
def test_invalid_hub_custom_pipeline_name_is_a_typed_error_before_any_request(value, tmp_path, hub_requests):
    (tmp_path / "model_index.json").write_text('{"_class_name": "AnyPipeline"}')
    with pytest.raises(InvalidRepoIdError) as caught:
        DiffusionPipeline.from_pretrained(tmp_path, custom_pipeline=value, trust_remote_code=True)
    assert f"custom_pipeline={value!r}" in str(caught.value) and caught.value.argument == "custom_pipeline"
    assert hub_requests == []


@pytest.mark.parametrize("subfolder", ["../x", "/etc", "a\\b", "a//b", "a/./b"])
def test_subfolder_that_leaves_the_repo_is_a_typed_error_before_any_request(subfolder, toy_model_class, hub_requests):
    for load in (toy_model_class.from_pretrained, ConfigMixin.load_config):
        with pytest.raises(InvalidSubfolderError, match="subfolder=") as caught:
            load("alice/model", subfolder=subfolder)
        assert caught.value.value == subfolder and "subfolder='unet'" in str(caught.value)
    assert hub_requests == []


def test_subfolder_cannot_read_a_sibling_of_a_local_folder(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "config.json").write_text('{"password": "x"}')
    with pytest.raises(InvalidSubfolderError, match="'..'"):
        ConfigMixin.load_config(tmp_path / "model", subfolder="../secret")


# ---------------------------------------------------------------- the Hub cache through huggingface_hub's API


def test_online_load_lists_the_repo_with_one_request_and_records_the_branch(model_repo, hub_requests):
    from huggingface_hub import HfApi

    repo_id, _, first, _ = model_repo
    source = hub.open_source(repo_id)
    assert source.commit == first
    assert [r for r in hub_requests if "/api/models/" in r] == [f"GET {_endpoint()}/api/models/{repo_id}/revision/main"]
    cache = constants.hub_cache_dir()
    recorded = HfApi().resolve_revision(repo_id, revision="main", cache_dir=cache, local_files_only=True)
    assert recorded.resolved == first  # an offline load of main finds this commit


def test_offline_load_of_a_tag_uses_the_commit_the_hub_cache_recorded(model_repo, toy_model_class, monkeypatch):
    repo_id, git, first, _ = model_repo
    assert toy_model_class.from_pretrained(repo_id, subfolder="model", revision="v1").config.scale == 1.0
    index = json.loads((git.path / "model" / "config.json").read_text())
    git.commit({"model/config.json": json.dumps({**index, "scale": 7.0})})
    assert toy_model_class.from_pretrained(repo_id, subfolder="model").config.scale == 7.0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert toy_model_class.from_pretrained(repo_id, subfolder="model", revision="v1").config.scale == 1.0
    assert toy_model_class.from_pretrained(repo_id, subfolder="model").config.scale == 7.0
    assert hub.open_source(repo_id, revision="v1").commit == first


def test_unreachable_hub_is_an_offline_error_naming_the_transport_failure(toy_model_class, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(OfflineError, match=r"the Hub was not reached \(ConnectError") as caught:
        toy_model_class.from_pretrained("alice/model")
    assert "'alice/model'" in str(caught.value)


def _endpoint():
    import os

    return os.environ["HF_ENDPOINT"]
