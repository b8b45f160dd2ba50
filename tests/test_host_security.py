"""The host alone decides what code runs: a repository's data names code but never trusts it,
environment switches never fail open, the trust store is read strictly, refused code is not
kept in the module store, and an unusable PIPEYARD_HOME is a typed error.

Each attack writes a marker file if any line of the hostile code runs; the marker must not exist.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

import pipeyard.trust
from pipeyard import DiffusionPipeline, constants, errors, plugins
from pipeyard.host import cache, load_pipeline_class, load_repository_pipeline_class


def _evil_file(folder: Path, marker: Path, class_name: str = "Evil") -> Path:
    """A valid pipeline file that creates ``marker`` when it is imported."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "evil.py"
    path.write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from pipeyard import DiffusionPipeline\n\n\n"
        f"class {class_name}(DiffusionPipeline):\n    pass\n"
    )
    return path


def _model_folder(root: Path, model_index: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text(json.dumps(model_index))
    return root


def _entry_point_record(location: str) -> dict:
    return {"_class_name": "Evil", "_pipeyard_source": {"kind": "ENTRY_POINT", "location": location}}


# ---------------------------------------------------------------- 1. repository data is not the caller


@pytest.mark.parametrize("how", ["absolute path", "stored module", "relative name of a folder"])
def test_a_repository_record_cannot_name_a_file_on_disk_as_an_entry_point(tmp_path, monkeypatch, how):
    marker = tmp_path / "ran.txt"
    evil = _evil_file(tmp_path / "elsewhere", marker)
    if how == "absolute path":
        location = str(evil)
    elif how == "stored module":  # a refused Hub pipeline's copy lies at a predictable path
        location = str(cache.store_for_review({"evil.py": evil.read_bytes()}, "evil.py"))
    else:  # a simple name that is also a folder with pipeline.py in the working directory
        (tmp_path / "cwd" / "sneaky").mkdir(parents=True)
        (tmp_path / "cwd" / "sneaky" / "pipeline.py").write_text(evil.read_text())
        monkeypatch.chdir(tmp_path / "cwd")
        location = "sneaky"
    model = _model_folder(tmp_path / "model", _entry_point_record(location))
    with pytest.raises((errors.InvalidPipelineNameError, errors.PipelineNotFoundError)) as caught:
        DiffusionPipeline.from_pretrained(model)
    assert "_pipeyard_source" in str(caught.value)
    assert not marker.exists()


def test_a_repository_record_is_never_passed_to_plugins(tmp_path):
    marker = tmp_path / "ran.txt"
    evil = _evil_file(tmp_path / "elsewhere", marker)

    class AnswersEverything:
        @plugins.hookimpl
        def pipeyard_resolve_pipeline(self, name, revision):
            return str(evil)

    plugins.register(AnswersEverything(), name="answers-everything")
    model = _model_folder(tmp_path / "model", _entry_point_record("evil_name"))
    with pytest.raises(errors.PipelineNotFoundError, match="no installed distribution registers it"):
        DiffusionPipeline.from_pretrained(model)
    assert not marker.exists()


def test_a_repository_record_names_an_installed_entry_point_only_by_its_name(tmp_path, install_pipeline_distribution):
    text = "from pipeyard import DiffusionPipeline\n\n\nclass AcmePipeline(DiffusionPipeline):\n    pass\n"
    install_pipeline_distribution("acme", "acme_mod", text, "AcmePipeline")
    cls = load_repository_pipeline_class(_entry_point_record("acme"), str(tmp_path))
    assert cls.__name__ == "AcmePipeline"


@pytest.mark.parametrize("module", ["/etc/passwd", "../evil", "a/../../evil", "evil.txt", "~/evil"])
def test_a_repository_module_pair_must_be_a_module_of_the_repository(tmp_path, module):
    model = _model_folder(tmp_path / "model", {"_class_name": [module, "Evil"]})
    with pytest.raises(errors.InvalidPipelineNameError, match="relative module path"):
        DiffusionPipeline.from_pretrained(model, trust_remote_code=True)


def test_a_module_of_a_local_model_folder_is_not_code_the_caller_named(tmp_path):
    """The caller named the model folder, not the code in it: the gate asks."""
    marker = tmp_path / "ran.txt"
    model = _model_folder(tmp_path / "model", {"_class_name": ["evil", "Evil"]})
    _evil_file(model, marker)
    with pytest.raises(errors.UntrustedCodeError):
        DiffusionPipeline.from_pretrained(model)
    assert not marker.exists()


def test_a_hub_repo_record_cannot_name_a_file_on_disk(olah_hub, tmp_path, hub_requests):
    marker = tmp_path / "ran.txt"
    evil = _evil_file(tmp_path / "elsewhere", marker)
    repo_id, repo = olah_hub.new_repo()
    repo.commit({"model_index.json": json.dumps(_entry_point_record(str(evil)))})
    with pytest.raises(errors.InvalidPipelineNameError, match="_pipeyard_source"):
        DiffusionPipeline.from_pretrained(repo_id)
    assert hub_requests  # the repo was really read from the server
    assert not marker.exists()


def test_a_hub_repo_module_is_refused_without_trust_and_not_stored(olah_hub, tmp_path, pipeline_text):
    marker = tmp_path / "ran.txt"
    repo_id, repo = olah_hub.new_repo()
    header = f"open({str(marker)!r}, 'w').close()\n"
    repo.commit({"model_index.json": '{"_class_name": ["evil", "Evil"]}', "evil.py": pipeline_text("Evil", header=header)})
    with pytest.raises(errors.UntrustedCodeError) as caught:
        DiffusionPipeline.from_pretrained(repo_id)
    assert not marker.exists()
    assert cache.list_packages() == []
    review = Path(caught.value.path)
    assert review.parent.parent == cache.review_dir() and review.read_text() == pipeline_text("Evil", header=header)


# ---------------------------------------------------------------- 2. refused code is not kept


def test_refused_hub_pipelines_never_enter_the_module_store(olah_hub, pipeline_text, invoke):
    repo_id, repo = olah_hub.new_repo()
    repo.commit({"pipeline.py": pipeline_text("HubPipeline")})
    for _ in range(3):
        with pytest.raises(errors.UntrustedCodeError):
            load_pipeline_class(repo_id)
    assert cache.list_packages() == []
    listing = invoke("cache", "list").output
    assert "is empty" in listing and "1 refused package(s) kept to read" in listing
    assert load_pipeline_class(repo_id, trust_remote_code=True).__name__ == "HubPipeline"
    assert [digest for digest, package in cache.list_packages() if package is not None] != []


def test_a_file_failing_verification_is_stored_nowhere(write_pipeline):
    path = write_pipeline(text="class Broken(:\n")
    with pytest.raises(errors.PipelineSyntaxError):
        load_pipeline_class(str(path))
    home = constants.pipeyard_home()
    assert not (home / "modules").exists() and not (home / "review").exists()


# ---------------------------------------------------------------- 3. switches never fail open


@pytest.mark.parametrize("value", ["ture", "2", "maybe", "enabled", "1 "])
def test_a_misspelled_kill_switch_refuses_to_run_anything(monkeypatch, write_pipeline, tmp_path, value):
    marker = tmp_path / "ran.txt"
    path = write_pipeline(text=f"open({str(marker)!r}, 'w').close()\n" + "from pipeyard import DiffusionPipeline\n"
                          "class P(DiffusionPipeline):\n    pass\n")
    monkeypatch.setenv("PIPEYARD_DISABLE_REMOTE_CODE", value)
    if value.strip() == "1":
        with pytest.raises(errors.UntrustedCodeError):
            load_pipeline_class(str(path))
    else:
        with pytest.raises(errors.EnvironmentVariableError) as caught:
            load_pipeline_class(str(path))
        for part in ("PIPEYARD_DISABLE_REMOTE_CODE", repr(value), "true", "off"):
            assert part in str(caught.value)
    assert not marker.exists()


@pytest.mark.parametrize("variable", ["PIPEYARD_OFFLINE", "HF_HUB_OFFLINE"])
def test_a_misspelled_offline_switch_never_goes_online(olah_hub, pipeline_text, hub_requests, monkeypatch, variable):
    repo_id, repo = olah_hub.new_repo()
    repo.commit({"pipeline.py": pipeline_text("HubPipeline")})
    monkeypatch.setenv(variable, "maybe")
    with pytest.raises(errors.EnvironmentVariableError, match=variable):
        load_pipeline_class(repo_id, trust_remote_code=True)
    assert hub_requests == []


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("Off", False), (" NO ", False),
                                                  ("1", True), ("TRUE", True), (" yes", True), ("On", True)])
def test_boolean_variables_accept_the_documented_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("PIPEYARD_OFFLINE", value)
    assert constants.is_offline() is expected


# ---------------------------------------------------------------- 4. the trust store is read strictly


@pytest.mark.parametrize(
    "content",
    ["null", "[]", '"x"', "{not json", '{"trusted": []}', '{"trusted": {"../../x": {}}}',
     '{"trusted": {"' + "ab" * 32 + '": "yes"}}', '{"trusted": {"' + "ab" * 32 + '": {"source": 3}}}',
     '{"version": 7, "trusted": {}}', "[" * 100_000],
)
def test_a_damaged_trust_store_is_a_typed_error_and_is_never_rewritten(content):
    path = Path(pipeyard.trust.path())
    path.parent.mkdir(parents=True)
    path.write_text(content)
    for use in (pipeyard.trust.list, lambda: pipeyard.trust.add("cd" * 32), lambda: pipeyard.trust.remove("cd" * 32)):
        with pytest.raises(errors.TrustStoreError) as caught:
            use()
        assert str(path) in str(caught.value) and "delete the file" in str(caught.value)
    assert path.read_text() == content


def test_a_damaged_trust_store_refuses_remote_code_instead_of_crashing(olah_hub, pipeline_text):
    repo_id, repo = olah_hub.new_repo()
    repo.commit({"pipeline.py": pipeline_text("HubPipeline")})
    Path(pipeyard.trust.path()).parent.mkdir(parents=True)
    Path(pipeyard.trust.path()).write_text("null")
    with pytest.raises(errors.TrustStoreError):
        load_pipeline_class(repo_id)


def test_cli_trust_add_of_a_missing_file_says_so(invoke, tmp_path):
    result = invoke("trust", "add", str(tmp_path / "nope.py"))
    assert result.exit_code == 1
    assert result.output.startswith("LocalPathError:") and "nope.py" in result.output and "does not exist" in result.output
    assert pipeyard.trust.list() == []


# ---------------------------------------------------------------- 5. an unusable PIPEYARD_HOME


def test_pipeyard_home_that_is_a_file_is_a_typed_error_but_bundled_pipelines_load(
    monkeypatch, tmp_path, write_pipeline
):
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    monkeypatch.setenv("PIPEYARD_HOME", str(home))
    assert load_pipeline_class("one_step_unet").__name__ == "UnetSchedulerOneForwardPipeline"
    with pytest.raises(errors.PipeyardHomeError) as caught:
        load_pipeline_class(str(write_pipeline()))
    assert str(home) in str(caught.value) and "PIPEYARD_HOME" in str(caught.value)
    assert isinstance(caught.value, OSError)
    with pytest.raises(errors.PipeyardHomeError):
        pipeyard.trust.add("ab" * 32)


@pytest.fixture
def read_only_home(tmp_path, monkeypatch):
    """A real read-only file system as PIPEYARD_HOME (a small tmpfs remounted read-only)."""
    mount = tmp_path / f"home-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here")
    monkeypatch.setenv("PIPEYARD_HOME", str(mount))

    def make_read_only() -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)

    yield make_read_only
    subprocess.run(["umount", str(mount)], check=True)


def test_a_read_only_home_still_loads_stored_and_bundled_pipelines(read_only_home, write_pipeline, pipeline_text):
    stored = write_pipeline("stored/pipeline.py")
    assert load_pipeline_class(str(stored)).__name__ == "MyPipeline"
    read_only_home()
    load_pipeline_class.__globals__["_VERIFIED"].clear()
    assert load_pipeline_class(str(stored)).__name__ == "MyPipeline"
    assert load_pipeline_class("one_step_unet").__name__ == "UnetSchedulerOneForwardPipeline"
    fresh = write_pipeline("fresh/pipeline.py", text=pipeline_text("Fresh"))
    with pytest.raises(errors.PipeyardHomeError, match="Read-only file system"):
        load_pipeline_class(str(fresh))


def test_no_key_of_a_repository_grants_trust(tmp_path):
    """transformers CVE-2026-5241: a repository's config voted on trust. Here no key can."""
    marker = tmp_path / "ran.txt"
    model = tmp_path / "model"
    evil = _evil_file(model, marker)
    digest = __import__("hashlib").sha256(evil.read_bytes()).hexdigest()
    _model_folder(model, {
        "_class_name": ["evil", "Evil"], "trust_remote_code": True, "trusted": True,
        "_pipeyard_source": {"kind": "LOCAL_FILE", "location": str(evil), "sha256": digest, "trusted": True},
    })
    with pytest.raises(errors.UntrustedCodeError):
        DiffusionPipeline.from_pretrained(model)
    assert not marker.exists()


# ---------------------------------------------------------------- 6. a model folder is a closed set too


@pytest.mark.parametrize("linked", ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"])
def test_a_model_folder_file_linked_outside_is_refused_unread(tiny_ddpm_folder, tmp_path, linked):
    import shutil

    secret = f"secret-{uuid.uuid4().hex}"
    outside = tmp_path / "outside.txt"
    outside.write_text(secret)
    model = tmp_path / "model"
    shutil.copytree(tiny_ddpm_folder, model)
    (model / linked).unlink()
    (model / linked).symlink_to(outside)
    with pytest.raises(errors.OutsideRepositoryError) as caught:
        DiffusionPipeline.from_pretrained(model)
    assert linked in str(caught.value) and secret not in str(caught.value)
    assert isinstance(caught.value, PermissionError)


@pytest.mark.parametrize("linked", ["text_encoder/pytorch_model.bin", "text_encoder/model.fp16.safetensors"])
def test_a_file_linked_outside_in_a_transformers_component_folder_is_refused(tiny_sd_folder, tmp_path, linked):
    """transformers reads its folder itself (any file it likes, e.g. weights of a format or variant
    pipeyard did not pick): every file of such a folder must be inside the model folder, not only
    those pipeyard hands over."""
    import shutil

    secret = f"secret-{uuid.uuid4().hex}"
    outside = tmp_path / "outside.txt"
    outside.write_text(secret)
    model = tmp_path / "model"
    shutil.copytree(tiny_sd_folder, model)
    (model / linked).unlink(missing_ok=True)
    (model / linked).symlink_to(outside)
    with pytest.raises(errors.OutsideRepositoryError) as caught:
        DiffusionPipeline.from_pretrained(model)
    assert linked in str(caught.value) and secret not in str(caught.value)


def test_a_link_inside_a_model_folder_and_a_hub_snapshot_folder_load(tiny_ddpm_folder, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_ddpm_folder, model)
    (model / "kept.json").write_bytes((model / "model_index.json").read_bytes())
    (model / "model_index.json").unlink()
    (model / "model_index.json").symlink_to("kept.json")
    assert type(DiffusionPipeline.from_pretrained(model)).__name__ == "DDPMPipeline"
    # the Hub cache layout: snapshots/<commit>/<file> -> ../../blobs/<hash>
    repo = tmp_path / "models--alice--ddpm"
    snapshot = repo / "snapshots" / ("0" * 40)
    for path in sorted(p for p in model.rglob("*") if p.is_file() and not p.is_symlink()):
        relative = path.relative_to(model)
        blob = repo / "blobs" / f"{abs(hash(str(relative)))}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(path.read_bytes())
        target = snapshot / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.relpath(blob, target.parent))
    (snapshot / "model_index.json").symlink_to("kept.json")
    assert type(DiffusionPipeline.from_pretrained(snapshot)).__name__ == "DDPMPipeline"


def test_errors_about_repository_values_never_echo_them_whole(tmp_path):
    huge = "X" * 400_000
    model = _model_folder(tmp_path / "model", {"_class_name": "DDPMPipeline", "unet": ["diffusers", huge],
                                               "scheduler": ["diffusers", "DDPMScheduler"]})
    with pytest.raises(errors.UnknownComponentClassError) as caught:
        DiffusionPipeline.from_pretrained(model)
    assert len(str(caught.value)) < 2_000
    model = _model_folder(tmp_path / "model2", {"_class_name": huge})
    with pytest.raises(errors.PipelineNotFoundError) as caught:
        DiffusionPipeline.from_pretrained(model)
    assert len(str(caught.value)) < 2_000
