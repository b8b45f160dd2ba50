"""Community names from diffusers' mirror (a Hub dataset served by olah on 127.0.0.1).

The mirror is the dataset ``diffusers/community-pipelines-mirror`` with one folder per
diffusers release (``v0.42.1/<name>.py``); here a dataset of the same shape, named by
PIPEYARD_DIFFUSERS_MIRROR.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import pipeyard._bundled
import pipeyard.trust
from pipeyard import errors
from pipeyard.compat import DIFFUSERS_VERSION
from pipeyard.host import cache, load_pipeline_class, resolve
from pipeyard.host.resolve import SourceKind

FOLDER = f"v{DIFFUSERS_VERSION}"


def mirror_file(class_name: str = "RepaintPipeline", marker: str = "one") -> str:
    """A diffusers-written community file, as the mirror holds them."""
    return (
        "from diffusers import DiffusionPipeline\n\n\n"
        f"class {class_name}(DiffusionPipeline):\n"
        f"    MARK = {marker!r}\n\n"
        "    def __init__(self, unet=None, scheduler=None):\n"
        "        super().__init__()\n"
        "        self.register_modules(unet=unet, scheduler=scheduler)\n"
    )


@pytest.fixture
def mirror(olah_hub, monkeypatch):
    """A mirror-shaped dataset on the olah Hub, named by PIPEYARD_DIFFUSERS_MIRROR."""
    repo_id, repo = olah_hub.new_dataset()
    monkeypatch.setenv("PIPEYARD_DIFFUSERS_MIRROR", repo_id)
    repo.repo_id = repo_id
    return repo


@pytest.fixture
def pin(tmp_path, monkeypatch):
    """``pin(name, text)``: pipeyard's bundled registry pins that mirror file's sha256."""
    real = pipeyard._bundled.bundled_dir
    registry = tmp_path / "registry"
    registry.mkdir()
    index = json.loads((real("registry") / "index.json").read_text(encoding="utf-8"))
    monkeypatch.setattr(pipeyard._bundled, "bundled_dir", lambda kind: registry if kind == "registry" else real(kind))

    def add(name: str, text: str) -> str:
        digest = hashlib.sha256(text.encode()).hexdigest()
        index.setdefault("mirror", []).append({"name": name, "release": DIFFUSERS_VERSION, "sha256": digest})
        (registry / "index.json").write_text(json.dumps(index), encoding="utf-8")
        return digest

    return add


def _mirror_requests(hub_requests: list[str]) -> list[str]:
    return [r for r in hub_requests if "/datasets/" in r]


# --------------------------------------------------------------------------- resolution (no network)


def test_a_name_pipeyard_does_not_bundle_resolves_in_the_mirror_at_the_compat_release():
    source = resolve.resolve_source("stable_diffusion_repaint")
    assert source.kind is SourceKind.MIRROR
    assert (source.location, source.filename, source.revision) == (
        "diffusers/community-pipelines-mirror", "stable_diffusion_repaint.py", FOLDER,
    )
    assert [a.split(" ")[0] for a in source.attempts] == ["local", "local", "entry", "bundled"]


@pytest.mark.parametrize(("revision", "folder"), [("0.41.0", "v0.41.0"), ("main", "main")])
def test_custom_revision_picks_the_mirror_folder_as_diffusers_does(revision, folder):
    source = resolve.resolve_source("stable_diffusion_repaint", custom_revision=revision)
    assert (source.kind, source.revision) == (SourceKind.MIRROR, folder)


def test_other_revisions_and_bundled_names_keep_pipeyards_github_folder():
    assert resolve.resolve_source("newer", custom_revision="dev").kind is SourceKind.GITHUB
    assert resolve.resolve_source("one_step_unet", custom_revision="0.42.1").kind is SourceKind.GITHUB
    assert resolve.resolve_source("one_step_unet").kind is SourceKind.BUNDLED


def test_the_mirror_variable_names_another_dataset_or_turns_the_lookup_off(monkeypatch):
    monkeypatch.setenv("PIPEYARD_DIFFUSERS_MIRROR", "acme/mirror-of-mirror")
    assert resolve.resolve_source("x").location == "acme/mirror-of-mirror"
    monkeypatch.setenv("PIPEYARD_DIFFUSERS_MIRROR", "off")
    with pytest.raises(errors.PipelineNotFoundError, match="mirror: off") as caught:
        resolve.resolve_source("x")
    assert "one_step_unet" in str(caught.value)  # still lists the bundled names
    monkeypatch.setenv("PIPEYARD_DIFFUSERS_MIRROR", "../etc")
    with pytest.raises(errors.EnvironmentVariableError, match="PIPEYARD_DIFFUSERS_MIRROR='../etc'"):
        resolve.resolve_source("x")


# --------------------------------------------------------------------------- the trust gate


def test_a_mirror_file_is_refused_without_trust_then_loads_with_the_flag(mirror):
    """diffusers #13691: its community names skip trust_remote_code. Here they pass the gate."""
    commit = mirror.commit({f"{FOLDER}/repaint_x.py": mirror_file()})
    with pytest.raises(errors.UntrustedCodeError) as caught:
        load_pipeline_class("repaint_x")
    error = caught.value
    assert error.commit == commit and "diffusers' mirror" in error.source and "repaint_x" in error.source
    assert "pins no file of that name" in str(error)
    assert Path(error.path).read_text(encoding="utf-8") == mirror_file()
    cls = load_pipeline_class("repaint_x", trust_remote_code=True)
    assert cls.__name__ == "RepaintPipeline" and cls.MARK == "one"


def test_a_pinned_sha256_loads_without_a_flag(mirror, pin):
    mirror.commit({f"{FOLDER}/repaint_p.py": mirror_file()})
    pin("repaint_p", mirror_file())
    assert load_pipeline_class("repaint_p").MARK == "one"


def test_a_changed_file_at_the_pinned_path_is_refused(mirror, pin):
    digest = pin("repaint_c", mirror_file())
    mirror.commit({f"{FOLDER}/repaint_c.py": mirror_file(marker="changed")})
    with pytest.raises(errors.UntrustedCodeError) as caught:
        load_pipeline_class("repaint_c")
    assert f"pins 'repaint_c' at sha256 {digest}, and this file differs" in str(caught.value)
    assert caught.value.sha256 != digest


def test_a_pin_of_another_name_does_not_allow_the_same_bytes_under_this_name(mirror, pin):
    pin("repaint_a", mirror_file())
    mirror.commit({f"{FOLDER}/repaint_b.py": mirror_file()})
    with pytest.raises(errors.UntrustedCodeError):
        load_pipeline_class("repaint_b")


def test_trusting_the_digest_allows_a_mirror_file(mirror):
    mirror.commit({f"{FOLDER}/repaint_t.py": mirror_file()})
    with pytest.raises(errors.UntrustedCodeError) as caught:
        load_pipeline_class("repaint_t")
    pipeyard.trust.add(caught.value.sha256, source="mirror")
    assert load_pipeline_class("repaint_t").__name__ == "RepaintPipeline"


def test_disabled_remote_code_refuses_a_mirror_name_before_any_request(mirror, pin, monkeypatch, hub_requests):
    mirror.commit({f"{FOLDER}/repaint_d.py": mirror_file()})
    pin("repaint_d", mirror_file())
    monkeypatch.setenv("PIPEYARD_DISABLE_REMOTE_CODE", "1")
    with pytest.raises(errors.UntrustedCodeError, match="nothing was downloaded"):
        load_pipeline_class("repaint_d")
    assert hub_requests == []


# --------------------------------------------------------------------------- revisions and records


def test_custom_revision_reads_that_release_folder(mirror):
    mirror.commit({
        f"{FOLDER}/repaint_r.py": mirror_file(marker="compat release"),
        "v0.30.0/repaint_r.py": mirror_file(marker="old release"),
        "main/repaint_r.py": mirror_file(marker="development"),
    })
    assert load_pipeline_class("repaint_r", trust_remote_code=True).MARK == "compat release"
    assert load_pipeline_class("repaint_r", custom_revision="0.30.0", trust_remote_code=True).MARK == "old release"
    assert load_pipeline_class("repaint_r", custom_revision="main", trust_remote_code=True).MARK == "development"


def test_warm_and_offline_loads_make_zero_requests(mirror, hub_requests, monkeypatch):
    mirror.commit({f"{FOLDER}/repaint_w.py": mirror_file()})
    cold = load_pipeline_class("repaint_w", trust_remote_code=True)
    assert _mirror_requests(hub_requests), "the cold load asks the mirror"
    hub_requests.clear()
    assert load_pipeline_class("repaint_w", trust_remote_code=True) is cold
    monkeypatch.setenv("PIPEYARD_OFFLINE", "1")
    assert load_pipeline_class("repaint_w", trust_remote_code=True) is cold
    assert hub_requests == []


def test_a_warm_load_of_a_pinned_file_needs_no_flag_and_no_request(mirror, pin, hub_requests):
    mirror.commit({f"{FOLDER}/repaint_wp.py": mirror_file()})
    pin("repaint_wp", mirror_file())
    cold = load_pipeline_class("repaint_wp")
    hub_requests.clear()
    assert load_pipeline_class("repaint_wp") is cold
    assert hub_requests == []


def test_the_record_keeps_the_commit_and_sha256(mirror):
    commit = mirror.commit({f"{FOLDER}/repaint_k.py": mirror_file()})
    cls = load_pipeline_class("repaint_k", trust_remote_code=True)
    provenance = cls.__pipeyard_provenance__
    assert provenance.kind == "MIRROR" and provenance.commit == commit
    assert provenance.sha256 == hashlib.sha256(mirror_file().encode()).hexdigest()


def test_offline_without_a_record_is_an_offline_error(mirror, monkeypatch, hub_requests):
    monkeypatch.setenv("PIPEYARD_OFFLINE", "1")
    with pytest.raises(errors.OfflineError, match="never loaded before"):
        load_pipeline_class("repaint_never")
    assert hub_requests == []


def test_a_name_the_mirror_lacks_lists_every_source_tried(mirror):
    mirror.commit({"README.md": "mirror\n"})
    with pytest.raises(errors.PipelineNotFoundError) as caught:
        load_pipeline_class("no_such_repaint")
    tried = caught.value.tried
    assert [t.split(" ")[0] for t in tried] == ["local", "local", "entry", "bundled", "diffusers'"]
    assert mirror.repo_id in tried[-1] and "one_step_unet" in tried[3]


def test_a_file_the_hub_answers_404_for_names_the_folder_to_pick(httpserver, monkeypatch):
    """The Hub's exact answer for a file missing from an existing dataset (olah answers 401)."""
    monkeypatch.setenv("HF_ENDPOINT", httpserver.url_for("").rstrip("/"))
    httpserver.expect_request(f"/datasets/diffusers/community-pipelines-mirror/resolve/main/v0.1.0/gone.py").respond_with_json(
        {"error": "x"}, status=404, headers={"X-Error-Code": "EntryNotFound"})
    with pytest.raises(errors.PipelineNotFoundError) as caught:
        load_pipeline_class("gone", custom_revision="0.1.0")
    assert "no file v0.1.0/gone.py" in caught.value.tried[-1]
    assert "custom_revision='0.42.1' or 'main'" in caught.value.tried[-1]


def test_an_unreachable_mirror_ends_the_lookup_with_the_reason():
    with pytest.raises(errors.PipelineNotFoundError, match="was not reached") as caught:
        load_pipeline_class("repaint_unreachable")
    assert isinstance(caught.value.__cause__, errors.OfflineError)


def test_a_name_that_is_no_module_name_is_not_looked_up_in_the_mirror():
    """``a.b`` would be imported as a submodule ``b`` of ``a``: never asked of the mirror."""
    with pytest.raises(errors.PipelineNotFoundError, match="'a.b' is not a module name"):
        resolve.resolve_source("a.b")


def test_a_sibling_module_comes_from_the_same_folder_at_the_recorded_commit(mirror):
    main = "from .repaint_helpers import MARK\n" + mirror_file(marker="sibling")
    mirror.commit({f"{FOLDER}/repaint_s.py": main, f"{FOLDER}/repaint_helpers.py": "MARK = 'first'\n",
                   "main/repaint_helpers.py": "MARK = 'wrong folder'\n"})
    latest = mirror.commit({f"{FOLDER}/repaint_helpers.py": "MARK = 'latest'\n"})
    with pytest.raises(errors.UntrustedCodeError) as caught:
        load_pipeline_class("repaint_s")
    assert caught.value.commit == latest
    files = {"repaint_s.py": main.encode(), "repaint_helpers.py": b"MARK = 'latest'\n"}
    assert caught.value.sha256 == cache.package_digest(cache.package_hashes(files))  # trust covers both
    cls = load_pipeline_class("repaint_s", trust_remote_code=True)
    package = __import__("sys").modules[cls.__module__.rsplit(".", 1)[0]]
    assert package.repaint_helpers.MARK == "latest"
    assert cls.__pipeyard_provenance__.commit == latest
