"""`pipeyard cache list|verify|clear` over the module store and `pipeyard trust add|list|remove`."""

from __future__ import annotations

import hashlib

from pipeyard import trust
from pipeyard.host import cache


def _store(text: str) -> cache.StoredPackage:
    return cache.store_package({"pipeline.py": text.encode()}, "pipeline.py")


def test_cache_list_on_an_empty_store(invoke):
    result = invoke("cache", "list")
    assert result.exit_code == 0
    assert result.output.startswith("module store ") and result.output.strip().endswith("is empty")


def test_cache_list_and_verify_show_every_package(invoke):
    first, second = _store("a = 1\n"), _store("b = 2\n")
    listed = invoke("cache", "list").output
    assert f"{first.digest}  pipeline.py" in listed and "1 file(s)  6 bytes" in listed
    assert "2 package(s) in " in listed
    checked = invoke("cache", "verify")
    assert checked.exit_code == 0
    assert f"{second.digest}  ok" in checked.output and "2 of 2 package(s) ok" in checked.output


def test_cache_verify_fails_on_an_edited_file_and_an_incomplete_package(invoke):
    stored = _store("a = 1\n")
    stored.main_path.write_text("a = 2  # edited in the cache\n")
    (cache.modules_dir() / ("0" * 64)).mkdir()
    result = invoke("cache", "verify")
    assert result.exit_code == 1
    assert f"{stored.digest}  CHANGED: the cached files no longer match their digest" in result.output
    assert f"{'0' * 64}  incomplete: no manifest" in result.output
    assert "0 of 2 package(s) ok" in result.output


def test_cache_clear_asks_first_unless_yes(invoke):
    stored = _store("a = 1\n")
    refused = invoke("cache", "clear", input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert stored.root.is_dir()
    accepted = invoke("cache", "clear", input="y\n")
    assert accepted.exit_code == 0 and "removed 1 package(s)" in accepted.output
    assert not stored.root.exists()
    _store("b = 2\n")
    assert invoke("cache", "clear", "--yes").output.strip() == "removed 1 package(s)"
    assert cache.list_packages() == []


def test_trust_add_list_remove_round_trip(invoke):
    digest = "AB" * 32
    added = invoke("trust", "add", digest, "--source", "alice/fancy-pipe")
    assert added.exit_code == 0
    assert added.output.strip() == f"trusted {digest.lower()} (alice/fancy-pipe)"
    assert [e.sha256 for e in trust.list()] == [digest.lower()]
    listed = invoke("trust", "list").output
    assert listed.startswith(f"{digest.lower()}  20") and "alice/fancy-pipe" in listed
    assert f"1 trusted digest(s) in {trust.path()}" in listed
    assert invoke("trust", "remove", digest).output.strip() == f"removed {digest.lower()}"
    assert invoke("trust", "remove", digest).output.strip() == f"was not trusted: {digest.lower()}"
    assert trust.list() == []


def test_trust_add_a_local_file_trusts_its_sha256(invoke, tmp_path):
    path = tmp_path / "pipeline.py"
    path.write_bytes(b"print('hi')\n")
    result = invoke("trust", "add", path)
    assert result.exit_code == 0
    assert [e.sha256 for e in trust.list()] == [hashlib.sha256(b"print('hi')\n").hexdigest()]


def test_trust_add_refuses_what_is_not_a_digest(invoke):
    result = invoke("trust", "add", "not-a-digest")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "InvalidPipelineNameError: digest 'not-a-digest' is not valid: a sha256 is 64 hexadecimal digits"
    )


def test_trust_add_a_local_file_trusts_the_package_a_load_of_it_checks(invoke, tmp_path):
    """A file importing a sibling is trusted as what its load is gated on: the file and the
    sibling together (the file's own sha256 alone would be refused at load)."""
    import pytest

    from pipeyard import errors
    from pipeyard.host import load_repository_pipeline_class

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "helpers.py").write_text("GREETING = 'hi'\n")
    (folder / "pipeline.py").write_text(
        "from pipeyard import DiffusionPipeline\n\nfrom .helpers import GREETING\n\n\n"
        "class MyPipeline(DiffusionPipeline):\n    def __call__(self):\n        return GREETING\n"
    )
    model_index = {"_class_name": ["pipeline", "MyPipeline"]}
    with pytest.raises(errors.UntrustedCodeError):
        load_repository_pipeline_class(model_index, str(folder))
    result = invoke("trust", "add", folder / "pipeline.py")
    assert result.exit_code == 0, result.output
    assert [e.sha256 for e in trust.list()] != [hashlib.sha256((folder / "pipeline.py").read_bytes()).hexdigest()]
    assert load_repository_pipeline_class(model_index, str(folder)).__name__ == "MyPipeline"
