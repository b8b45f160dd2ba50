"""Hub sources (olah, a real Hub-compatible server) and Hub error codes (a pytest-httpserver fake)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

import pipeyard.trust
from pipeyard import errors, hub
from pipeyard.host import load_pipeline_class, load_repository_pipeline_class

HELPERS = "from .sub import deeper\nNAME = 'v1' + deeper.MARK\n"


def _publish(olah_hub, pipeline_text, *, tag="v1"):
    repo_id, repo = olah_hub.new_repo()
    text = pipeline_text("HubPipeline", header="from . import helpers\n")
    commit = repo.commit({
        "pipeline.py": text, "helpers.py": HELPERS, "sub/deeper.py": "MARK = '!'\n", "README.md": "hi\n",
    }, tag=tag)
    return repo_id, repo, commit, text


def test_hub_repo_is_untrusted_until_allowed(olah_hub, pipeline_text):
    """CVE-2026-44513: a repo given as custom_pipeline ran without consent. Here it is refused."""
    repo_id, _, commit, _ = _publish(olah_hub, pipeline_text)
    with pytest.raises(errors.UntrustedCodeError) as caught:
        load_pipeline_class(repo_id)
    error = caught.value
    assert error.commit == commit and repo_id in error.source
    assert Path(error.path).read_text(encoding="utf-8").startswith("from . import helpers")
    cls = load_pipeline_class(repo_id, trust_remote_code=True)
    assert cls.__name__ == "HubPipeline"
    package = __import__("sys").modules[cls.__module__.rsplit(".", 1)[0]]
    assert package.helpers.NAME == "v1!"


def test_trusting_the_digest_allows_the_repo(olah_hub, pipeline_text):
    repo_id, *_ = _publish(olah_hub, pipeline_text)
    with pytest.raises(errors.UntrustedCodeError) as caught:
        load_pipeline_class(repo_id)
    pipeyard.trust.add(caught.value.sha256, source=repo_id)
    assert load_pipeline_class(repo_id).__name__ == "HubPipeline"


def test_revision_resolves_to_its_commit_and_siblings_come_from_it(olah_hub, pipeline_text):
    repo_id, repo, old_commit, _ = _publish(olah_hub, pipeline_text)
    repo.commit({"helpers.py": "from .sub import deeper\nNAME = 'v2'\n"})
    old = load_pipeline_class(repo_id, custom_revision="v1", trust_remote_code=True)
    new = load_pipeline_class(repo_id, trust_remote_code=True)
    modules = __import__("sys").modules
    assert modules[old.__module__.rsplit(".", 1)[0]].helpers.NAME == "v1!"
    assert modules[new.__module__.rsplit(".", 1)[0]].helpers.NAME == "v2"
    by_commit = load_pipeline_class(repo_id, custom_revision=old_commit, trust_remote_code=True)
    assert by_commit is old


def test_warm_load_makes_zero_requests_and_works_offline(olah_hub, pipeline_text, hub_requests, monkeypatch):
    """diffusers #7946 / #5300: a warm offline load failed. Ours reads the resolution record."""
    repo_id, *_ = _publish(olah_hub, pipeline_text)
    cold = load_pipeline_class(repo_id, trust_remote_code=True)
    assert hub_requests  # the cold load did talk to the Hub
    hub_requests.clear()
    assert load_pipeline_class(repo_id, trust_remote_code=True) is cold
    assert hub_requests == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_pipeline_class(repo_id, trust_remote_code=True) is cold
    assert hub_requests == []


def test_offline_cold_load_is_an_offline_error_without_requests(olah_hub, hub_requests, monkeypatch):
    monkeypatch.setenv("PIPEYARD_OFFLINE", "1")
    with pytest.raises(errors.OfflineError, match="never loaded before"):
        load_pipeline_class("alice/never-seen", trust_remote_code=True)
    assert hub_requests == []


def test_refresh_asks_again(olah_hub, pipeline_text, hub_requests):
    repo_id, repo, *_ = _publish(olah_hub, pipeline_text)
    load_pipeline_class(repo_id, trust_remote_code=True)
    repo.commit({"pipeline.py": pipeline_text("Renamed")})
    assert load_pipeline_class(repo_id, trust_remote_code=True).__name__ == "HubPipeline"
    hub_requests.clear()
    assert load_pipeline_class(repo_id, trust_remote_code=True, refresh=True).__name__ == "Renamed"
    assert hub_requests


def test_repo_without_pipeline_py(olah_hub):
    repo_id, repo = olah_hub.new_repo()
    repo.commit({"README.md": "no code\n"})
    with pytest.raises(errors.EntryNotFoundError, match="pipeline.py"):
        load_pipeline_class(repo_id, trust_remote_code=True)


def test_module_named_by_model_index_of_a_hub_repo(olah_hub, pipeline_text):
    """Source 6: model_index.json's [module_file, ClassName], same repo and commit."""
    repo_id, repo = olah_hub.new_repo()
    text = pipeline_text("RepoPipe")
    commit = repo.commit({"model_index.json": '{"_class_name": ["my_pipe", "RepoPipe"]}', "my_pipe.py": text})
    source = hub.open_source(repo_id, revision="main")  # olah (offline) answers only with a revision
    with pytest.raises(errors.UntrustedCodeError) as caught:
        load_repository_pipeline_class({"_class_name": ["my_pipe", "RepoPipe"]}, source)
    assert caught.value.commit == commit and caught.value.sha256 == hashlib.sha256(text.encode()).hexdigest()
    cls = load_repository_pipeline_class({"_class_name": ("my_pipe", "RepoPipe")}, repo_id, trust_remote_code=True)
    assert cls.__name__ == "RepoPipe"


# ---------------------------------------------------------------- exact Hub errors (fake server)


@pytest.fixture
def fake_hub(httpserver, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", httpserver.url_for("").rstrip("/"))
    return httpserver


def _error(fake_hub, path, status, code, message="x"):
    fake_hub.expect_request(path).respond_with_json({"error": message}, status=status, headers={"X-Error-Code": code})


def test_missing_repo(fake_hub):
    _error(fake_hub, "/api/models/alice/gone/revision/main", 404, "RepoNotFound")
    with pytest.raises(errors.RepositoryNotFoundError, match="alice/gone"):
        load_pipeline_class("alice/gone")


def test_bad_revision(fake_hub):
    _error(fake_hub, "/api/models/alice/pipe/revision/nope", 404, "RevisionNotFound")
    with pytest.raises(errors.RevisionNotFoundError, match="'nope'"):
        load_pipeline_class("alice/pipe", custom_revision="nope")


def test_gated_repo(fake_hub):
    _error(fake_hub, "/api/models/alice/gated/revision/main", 403, "GatedRepo", "Access to model alice/gated is restricted")
    with pytest.raises(errors.GatedRepoError, match="gated"):
        load_pipeline_class("alice/gated")


def test_missing_file_listed_nowhere(fake_hub):
    fake_hub.expect_request("/api/models/alice/empty/revision/main").respond_with_json(
        {"id": "alice/empty", "sha": "a" * 40, "siblings": [{"rfilename": "README.md"}]})
    with pytest.raises(errors.EntryNotFoundError, match="pipeline.py"):
        load_pipeline_class("alice/empty")


def test_hub_request_that_never_answers_times_out(fake_hub, monkeypatch):
    """diffusers #3703: a lookup with no timeout hung. Every request here has one."""
    fake_hub.expect_request("/api/models/alice/slow/revision/main").respond_with_handler(
        lambda request: time.sleep(3) or None)
    monkeypatch.setenv("PIPEYARD_TIMEOUT", "0.3")
    start = time.monotonic()
    with pytest.raises(errors.OfflineError, match="the Hub was not reached .*Timeout"):
        load_pipeline_class("alice/slow")
    assert time.monotonic() - start < 2.5


def test_missing_file_answered_by_the_hub_with_its_error_code(fake_hub):
    """The listing names pipeline.py but the file endpoint answers 404 EntryNotFound."""
    sha = "b" * 40
    fake_hub.expect_request("/api/models/alice/racy/revision/main").respond_with_json(
        {"id": "alice/racy", "sha": sha, "siblings": [{"rfilename": "pipeline.py"}]})
    _error(fake_hub, f"/alice/racy/resolve/{sha}/pipeline.py", 404, "EntryNotFound")
    with pytest.raises(errors.EntryNotFoundError, match="pipeline.py"):
        load_pipeline_class("alice/racy")


def test_a_resolution_record_is_per_server(olah_hub, pipeline_text, hub_requests, monkeypatch):
    """A name recorded from one Hub endpoint does not answer a load from another endpoint."""
    repo_id, repo = olah_hub.new_repo()
    repo.commit({"pipeline.py": pipeline_text("HubPipeline")})
    load_pipeline_class(repo_id, trust_remote_code=True)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # another server, unreachable
    with pytest.raises(errors.OfflineError):
        load_pipeline_class(repo_id, trust_remote_code=True)
    monkeypatch.setenv("HF_ENDPOINT", olah_hub.endpoint)
    hub_requests.clear()
    assert load_pipeline_class(repo_id, trust_remote_code=True).__name__ == "HubPipeline"
    assert hub_requests == []  # the record of the first server still answers there
