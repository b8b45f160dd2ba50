"""Resolution of custom_pipeline values to sources, in the documented order."""

from __future__ import annotations

import pytest

from pipeyard import errors
from pipeyard.host import load_pipeline_class, resolve
from pipeyard.host.resolve import SourceKind


def test_local_file(write_pipeline):
    path = write_pipeline("mine.py")
    source = resolve.resolve_source(str(path))
    assert (source.kind, source.location, source.filename) == (SourceKind.LOCAL_FILE, str(path.parent), "mine.py")


def test_local_folder_with_pipeline_py(write_pipeline):
    path = write_pipeline("folder/pipeline.py")
    source = resolve.resolve_source(path.parent)
    assert (source.kind, source.filename) == (SourceKind.LOCAL_FOLDER, "pipeline.py")


def test_missing_local_path_lists_what_was_tried_in_order(tmp_path):
    missing = tmp_path / "nope" / "pipeline"
    with pytest.raises(errors.PipelineNotFoundError) as caught:
        resolve.resolve_source(str(missing))
    assert caught.value.tried == [
        f"local file {str(missing)!r}: no such file",
        f"local folder {str(missing)!r}: no such folder",
    ]
    assert "1. local file" in str(caught.value) and "2. local folder" in str(caught.value)


def test_folder_without_pipeline_py_is_not_found(tmp_path):
    with pytest.raises(errors.PipelineNotFoundError, match="holds no pipeline.py"):
        resolve.resolve_source(tmp_path)


def test_unknown_simple_name_tries_entry_points_bundled_then_diffusers_mirror():
    source = resolve.resolve_source("no_such_pipeline_xyz")
    assert source.kind is SourceKind.MIRROR  # whether the mirror has it is known when fetching
    assert [t.split(" ")[0] for t in source.attempts] == ["local", "local", "entry", "bundled"]
    assert "one_step_unet" in source.attempts[3]  # the message lists what is available


def test_unknown_simple_name_without_the_mirror_tries_entry_points_bundled_and_hub(monkeypatch):
    monkeypatch.setenv("PIPEYARD_DIFFUSERS_MIRROR", "off")
    with pytest.raises(errors.PipelineNotFoundError) as caught:
        resolve.resolve_source("no_such_pipeline_xyz")
    tried = caught.value.tried
    assert [t.split(" ")[0] for t in tried] == ["local", "local", "entry", "bundled", "diffusers'", "Hub"]
    assert "one_step_unet" in tried[3]


def test_bundled_name_resolves_offline():
    assert resolve.resolve_source("one_step_unet").kind is SourceKind.BUNDLED


def test_bundled_name_with_revision_is_a_github_source():
    source = resolve.resolve_source("one_step_unet", custom_revision="v0.1")
    assert (source.kind, source.filename, source.revision) == (SourceKind.GITHUB, "one_step_unet.py", "v0.1")


def test_repo_id_is_a_hub_source_at_main_by_default():
    source = resolve.resolve_source("alice/fancy")
    assert (source.kind, source.location, source.filename, source.revision) == (
        SourceKind.HUB, "alice/fancy", "pipeline.py", "main")


@pytest.mark.parametrize("name", ["..", "a/..", "x..y", "al\\ice/b"])
def test_names_with_dot_dot_or_backslashes_are_invalid(name):
    with pytest.raises(errors.InvalidPipelineNameError):
        resolve.resolve_source(name)


@pytest.mark.parametrize("revision", ["../main", "a\\b", "/etc", "", " main"])
def test_revisions_usable_as_paths_are_invalid(revision):
    with pytest.raises(errors.InvalidPipelineNameError) as caught:
        resolve.resolve_source("alice/fancy", custom_revision=revision)
    assert "custom_revision" in str(caught.value)


def test_non_py_local_file_is_invalid(tmp_path):
    path = tmp_path / "pipeline.txt"
    path.write_text("x")
    with pytest.raises(errors.InvalidPipelineNameError, match=r"\.py"):
        resolve.resolve_source(str(path))


def test_model_index_module_pair_must_be_a_relative_module():
    with pytest.raises(errors.InvalidPipelineNameError):
        resolve.repository_source({"_class_name": ["../evil", "X"]}, "alice/model", None)
    source = resolve.repository_source({"_class_name": ["my_pipe", "X"]}, "alice/model", "abc")
    assert (source.filename, source.class_name, source.kind) == ("my_pipe.py", "X", SourceKind.EMBEDDED)


def _install_distribution(site, monkeypatch, pipeline_text, module="acme_pipes", entry="acme"):
    """A real installed distribution: a module and a dist-info folder with entry_points.txt."""
    (site / f"{module}.py").write_text(pipeline_text("AcmePipeline"))
    info = site / "acme_pipes-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-pipes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[pipeyard.pipelines]\n{entry} = {module}:AcmePipeline\n")
    monkeypatch.syspath_prepend(str(site))


def test_entry_point_of_an_installed_distribution(tmp_path, monkeypatch, pipeline_text):
    _install_distribution(tmp_path, monkeypatch, pipeline_text)
    source = resolve.resolve_source("acme")
    assert (source.kind, source.location, source.class_name) == (
        SourceKind.ENTRY_POINT, "acme_pipes:AcmePipeline", "AcmePipeline")
    cls = load_pipeline_class("acme")
    assert cls.__name__ == "AcmePipeline" and cls.__module__ == "acme_pipes"


def test_entry_point_is_refused_when_remote_code_is_disabled(tmp_path, monkeypatch, pipeline_text):
    _install_distribution(tmp_path, monkeypatch, pipeline_text, module="acme_pipes2", entry="acme2")
    monkeypatch.setenv("PIPEYARD_DISABLE_REMOTE_CODE", "1")
    with pytest.raises(errors.UntrustedCodeError, match="PIPEYARD_DISABLE_REMOTE_CODE"):
        load_pipeline_class("acme2")


def test_entry_point_naming_a_missing_class_is_refused(tmp_path, monkeypatch, pipeline_text):
    (tmp_path / "acme_pipes3.py").write_text(pipeline_text("Other"))
    info = tmp_path / "acme_pipes3-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-pipes3\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pipeyard.pipelines]\nacme3 = acme_pipes3:AcmePipeline\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(errors.PipelineVerificationError, match="names class 'AcmePipeline'"):
        load_pipeline_class("acme3")


def test_a_bundled_name_loads_offline_without_any_request(monkeypatch, hub_requests):
    monkeypatch.setenv("PIPEYARD_OFFLINE", "1")
    monkeypatch.setenv("PIPEYARD_COMMUNITY_URL", "http://127.0.0.1:9/{revision}/{name}")
    assert load_pipeline_class("one_step_unet").__name__ == "UnetSchedulerOneForwardPipeline"
    assert hub_requests == []


def test_a_symlinked_local_file_loads_from_its_target_folder(write_pipeline, tmp_path):
    target = write_pipeline("real/actual_pipeline.py")
    link = tmp_path / "link.py"
    link.symlink_to(target)
    source = resolve.resolve_source(str(link))
    assert (source.location, source.filename) == (str(target.parent), "actual_pipeline.py")
    from pipeyard.host import load_pipeline_class

    assert load_pipeline_class(str(link)).__name__ == "MyPipeline"
