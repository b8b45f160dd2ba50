"""Supply chain: files that look like ours but are not, records edited by hand, moving refs.

Each scenario plants one lie where pipeyard reads from (the Hub, GitHub, the module store, the
registry index, the trust store, the Hub cache) and holds three things: a typed error or the
honest answer, nothing written outside PIPEYARD_HOME and the Hub cache, and no line of untrusted
code run (every planted module writes a marker file first).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import marshal
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import pipeyard.trust
from pipeyard import DiffusionPipeline, errors
from pipeyard.host import cache, load_pipeline_class

from .conftest import _profile_name
from .watch import WriteWatch, allowed_roots

BUNDLED = "one_step_unet"
BUNDLED_CLASS = "UnetSchedulerOneForwardPipeline"


def _real_index() -> str:
    from pipeyard import registry

    return registry.index_path().read_text(encoding="utf-8")


REAL_INDEX = _real_index()


def _bundled_text() -> bytes:
    from pipeyard._bundled import bundled_dir

    return (bundled_dir("community") / f"{BUNDLED}.py").read_bytes()


def _marked(text: bytes | str, marker: Path) -> bytes:
    """``text`` with a first line that creates ``marker`` when it runs."""
    data = text.encode() if isinstance(text, str) else text
    return f"open({str(marker)!r}, 'w').close()\n".encode() + data


class Scenario:
    """One supply-chain scenario: runs attempts under the write watch, counts them in the tally."""

    def __init__(self, tally, name: str, marker: Path) -> None:
        self.tally = tally(f"supply chain: {name}")
        self.marker = marker

    def attempt(
        self, call: Callable[[], object], expected: type[BaseException] | None, match: str = "", *, trusted: bool = False
    ) -> object:
        """``call()`` must raise ``expected`` (matching ``match``), or succeed when it is None.

        ``trusted``: the code is trusted now (a control), so its marker may appear.
        """
        self.tally.cases += 1
        self.tally.faults += 0 if trusted else 1
        result: object = None
        with WriteWatch(allowed_roots(*([self.marker] if trusted else []))) as watch:
            try:
                result = call()
            except Exception as exc:
                if expected is None or not isinstance(exc, expected) or not re.search(match, str(exc)):
                    self.tally.failures += 1
                    raise
            else:
                if expected is not None:
                    self.tally.failures += 1
                    pytest.fail(f"no {expected.__name__} was raised (got {result!r})")
        self.tally.outside_writes += len(watch.outside)
        ran = self.marker.exists() and not trusted
        self.tally.untrusted_runs += int(ran)
        assert watch.outside == [], watch.outside
        assert not ran, "untrusted code ran"
        return result


@pytest.fixture
def scenario(tally, tmp_path) -> Callable[[str], Scenario]:
    return lambda name: Scenario(tally, name, tmp_path / "MARKER")


# --------------------------------------------------------------------------- a file named like a bundled one


def test_a_hub_module_named_like_a_bundled_file_with_other_content_is_untrusted(olah_hub, scenario, tmp_path):
    """The name is not the trust: only a byte-equal copy of a bundled file counts as bundled."""
    run = scenario("a Hub file named like a bundled one")
    repo_id, repo = olah_hub.new_repo()
    repo.commit({
        "model_index.json": json.dumps({"_class_name": [BUNDLED, BUNDLED_CLASS]}),
        f"{BUNDLED}.py": _marked(_bundled_text(), run.marker),
    })
    run.attempt(lambda: DiffusionPipeline.from_pretrained(repo_id), errors.UntrustedCodeError, "sha256")
    run.attempt(lambda: load_pipeline_class(repo_id), errors.EntryNotFoundError)  # no pipeline.py: not the bundled file
    assert cache.list_packages() == []


def test_a_hub_module_equal_to_a_bundled_file_is_bundled_code(olah_hub, scenario, tmp_path):
    """The control of the test above: the same name with the bundled bytes is allowed."""
    run = scenario("a Hub file named like a bundled one")
    repo_id, repo = olah_hub.new_repo()
    repo.commit({"pipeline.py": _bundled_text()})
    cls = run.attempt(lambda: load_pipeline_class(repo_id), None)
    assert cls.__name__ == BUNDLED_CLASS


def test_a_github_copy_of_a_bundled_name_with_other_content_is_untrusted(github_raw, scenario):
    run = scenario("a Hub file named like a bundled one")
    github_raw.repo.commit({f"community/{BUNDLED}.py": _marked(_bundled_text(), run.marker)}, tag="v9")
    run.attempt(lambda: load_pipeline_class(BUNDLED, custom_revision="v9"), errors.UntrustedCodeError, "sha256")


# --------------------------------------------------------------------------- the module store


def test_bytecode_planted_beside_a_stored_package_never_runs(write_pipeline, pipeline_text, scenario):
    """A ``__pycache__`` entry for the stored file and a sourceless ``extra.pyc`` for a module the
    package imports lazily: neither is in the manifest, neither runs."""
    run = scenario("a .pyc planted in the store")
    body = "\n    def extra(self):\n        from . import extra\n        return extra\n"
    path = write_pipeline(text=pipeline_text("Lazy", body=body))
    cls = load_pipeline_class(path)
    stored = Path(sys.modules[cls.__module__].__file__)
    planted = compile(f"open({str(run.marker)!r}, 'w').close()\n", "planted", "exec")
    stat = stored.stat()
    header = importlib.util.MAGIC_NUMBER + bytes(4) + (int(stat.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (
        stat.st_size.to_bytes(4, "little"))
    pyc = Path(importlib.util.cache_from_source(str(stored)))
    pyc.parent.mkdir(exist_ok=True)
    pyc.write_bytes(header + marshal.dumps(planted))
    (stored.parent / "extra.pyc").write_bytes(importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(planted))
    for name in [m for m in sys.modules if m == cls.__module__.rpartition(".")[0] or m.startswith(cls.__module__.rpartition(".")[0] + ".")]:
        del sys.modules[name]  # as in a new process
    again = run.attempt(lambda: load_pipeline_class(path), None)
    run.attempt(lambda: again.extra(None), ImportError, "extra")


# --------------------------------------------------------------------------- the registry index


@pytest.fixture
def registry_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry folder of the test's own in place of the bundled one."""
    import pipeyard._bundled as bundled
    from pipeyard import registry
    from pipeyard.host import resolve

    folder = tmp_path / "registry"
    folder.mkdir()
    original = bundled.bundled_dir
    monkeypatch.setattr(registry, "_registry_dir", lambda: folder)
    monkeypatch.setattr(bundled, "bundled_dir", lambda kind: folder if kind == "registry" else original(kind))
    resolve._index_cached.cache_clear()
    yield folder
    resolve._index_cached.cache_clear()


def _index_with(**changes: str) -> dict:
    entry = next(e for e in json.loads(REAL_INDEX)["pipelines"] if e["name"] == BUNDLED)
    return {"version": 2, "pipelines": [{**entry, **changes}], "hub": []}


@pytest.mark.parametrize("changes", [
    {"file": "/etc/passwd"}, {"file": "../../pyproject.toml"}, {"file": "sub/../../x.py"},
    {"name": "../evil", "file": "../evil.py"}, {"name": "/etc/evil", "file": "/etc/evil.py"},
    {"sha256": "not-a-digest"},
], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_a_registry_entry_naming_a_path_is_refused_before_use(registry_dir, scenario, invoke, changes):
    index = _index_with(**changes)
    (registry_dir / "index.json").write_text(json.dumps(index))
    run = scenario("a registry entry with an absolute path or ..")
    field = next(iter(changes)) if "name" not in changes else "name"
    run.attempt(lambda: load_pipeline_class(BUNDLED), errors.ConfigFileError, rf"pipelines\[0\].*{field} =")
    result = run.attempt(lambda: invoke("info", index["pipelines"][0]["name"]), None)
    assert result.exit_code == 1 and result.output.startswith("ConfigFileError: ") and "pipeyard registry build" in result.output


@pytest.mark.parametrize("changes", [
    {"name": "../evil"}, {"name": "/abs/evil"}, {"release": "../../main"}, {"release": "main/.."},
    {"sha256": "not-a-digest"}, {"sha256": None},
], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_a_mirror_pin_in_the_index_naming_a_path_or_no_digest_is_refused_before_use(registry_dir, scenario, changes):
    """A pin lets a mirror file run without a flag: the index's pins are checked like its entries."""
    from pipeyard import registry
    from pipeyard.host import mirror

    pin = {"name": "sd_repaint", "release": "0.42.1", "sha256": "a" * 64, "summary": "", "tags": []}
    index = {"version": 2, "pipelines": [], "hub": [], "mirror": [{**pin, **changes}]}
    (registry_dir / "index.json").write_text(json.dumps(index))
    run = scenario("a registry index mirror pin with a path or no digest")
    field = next(iter(changes))
    run.attempt(lambda: registry.read_index(), errors.ConfigFileError, rf"mirror\[0\].*{field} =")
    run.attempt(lambda: mirror.pinned_entries(), errors.ConfigFileError, rf"mirror\[0\].*{field} =")


# --------------------------------------------------------------------------- the trust store


def _store(document: object) -> Path:
    path = Path(pipeyard.trust.path())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_a_trust_store_edited_by_hand_trusts_exactly_what_it_lists(olah_hub, pipeline_text, scenario):
    """A hand-added digest allows that content and nothing else; junk entries refuse everything."""
    run = scenario("a trust store edited by hand")
    text = _marked(pipeline_text("Hub"), run.marker)
    repo_id, repo = olah_hub.new_repo()
    repo.commit({"pipeline.py": text})
    digest = hashlib.sha256(text).hexdigest()
    other = hashlib.sha256(b"something else").hexdigest()
    _store({"version": 1, "trusted": {other: {"source": "by hand", "added": "x"}}})
    run.attempt(lambda: load_pipeline_class(repo_id), errors.UntrustedCodeError, digest)
    for junk in (
        {"version": 1, "trusted": {digest.upper(): {"source": "", "added": ""}}},  # not how digests are written
        {"version": 1, "trusted": {f" {digest}": {"source": "", "added": ""}}},
        {"version": 1, "trusted": {digest: "yes"}},
        {"version": 2, "trusted": {digest: {"source": "", "added": ""}}},
        f'{{"version": 1, "trusted": {{"{other}": {{}}, "{other}": {{}}}}}}',  # a key given twice
    ):
        _store(junk)
        run.attempt(lambda: load_pipeline_class(repo_id), errors.TrustStoreError, "trust")
    _store({"version": 1, "trusted": {digest: {"source": "by hand", "added": "x"}}})
    cls = run.attempt(lambda: load_pipeline_class(repo_id), None, trusted=True)
    assert cls.__name__ == "Hub"


# --------------------------------------------------------------------------- symlinks in a Hub snapshot


def _publish_ddpm(olah_hub, folder: Path, extra: dict[str, bytes] | None = None) -> tuple[str, str]:
    repo_id, repo = olah_hub.new_repo()
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    commit = repo.commit({**files, **(extra or {})})
    return repo_id, commit


def _snapshot(repo_id: str, commit: str) -> Path:
    return Path(os.environ["HF_HUB_CACHE"]) / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit


_PLANTED = ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
            "scheduler/scheduler_config.json", "unet")
#: Where a planted link leads: a folder outside the Hub cache, or the same entry of another
#: cached repository (a content swap that stays inside the cache). The long profile sweeps all.
_LINK_CASES = [
    (planted, online, target)
    for target in ("outside", "another repo") for planted in _PLANTED for online in (False, True)
    if _profile_name() == "long" or target == "outside" or planted == "unet/diffusion_pytorch_model.safetensors"
]


@pytest.mark.parametrize(("planted", "online", "target"), _LINK_CASES,
                         ids=[f"{p}-{'online' if o else 'offline'}-{t}" for p, o, t in _LINK_CASES])
def test_a_symlink_out_of_a_hub_snapshot_is_refused_unread(
    olah_hub, tiny_ddpm_folder, tmp_path, scenario, monkeypatch, planted, online, target
):
    """A file (or folder) of a cached snapshot replaced by a link leading outside the repository's
    cache folder: refused whether the load is offline or online, never read."""
    run = scenario("symlinks in a Hub snapshot")
    repo_id, commit = _publish_ddpm(olah_hub, tiny_ddpm_folder)
    DiffusionPipeline.from_pretrained(repo_id)  # warm the cache
    if target == "another repo":
        other_id, other_commit = _publish_ddpm(olah_hub, tiny_ddpm_folder, {"README.md": b"other\n"})
        DiffusionPipeline.from_pretrained(other_id)
        destination = _snapshot(other_id, other_commit) / planted
    else:
        outside = tmp_path / "outside"
        for name in _PLANTED[:4]:
            (outside / name).parent.mkdir(parents=True, exist_ok=True)
            (outside / name).write_bytes((tiny_ddpm_folder / name).read_bytes())
        destination = outside / planted
    link = _snapshot(repo_id, commit) / planted
    if link.is_dir() and not link.is_symlink():
        import shutil

        shutil.rmtree(link)
    else:
        link.unlink()
    link.symlink_to(destination, target_is_directory=destination.is_dir())
    if not online:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if planted == "unet" and not online:  # the offline listing does not enter a linked folder: its files are absent
        run.attempt(lambda: DiffusionPipeline.from_pretrained(repo_id), errors.OfflineError, "unet/")
        return
    run.attempt(lambda: DiffusionPipeline.from_pretrained(repo_id), errors.OutsideRepositoryError, "link")


# --------------------------------------------------------------------------- model_index pointing outside


@pytest.mark.parametrize("document", [
    {"_class_name": ["../evil", "Evil"]},
    {"_class_name": ["/abs/evil", "Evil"]},
    {"_class_name": ["sub/../../evil", "Evil"]},
    {"_class_name": "DDPMPipeline", "unet": ["evil", "Evil"], "scheduler": ["pipeyard", "DDPMScheduler"]},
    {"_class_name": "DDPMPipeline", "unet": ["../evil", "Evil"], "scheduler": ["pipeyard", "DDPMScheduler"]},
    {"_class_name": "DDPMPipeline", "unet": [None, "Evil"], "scheduler": ["pipeyard", "DDPMScheduler"]},
    {"_class_name": "DDPMPipeline", "unet": ["pipeyard", "UNet2DModel"], "scheduler": ["pipeyard", "DDPMScheduler"],
     "../outside": ["pipeyard", "UNet2DModel"]},
], ids=["class-parent", "class-absolute", "class-dotdot", "component-module", "component-parent", "component-none",
        "component-folder"])
@pytest.mark.parametrize("where", ["folder", "hub"])
def test_a_model_index_pointing_outside_the_repository_runs_and_reads_nothing_outside(
    olah_hub, tiny_ddpm_folder, tmp_path, scenario, document, where
):
    run = scenario("a model_index pointing outside the repo")
    evil = _marked("from pipeyard import DiffusionPipeline\n\nclass Evil(DiffusionPipeline):\n    pass\n", run.marker)
    (tmp_path / "evil.py").write_bytes(evil)  # what '../evil' would reach from a folder inside tmp_path
    files = {"model_index.json": json.dumps(document).encode(), "evil.py": evil, "None.py": evil}  # None.py: CVE-2026-44827
    if where == "hub":
        repo_id, _ = _publish_ddpm(olah_hub, tiny_ddpm_folder, files)
        target: object = repo_id
    else:
        import shutil

        target = tmp_path / "model"
        shutil.copytree(tiny_ddpm_folder, target)
        for name, data in files.items():
            (target / name).write_bytes(data)
    if "../outside" in document:  # a component key is not a path: the extra key is ignored, nothing outside read
        pipe = run.attempt(lambda: DiffusionPipeline.from_pretrained(target), None)
        assert set(pipe.components) == {"unet", "scheduler"}
        return
    if document.get("unet", [""])[0] is None:  # [null, X] means "no such component", never a module named None
        pipe = run.attempt(lambda: DiffusionPipeline.from_pretrained(target, trust_remote_code=True), None)
        assert pipe.unet is None
        return
    if document.get("unet") == ["evil", "Evil"]:  # a module OF the repository: a custom component (issue 15)
        run.attempt(lambda: DiffusionPipeline.from_pretrained(target), errors.UntrustedCodeError, "evil.py")
        # trusted by the caller it runs (its marker may appear), and a pipeline class is no component
        run.attempt(lambda: DiffusionPipeline.from_pretrained(target, trust_remote_code=True), errors.ComponentError,
                    trusted=True)
        return
    expected = errors.InvalidPipelineNameError if isinstance(document["_class_name"], list) else errors.UnknownComponentClassError
    run.attempt(lambda: DiffusionPipeline.from_pretrained(target, trust_remote_code=True), expected)


# --------------------------------------------------------------------------- a ref that moves mid-load


class MovingHub:
    """A Hub fake whose ``main`` moves from commit A to commit B once model_index.json was served.

    ``by_commit=True`` serves files by the commit in the URL (an honest Hub); False serves the
    branch head whatever the URL says and names that commit (a lying or naive mirror).
    """

    def __init__(self, httpserver, repo_id: str, commits: dict[str, dict[str, bytes]], *, by_commit: bool) -> None:
        self.repo_id = repo_id
        self.commits = commits
        self.order = list(commits)
        self.head = self.order[0]
        self.by_commit = by_commit
        self.file_requests: list[str] = []
        httpserver.expect_request(re.compile(rf"/api/models/{repo_id}/revision/.*")).respond_with_handler(self.info)
        httpserver.expect_request(re.compile(rf"/{repo_id}/resolve/.*")).respond_with_handler(self.file)

    def info(self, request):
        from werkzeug import Response

        asked = request.path.rsplit("/revision/", 1)[1]
        sha = asked if asked in self.commits else self.head
        siblings = [{"rfilename": name} for name in sorted(self.commits[sha])]
        return Response(json.dumps({"id": self.repo_id, "sha": sha, "siblings": siblings}), content_type="application/json")

    def file(self, request):
        from werkzeug import Response

        revision, _, name = request.path.split("/resolve/", 1)[1].partition("/")
        self.file_requests.append(f"{request.method} {revision} {name}")
        sha = revision if self.by_commit and revision in self.commits else self.head
        data = self.commits[sha].get(name)
        if data is None:
            return Response("not found", status=404, headers={"X-Error-Code": "EntryNotFound"})
        headers = {"X-Repo-Commit": sha, "ETag": f'"{_git_blob_sha1(data)}"', "Content-Length": str(len(data))}
        if name == "model_index.json" and request.method == "GET":
            self.head = self.order[-1]  # the branch moves right after the model_index request
        return Response(data, headers=headers)  # werkzeug sends no body to a HEAD


def _git_blob_sha1(data: bytes) -> str:
    """The ETag the Hub gives a file kept in git (not LFS): its git blob id."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def _two_commits(folder: Path) -> dict[str, dict[str, bytes]]:
    first = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    config = json.loads(first["scheduler/scheduler_config.json"])
    second = {**first, "scheduler/scheduler_config.json": json.dumps({**config, "num_train_timesteps": 999}).encode()}
    return {"a" * 40: first, "b" * 40: second}


@pytest.fixture
def fake_hub_endpoint(httpserver, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", httpserver.url_for("").rstrip("/"))
    return httpserver


def test_a_ref_moving_between_model_index_and_files_loads_the_first_commit_whole(fake_hub_endpoint, tiny_ddpm_folder, scenario):
    """CVE-2026-45804's race: every file of one load comes from the commit model_index.json came from."""
    run = scenario("a Hub ref that moves mid-load")
    hub = MovingHub(fake_hub_endpoint, "alice/moving", _two_commits(tiny_ddpm_folder), by_commit=True)
    pipe = run.attempt(lambda: DiffusionPipeline.from_pretrained("alice/moving"), None)
    assert hub.head == "b" * 40  # the branch did move during the load
    assert pipe.scheduler.config.num_train_timesteps == 1000  # commit A's scheduler
    assert hub.file_requests and all(r.split()[1] == "a" * 40 for r in hub.file_requests), hub.file_requests


def test_a_server_answering_another_commit_for_a_file_is_refused(fake_hub_endpoint, tiny_ddpm_folder, scenario):
    """A mirror that serves the moved branch for a file asked at commit A: a typed error naming
    both commits, never a pipeline mixing A's model_index with B's scheduler."""
    run = scenario("a Hub ref that moves mid-load")
    MovingHub(fake_hub_endpoint, "alice/moving", _two_commits(tiny_ddpm_folder), by_commit=False)
    run.attempt(lambda: DiffusionPipeline.from_pretrained("alice/moving"), errors.HubError, f"commit {'b' * 40}.*commit {'a' * 40}")
