"""``kill -9`` at many points of a load or a save; then a fresh process must find everything whole.

Each case runs :mod:`tests.reliability.kill_child` in its own process and kills it: after N
bytes of a slow download (Hub and GitHub-raw shapes), or right after its N-th file-system
step (temp file made, rename, folder swap) while it stores a package, records where it
resolved, or saves a pipeline. N is swept, not picked. Afterwards a fresh process loads, the
module store passes ``pipeyard cache verify``, and a saved folder is the old or the new one,
file for file, never a mix.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeyard import constants

from .faulty_hub import FaultyHub

CHILD = Path(__file__).with_name("kill_child.py")
PACKAGE_ROOT = Path(__import__("pipeyard").__file__).resolve().parents[1]
REPO = "alice/slow-pipe"


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")]))
    return env


def _spawn(*args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args], env=_env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def _run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHILD), *args], env=_env(**extra), capture_output=True, text=True,
                          timeout=120, check=False)


def _steps(done: subprocess.CompletedProcess[str]) -> int:
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split("STEPS", 1)[1].split()[0])


def _sweep(count: int, points: int) -> list[int]:
    """``points`` kill points spread over 1..count (all of them when points >= count)."""
    if points >= count:
        return list(range(1, count + 1))
    return sorted({1 + round(i * (count - 1) / (points - 1)) for i in range(points)})


def _verify_store(invoke) -> None:
    result = invoke("cache", "verify")
    assert result.exit_code == 0, result.output
    modules = constants.pipeyard_home() / "modules"
    packages = [p for p in modules.iterdir() if not p.name.startswith(".")] if modules.is_dir() else []
    strays = [str(p) for package in packages for p in package.rglob(".*")]
    assert not strays, f"temp files inside stored packages: {strays}"


def _whole_records() -> None:
    records = constants.pipeyard_home() / "records"
    for path in records.glob("[!.]*.json") if records.is_dir() else ():
        assert path.read_bytes().rstrip().endswith(b"}"), f"a half-written record: {path}"


# --------------------------------------------------------------------------- downloads


@pytest.fixture
def slow_server(monkeypatch: pytest.MonkeyPatch, pipeline_text):
    padding = "".join(f"# padding line {i:04d} so the body streams in many chunks\n" for i in range(120))
    text = pipeline_text("SlowPipeline", header=padding).encode()
    server = FaultyHub(REPO, {"pipeline.py": text, "slowpipe.py": text})
    server.slow = (256, 0.01)
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("PIPEYARD_COMMUNITY_URL", server.raw_template)
    yield server
    server.close()


def _kill_after_bytes(server: FaultyHub, count: int, args: tuple[str, ...]) -> bool:
    """Start a load, SIGKILL it once the server has sent ``count`` body bytes; True if killed."""
    with server._lock:
        server.sent = 0
    child = _spawn(*args)
    deadline = time.monotonic() + 60
    while server.sent < count and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    killed = child.poll() is None
    if killed:
        os.kill(child.pid, signal.SIGKILL)
    out, _ = child.communicate(timeout=30)
    assert "CLASS" not in out or "SlowPipeline" in out  # a killed load never imported something partial
    return killed


@pytest.mark.parametrize("shape", ["hub", "github"])
def test_kill_9_mid_download_then_a_fresh_process_loads_and_the_store_verifies(
    slow_server, shape, profile, tally, invoke
):
    t = tally(f"kill -9 mid-download ({shape})")
    args = ("load", REPO) if shape == "hub" else ("load", "slowpipe", "v1")
    size = len(slow_server.files["pipeline.py"])
    # The Hub shape also streams the revision listing; GitHub only the file.
    points = _sweep(size, profile.cases(fast=3, long=16))
    for count in points:
        t.cases += 1
        t.faults += _kill_after_bytes(slow_server, count, args)
        _verify_store(invoke)
    slow_server.slow = None
    fresh = _run(*args)
    assert fresh.returncode == 0 and "CLASS SlowPipeline" in fresh.stdout, fresh.stderr
    _verify_store(invoke)
    _whole_records()
    modules = constants.pipeyard_home() / "modules"
    assert not [p for p in modules.iterdir() if p.name.startswith(".")], "staging folders left behind"
    assert t.faults >= 1, "no kill landed mid-download: slow the server down"


# --------------------------------------------------------------------------- store write, record


@pytest.fixture
def package_server(monkeypatch: pytest.MonkeyPatch, pipeline_text):
    files = {
        "sweep.py": pipeline_text("SweepPipeline", header="from ._helper import VALUE\n").encode(),
        "_helper.py": b"VALUE = 42\n",
    }
    server = FaultyHub(REPO, files)
    monkeypatch.setenv("PIPEYARD_COMMUNITY_URL", server.raw_template)
    yield server
    server.close()


def test_kill_9_at_every_store_and_record_step_then_a_fresh_process_loads(
    package_server, tmp_path, monkeypatch, profile, tally, invoke
):
    """Kill points: each temp file made and each rename of the package files, the manifest,
    the package folder's rename into the store, and the resolution record after it."""
    t = tally("kill -9 mid-store-write / before the record")
    args = ("load", "sweep", "v1")
    count = _steps(_run(*args, PIPEYARD_HOME=str(tmp_path / "count")))
    assert count >= 6, count  # 2 files + manifest (temp + rename each), the folder, the record
    for point in _sweep(count, profile.cases(fast=4, long=count)):
        home = tmp_path / f"kill-{point}"
        monkeypatch.setenv("PIPEYARD_HOME", str(home))
        killed = _run(*args, PIPEYARD_KILL_HOME=str(home), PIPEYARD_TEST_KILL_AT=str(point))
        assert killed.returncode == -signal.SIGKILL, (point, killed.stdout, killed.stderr)
        t.cases += 1
        t.faults += 1
        _verify_store(invoke)  # right after the kill: nothing incomplete looks like a package
        fresh = _run(*args)
        assert fresh.returncode == 0 and "CLASS SweepPipeline" in fresh.stdout, (point, fresh.stderr)
        _verify_store(invoke)
        _whole_records()
        warm = _run(*args, PIPEYARD_OFFLINE="1")  # the record and the package are complete
        if warm.returncode != 0:
            t.failures += 1
        assert warm.returncode == 0, (point, warm.stderr)


# --------------------------------------------------------------------------- save_pretrained


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def save_references(tmp_path_factory, tiny_ddpm_folder):
    """``new``: what the child saves (the tiny DDPM pipeline as is); ``old``: another pipeline
    already at the target (other weights, another scheduler)."""
    import torch

    from pipeyard import DDIMScheduler, DiffusionPipeline

    root = tmp_path_factory.mktemp("save-refs")
    DiffusionPipeline.from_pretrained(tiny_ddpm_folder).save_pretrained(root / "new")
    pipe = DiffusionPipeline.from_pretrained(tiny_ddpm_folder)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    with torch.no_grad():
        for parameter in pipe.unet.parameters():
            parameter.add_(1.0)
    pipe.save_pretrained(root / "old")
    old, new = _snapshot(root / "old"), _snapshot(root / "new")
    assert old != new and old.keys() == new.keys()
    return root / "old", root / "new", old, new


def _save_in_this_process(source: Path, target: Path) -> None:
    from pipeyard import DiffusionPipeline

    DiffusionPipeline.from_pretrained(source).save_pretrained(target)


@pytest.mark.parametrize("swap", ["exchange", "two renames"])
def test_kill_9_during_save_pretrained_leaves_the_old_or_the_new_folder_never_a_mix(
    save_references, tiny_ddpm_folder, tmp_path, swap, profile, tally
):
    if swap == "two renames" and not profile.long:
        pytest.skip("the fallback for systems without a one-step folder swap runs in the long profile")
    t = tally(f"kill -9 mid-save_pretrained ({swap})")
    old_folder, _, old, new = save_references
    extra = {"PIPEYARD_TEST_NO_EXCHANGE": "1"} if swap == "two renames" else {}
    counting = tmp_path / "count" / "pipe"
    shutil.copytree(old_folder, counting)
    count = _steps(_run("save", str(tiny_ddpm_folder), str(counting), **extra))
    assert _snapshot(counting) == new
    if profile.long:
        points = _sweep(count, count)
    elif swap == "exchange":
        points = [count // 2, count]  # mid-write of the staging folder; right after the swap
    else:  # (long only) between the two renames: the target is briefly missing
        points = [count - 2]
    for point in points:
        target = tmp_path / f"kill-{point}" / "pipe"
        shutil.copytree(old_folder, target)
        killed = _run("save", str(tiny_ddpm_folder), str(target), PIPEYARD_TEST_KILL_AT=str(point), **extra)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr)
        t.cases += 1
        t.faults += 1
        if swap == "two renames" and not target.exists():
            from pipeyard import fileio

            fileio.restore_interrupted_folder(target)  # what the next save does first
        seen = _snapshot(target)
        if seen not in (old, new):
            t.data_lost += 1
        assert seen in (old, new), f"kill point {point}: a mixed folder {sorted(seen)}"
        _save_in_this_process(tiny_ddpm_folder, target)  # the next save cleans up
        assert _snapshot(target) == new
        assert not [p.name for p in target.parent.iterdir() if p.name != "pipe"], "staging or backup left"
