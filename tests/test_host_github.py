"""Community pipelines at another revision, fetched from a GitHub stand-in (raw-URL layout)."""

from __future__ import annotations

import time

import pytest

from pipeyard import errors
from pipeyard._bundled import bundled_dir
from pipeyard.host import fetch, load_pipeline_class


def _bundled_text() -> str:
    return (bundled_dir("community") / "one_step_unet.py").read_text(encoding="utf-8")


def test_a_revision_equal_to_the_bundled_file_is_trusted_as_bundled(github_raw):
    github_raw.repo.commit({"community/one_step_unet.py": _bundled_text()}, tag="v0.1.0")
    cls = load_pipeline_class("one_step_unet", custom_revision="v0.1.0")
    assert cls.__name__ == "UnetSchedulerOneForwardPipeline"
    assert github_raw.requests == ["/pipeyard/pipeyard/v0.1.0/community/one_step_unet.py"]


def test_a_different_revision_is_untrusted_until_allowed(github_raw, pipeline_text):
    sha = github_raw.repo.commit({"community/one_step_unet.py": pipeline_text("Changed")})
    with pytest.raises(errors.UntrustedCodeError) as caught:
        load_pipeline_class("one_step_unet", custom_revision=sha)
    assert caught.value.commit == sha and "one_step_unet" in caught.value.source
    assert load_pipeline_class("one_step_unet", custom_revision=sha, trust_remote_code=True).__name__ == "Changed"


def test_a_name_only_at_that_revision_with_a_sibling_module(github_raw, pipeline_text):
    github_raw.repo.commit({
        "community/newer.py": pipeline_text("Newer", header="from ._shared import X\n"),
        "community/_shared.py": "X = 1\n",
    }, branch="dev")
    assert load_pipeline_class("newer", custom_revision="dev", trust_remote_code=True).__name__ == "Newer"
    assert "/pipeyard/pipeyard/dev/community/_shared.py" in github_raw.requests


def test_warm_load_makes_zero_requests_and_works_offline(github_raw, pipeline_text, monkeypatch):
    github_raw.repo.commit({"community/warm.py": pipeline_text("Warm")}, tag="w1")
    cold = load_pipeline_class("warm", custom_revision="w1", trust_remote_code=True)
    github_raw.requests.clear()
    assert load_pipeline_class("warm", custom_revision="w1", trust_remote_code=True) is cold
    monkeypatch.setenv("PIPEYARD_OFFLINE", "1")
    assert load_pipeline_class("warm", custom_revision="w1", trust_remote_code=True) is cold
    assert github_raw.requests == []


def test_missing_file_at_revision_is_not_found_with_the_url(github_raw):
    github_raw.repo.commit({"README.md": "x"}, tag="t")
    with pytest.raises(errors.PipelineNotFoundError, match="404") as caught:
        load_pipeline_class("absent", custom_revision="t")
    assert github_raw.url in str(caught.value)


def test_a_server_that_never_answers_times_out(github_raw, monkeypatch):
    github_raw.stall.set()
    monkeypatch.setenv("PIPEYARD_TIMEOUT", "0.3")
    start = time.monotonic()
    with pytest.raises(errors.OfflineError, match="not reached"):
        load_pipeline_class("slow", custom_revision="dev")  # "main" of a name not bundled: the mirror
    assert time.monotonic() - start < 2


def test_default_url_comes_from_the_repository_url(monkeypatch):
    monkeypatch.delenv("PIPEYARD_COMMUNITY_URL", raising=False)
    assert fetch.community_url("v1", "x.py") == (
        "https://raw.githubusercontent.com/pipeyard/pipeyard/v1/community/x.py")
