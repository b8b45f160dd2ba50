"""The content-addressed module store, atomic writes and resolution records."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading

import pytest
from filelock import FileLock

from pipeyard import constants, errors
from pipeyard.host import cache, load_pipeline_class


def test_files_are_stored_under_their_digest(write_pipeline):
    path = write_pipeline()
    cls = load_pipeline_class(str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    stored = cache.modules_dir() / digest
    assert (stored / "pipeline.py").read_bytes() == path.read_bytes()
    assert json.loads((stored / "MANIFEST.json").read_text()) == {"main": "pipeline.py", "files": {"pipeline.py": digest}}
    assert cls.__module__ == f"pipeyard_m{digest}.pipeline"
    assert not [p for p in stored.iterdir() if p.name.endswith(".tmp")]


def test_two_pipeline_py_files_load_side_by_side(write_pipeline):
    """diffusers #3761: a second pipeline.py replaced the first in the same process."""
    first = load_pipeline_class(str(write_pipeline("a/pipeline.py", class_name="First")))
    second = load_pipeline_class(str(write_pipeline("b/pipeline.py", class_name="Second")))
    assert (first.__name__, second.__name__) == ("First", "Second")
    assert first.__module__ != second.__module__
    assert sys.modules[first.__module__].First is first
    assert first.__call__(None) == "First" and second.__call__(None) == "Second"


def test_an_edited_local_file_yields_the_new_class(write_pipeline):
    path = write_pipeline(class_name="Old")
    assert load_pipeline_class(str(path)).__name__ == "Old"
    write_pipeline(class_name="New")
    assert load_pipeline_class(str(path)).__name__ == "New"


def test_same_content_is_imported_once(write_pipeline):
    one = load_pipeline_class(str(write_pipeline("x/pipeline.py")))
    two = load_pipeline_class(str(write_pipeline("y/pipeline.py")))
    assert one is two


def test_a_file_edited_inside_the_cache_is_refused(write_pipeline):
    path = write_pipeline()
    stored = cache.store_package({"pipeline.py": path.read_bytes()}, "pipeline.py")
    (stored.root / "pipeline.py").write_text("import os\n")
    with pytest.raises(errors.PipelineVerificationError, match="no longer match"):
        cache.load_package(stored.digest)


def test_package_digest_of_one_file_is_its_sha256_and_of_several_a_manifest_hash():
    one = {"pipeline.py": "aa"}
    assert cache.package_digest(one) == "aa"
    two = cache.package_digest({"pipeline.py": "aa", "h.py": "bb"})
    assert two == hashlib.sha256(b"bb  h.py\naa  pipeline.py\n").hexdigest()


def test_store_is_idempotent_and_complete_only_with_a_manifest():
    files = {"pipeline.py": b"x = 1\n", "pkg/helper.py": b"y = 2\n"}
    first = cache.store_package(files, "pipeline.py")
    assert cache.store_package(files, "pipeline.py") == first
    (first.root / "MANIFEST.json").unlink()
    assert cache.load_package(first.digest) is None


def test_resolution_records_round_trip():
    record = cache.ResolutionRecord("c" * 40, "d" * 64, "alice/pipe@ccc")
    cache.write_record('["HUB", "alice/pipe", "pipeline.py", "main"]', record)
    assert cache.read_record('["HUB", "alice/pipe", "pipeline.py", "main"]') == record
    assert cache.read_record("other") is None


def test_no_sys_path_change_when_importing(write_pipeline):
    before = list(sys.path)
    load_pipeline_class(str(write_pipeline()))
    assert sys.path == before


def test_the_store_lives_under_pipeyard_home(write_pipeline):
    load_pipeline_class(str(write_pipeline()))
    assert cache.modules_dir().parent == __import__("pathlib").Path(os.environ["PIPEYARD_HOME"])


def test_a_tampered_cache_is_refused_on_a_warm_load_of_a_local_file(write_pipeline):
    path = write_pipeline()
    load_pipeline_class(str(path))
    stored = cache.modules_dir() / hashlib.sha256(path.read_bytes()).hexdigest() / "pipeline.py"
    stored.write_text(stored.read_text() + "\nimport os  # injected\n")
    with pytest.raises(errors.PipelineVerificationError, match="no longer match"):
        load_pipeline_class(str(path))


def test_a_writer_waits_for_the_lock_held_by_another(write_pipeline):
    """The package lock is filelock's lock on locks/<digest>.lock: another holder blocks writers."""
    files = {"pipeline.py": write_pipeline().read_bytes()}
    digest = cache.package_digest({"pipeline.py": hashlib.sha256(files["pipeline.py"]).hexdigest()})
    (constants.pipeyard_home() / "locks").mkdir(parents=True)
    holder = FileLock(str(constants.pipeyard_home() / "locks" / f"{digest}.lock"))
    stored = []
    with holder:
        writer = threading.Thread(target=lambda: stored.append(cache.store_package(files, "pipeline.py")))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive() and not (cache.modules_dir() / digest).exists()
    writer.join(10)
    assert stored[0].digest == digest and cache.load_package(digest) == stored[0]
