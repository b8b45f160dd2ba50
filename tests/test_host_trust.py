"""The trust gate (one decision for every source) and the trust store API."""

from __future__ import annotations

import hashlib

import pytest

import pipeyard.trust
from pipeyard import constants, errors, hub
from pipeyard.host import gate, load_pipeline_class, load_repository_pipeline_class, resolve
from pipeyard.host.resolve import Source, SourceKind

DIGEST = "ab" * 32


def test_trust_store_add_list_remove():
    assert pipeyard.trust.list() == []
    entry = pipeyard.trust.add(DIGEST.upper(), source="alice/pipe")
    assert entry.sha256 == DIGEST and entry.source == "alice/pipe" and entry.added.endswith("Z")
    assert [e.sha256 for e in pipeyard.trust.list()] == [DIGEST]
    assert pipeyard.trust.path().endswith("trust.json")
    assert pipeyard.trust.remove(DIGEST) is True
    assert pipeyard.trust.remove(DIGEST) is False
    assert pipeyard.trust.list() == []


def test_trust_store_refuses_what_is_not_a_sha256():
    with pytest.raises(errors.InvalidPipelineNameError, match="64 hexadecimal"):
        pipeyard.trust.add("not-a-digest")


def _hub_source() -> Source:
    return Source(SourceKind.HUB, "alice/pipe", "pipeline.py", "main")


def test_untrusted_error_names_source_commit_digest_path_and_both_ways():
    with pytest.raises(errors.UntrustedCodeError) as caught:
        gate.require_trust(_hub_source(), DIGEST, commit="c0ffee", path="/cache/pipeline.py", trust_remote_code=False)
    error = caught.value
    assert (error.source, error.commit, error.sha256, error.path) == (
        "Hub repo 'alice/pipe' at 'main'", "c0ffee", DIGEST, "/cache/pipeline.py")
    for part in ("alice/pipe", "c0ffee", DIGEST, "/cache/pipeline.py", "trust_remote_code=True", "pipeyard.trust.add"):
        assert part in str(error)
    assert isinstance(error, PermissionError)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (SourceKind.BUNDLED, "bundled with pipeyard"),
        (SourceKind.LOCAL_FILE, "a local path named by the caller"),
        (SourceKind.LOCAL_FOLDER, "a local path named by the caller"),
        (SourceKind.ENTRY_POINT, "registered by an installed distribution"),
        (SourceKind.HUB, None),
        (SourceKind.GITHUB, None),
        (SourceKind.EMBEDDED, None),
    ],
)
def test_decision_by_source_kind(kind, expected):
    assert gate.trust_reason(Source(kind, "x", "x.py"), DIGEST, trust_remote_code=False) == expected


def test_trust_store_and_flag_allow_remote_code():
    assert gate.trust_reason(_hub_source(), DIGEST, trust_remote_code=True) == "trust_remote_code=True"
    pipeyard.trust.add(DIGEST)
    assert gate.trust_reason(_hub_source(), DIGEST, trust_remote_code=False) == "its sha256 is in the trust store"


def test_disable_remote_code_refuses_all_but_bundled(monkeypatch):
    monkeypatch.setenv("PIPEYARD_DISABLE_REMOTE_CODE", "1")
    pipeyard.trust.add(DIGEST)
    for kind in (SourceKind.LOCAL_FILE, SourceKind.HUB, SourceKind.ENTRY_POINT):
        assert gate.trust_reason(Source(kind, "x", "x.py"), DIGEST, trust_remote_code=True) is None
    bundled = resolve.bundled_registry()["one_step_unet"]["sha256"]
    github = Source(SourceKind.GITHUB, "one_step_unet", "one_step_unet.py", "v1")
    assert gate.trust_reason(github, bundled, trust_remote_code=False) == "bundled with pipeyard"
    assert load_pipeline_class("one_step_unet").__name__ == "UnetSchedulerOneForwardPipeline"


def test_disabled_remote_code_refuses_an_explicit_local_file(monkeypatch, write_pipeline):
    monkeypatch.setenv("PIPEYARD_DISABLE_REMOTE_CODE", "1")
    with pytest.raises(errors.UntrustedCodeError, match="PIPEYARD_DISABLE_REMOTE_CODE=1"):
        load_pipeline_class(str(write_pipeline()))


def test_bundled_community_name_goes_through_the_gate(monkeypatch):
    """diffusers #13691: community names skipped the gate. Ours consult it like any source."""
    calls = []
    original = gate.trust_reason

    def spy(source, digest, *, trust_remote_code):
        calls.append((source.kind, digest))
        return original(source, digest, trust_remote_code=trust_remote_code)

    monkeypatch.setattr(gate, "trust_reason", spy)
    load_pipeline_class("one_step_unet")
    assert calls == [(SourceKind.BUNDLED, resolve.bundled_registry()["one_step_unet"]["sha256"])]


def test_model_repo_module_is_untrusted_and_nothing_runs(tmp_path, pipeline_text):
    """A pipeline module inside a model folder is not code the caller named: refused, unexecuted."""
    marker = tmp_path / "ran.txt"
    text = pipeline_text("Embedded", header=f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "my_pipe.py").write_text(text)
    with pytest.raises(errors.UntrustedCodeError) as caught:
        load_repository_pipeline_class({"_class_name": ["my_pipe", "Embedded"]}, str(tmp_path / "model"))
    assert caught.value.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert "my_pipe.py" in caught.value.path
    assert not marker.exists()
    pipeyard.trust.add(caught.value.sha256)
    cls = load_repository_pipeline_class({"_class_name": ["my_pipe", "Embedded"]}, str(tmp_path / "model"))
    assert cls.__name__ == "Embedded" and marker.exists()


def test_model_index_class_must_match_the_module(tmp_path, pipeline_text):
    (tmp_path / "my_pipe.py").write_text(pipeline_text("Actual"))
    with pytest.raises(errors.PipelineVerificationError, match="names class 'Expected'"):
        load_repository_pipeline_class({"_class_name": ["my_pipe", "Expected"]}, str(tmp_path), trust_remote_code=True)


# ---------------------------------------------------------------- refused before any request


def test_disabled_remote_code_refuses_a_hub_repo_before_any_request(olah_hub, pipeline_text, hub_requests, monkeypatch):
    repo_id, repo = olah_hub.new_repo()
    repo.commit({"pipeline.py": pipeline_text("HubPipeline")})
    monkeypatch.setenv("PIPEYARD_DISABLE_REMOTE_CODE", "1")
    with pytest.raises(errors.UntrustedCodeError) as caught:
        load_pipeline_class(repo_id, trust_remote_code=True)
    error = caught.value
    assert hub_requests == []
    assert (error.source, error.commit, error.sha256, error.path) == (f"Hub repo {repo_id!r} at 'main'", None, None, None)
    for part in (repo_id, "PIPEYARD_DISABLE_REMOTE_CODE=1 allows bundled pipelines only", "nothing was downloaded",
                 "unset PIPEYARD_DISABLE_REMOTE_CODE"):
        assert part in str(error)
    assert not (constants.pipeyard_home() / "modules").exists()
    monkeypatch.delenv("PIPEYARD_DISABLE_REMOTE_CODE")
    assert load_pipeline_class(repo_id, trust_remote_code=True).__name__ == "HubPipeline"
    assert hub_requests  # the same load with the variable unset does download the repo


def test_disabled_remote_code_refuses_a_model_repo_module_before_any_request(
    olah_hub, pipeline_text, hub_requests, monkeypatch
):
    repo_id, repo = olah_hub.new_repo()
    repo.commit({"model_index.json": '{"_class_name": ["my_pipe", "RepoPipe"]}', "my_pipe.py": pipeline_text("RepoPipe")})
    opened = hub.open_source(repo_id, revision="main")  # what from_pretrained holds by then
    hub_requests.clear()
    monkeypatch.setenv("PIPEYARD_DISABLE_REMOTE_CODE", "1")
    for pretrained in (opened, repo_id):
        with pytest.raises(errors.UntrustedCodeError, match="nothing was downloaded") as caught:
            load_repository_pipeline_class({"_class_name": ["my_pipe", "RepoPipe"]}, pretrained)
        assert "my_pipe.py" in caught.value.source
    assert hub_requests == []


def test_disabled_remote_code_still_fetches_a_github_revision_which_may_be_bundled(github_raw, pipeline_text, monkeypatch):
    """A GitHub copy equal to a bundled file is bundled code, so only its content can decide."""
    sha = github_raw.repo.commit({"community/one_step_unet.py": pipeline_text("Changed")})
    monkeypatch.setenv("PIPEYARD_DISABLE_REMOTE_CODE", "1")
    with pytest.raises(errors.UntrustedCodeError, match="unset PIPEYARD_DISABLE_REMOTE_CODE") as caught:
        load_pipeline_class("one_step_unet", custom_revision=sha, trust_remote_code=True)
    assert caught.value.sha256 == hashlib.sha256(pipeline_text("Changed").encode()).hexdigest()
    assert github_raw.requests == [f"/pipeyard/pipeyard/{sha}/community/one_step_unet.py"]


def test_pre_fetch_refusal_is_the_gate_decision_for_every_kind(monkeypatch):
    """refuse_before_fetch refuses only what trust_reason refuses for any content."""
    monkeypatch.setenv("PIPEYARD_DISABLE_REMOTE_CODE", "1")
    refused = set()
    for kind in SourceKind:
        try:
            gate.refuse_before_fetch(Source(kind, "x", "x.py"))
        except errors.UntrustedCodeError:
            refused.add(kind)
    assert refused == {SourceKind.HUB, SourceKind.EMBEDDED, SourceKind.MIRROR, SourceKind.COMPONENT}
    for kind in refused:
        assert gate.trust_reason(Source(kind, "x", "x.py"), DIGEST, trust_remote_code=True) is None
    monkeypatch.delenv("PIPEYARD_DISABLE_REMOTE_CODE")
    for kind in SourceKind:
        gate.refuse_before_fetch(Source(kind, "x", "x.py"))
