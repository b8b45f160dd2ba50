"""A full disk while storing a pipeline, downloading into the Hub cache, or saving a pipeline.

Each test mounts a small tmpfs of its own (root only; skipped with the reason elsewhere),
fills it to a few KiB of free space, and expects a typed error naming the path, nothing
half-written (no package folder, no staging, the old saved folder whole), and a load or save
that works as soon as the filler is gone.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeyard import errors
from pipeyard.host import load_pipeline_class


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs at ``tmp_path/disk``, unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until about ``leave`` bytes are free; return the filler to delete later."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(free - leave, 0))
    return filler


def _names(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def test_a_full_disk_while_storing_is_a_home_error_and_nothing_is_half_written(
    small_disk, write_pipeline, pipeline_text, monkeypatch, tally
):
    t = tally("disk full: module store")
    monkeypatch.setenv("PIPEYARD_HOME", str(small_disk / "home"))
    padding = "# " + "x" * 78 + "\n"
    path = write_pipeline(text=pipeline_text("BigPipeline", body=padding * 600))  # ~48 KB
    (small_disk / "home").mkdir()
    filler = _fill(small_disk, leave=16 * 1024)
    with pytest.raises(errors.PipeyardHomeError) as caught:
        load_pipeline_class(str(path))
    t.cases, t.faults = 1, 1
    assert "No space left" in str(caught.value) and str(small_disk / "home") in str(caught.value)
    assert "free space" in str(caught.value)
    modules = small_disk / "home" / "modules"
    assert _names(modules) == [], f"half-written: {_names(modules)}"
    filler.unlink()
    assert load_pipeline_class(str(path)).__name__ == "BigPipeline"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (modules / digest / "MANIFEST.json").is_file()


def test_a_full_hub_cache_is_a_hub_cache_error_naming_the_path(small_disk, monkeypatch, pipeline_text, tally):
    from .faulty_hub import COMMIT, FaultyHub

    from pipeyard import hub

    t = tally("disk full: Hub cache")
    server = FaultyHub("alice/full", {"big.bin": os.urandom(200 * 1024)})
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    cache = small_disk / "hf"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    filler = _fill(small_disk, leave=32 * 1024)
    try:
        with pytest.warns(UserWarning, match="free disk space"), pytest.raises(errors.HubCacheError) as caught:
            hub.download_file("alice/full", "big.bin", hub.HubOptions(revision=COMMIT))
        t.cases, t.faults = 1, 1
        assert "No space left" in str(caught.value) and str(cache) in str(caught.value)
        blobs = [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith((".lock", "CACHEDIR.TAG"))]
        assert all(p.name.endswith(".incomplete") for p in blobs), blobs  # only huggingface_hub's resumable part
        filler.unlink()
        path = hub.download_file("alice/full", "big.bin", hub.HubOptions(revision=COMMIT))
        assert path.read_bytes() == server.files["big.bin"]
    finally:
        server.close()


def test_a_full_disk_while_saving_keeps_the_old_folder_whole(small_disk, tiny_ddpm_folder, tally):
    from pipeyard import DiffusionPipeline

    t = tally("disk full: save_pretrained")
    pipe = DiffusionPipeline.from_pretrained(tiny_ddpm_folder)
    target = small_disk / "pipe"
    pipe.save_pretrained(target)
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    size = sum(len(b) for b in before.values())
    filler = _fill(small_disk, leave=size // 2)
    with pytest.raises(errors.SaveError) as caught:
        pipe.save_pretrained(target)
    t.cases, t.faults = 1, 1
    assert isinstance(caught.value, OSError)
    assert "No space left" in str(caught.value) and str(small_disk) in str(caught.value)
    after = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    if after != before:
        t.data_lost += 1
    assert after == before, "the old save was changed"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "pipe"], "staging left behind"
    filler.unlink()
    pipe.save_pretrained(target)
    assert DiffusionPipeline.from_pretrained(target).unet is not None
