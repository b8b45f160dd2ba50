"""Load: many processes and threads filling one empty store at once; a store of 10,000 entries.

Processes (:mod:`tests.reliability.kill_child` ``loadmany``) and threads load the same and
different pipelines, from a local file, the bundled community folder, the Hub and GitHub
stand-ins, into one empty ``PIPEYARD_HOME``: every load succeeds with the class of the content
it asked for, the store holds one folder per sha256 and nothing else, and no lock is held at
the end. Model weights are downloaded by several processes into one Hub cache at once. Then
the module store and the trust store grow to 10,000 entries (the long profile; 1,000 in the
fast one), and list / verify / a warm load are timed against a store of 100: printed, and
held to a generous flatness ratio, not to absolute times.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock

from pipeyard import constants
from pipeyard.host import cache, load_pipeline_class

from .faulty_hub import FaultyHub
from .test_kill import CHILD, _env

REPO = "alice/load-pipe"


@pytest.fixture
def sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pipeline_text):
    """Every kind of source, each a different content: spec -> (expected class, sha256)."""
    server = FaultyHub(REPO, {
        "pipeline.py": pipeline_text("HubLoadPipeline").encode(),
        "ghload.py": pipeline_text("GitHubLoadPipeline").encode(),
    })
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("PIPEYARD_COMMUNITY_URL", server.raw_template)
    local_a = tmp_path / "a" / "pipeline.py"
    local_b = tmp_path / "b" / "pipeline.py"
    for path, name in ((local_a, "LocalA"), (local_b, "LocalB")):
        path.parent.mkdir()
        path.write_text(pipeline_text(name))
    from pipeyard._bundled import bundled_dir

    bundled = (bundled_dir("community") / "one_step_unet.py").read_bytes()
    table = {
        str(local_a): ("LocalA", local_a.read_bytes()),
        str(local_b): ("LocalB", local_b.read_bytes()),
        "one_step_unet": ("UnetSchedulerOneForwardPipeline", bundled),
        REPO: ("HubLoadPipeline", server.files["pipeline.py"]),
        "ghload@v1": ("GitHubLoadPipeline", server.files["ghload.py"]),
    }
    yield {spec: (cls, hashlib.sha256(data).hexdigest()) for spec, (cls, data) in table.items()}
    server.close()


def _check_store(expected_stored: set[str]) -> None:
    modules = constants.pipeyard_home() / "modules"
    assert sorted(p.name for p in modules.iterdir()) == sorted(expected_stored), "one folder per sha256, nothing else"
    assert cache.list_packages() and all(stored is not None for _, stored in cache.list_packages())
    for lock in (constants.pipeyard_home() / "locks").glob("*.lock"):
        FileLock(str(lock), timeout=0).acquire()  # raises Timeout if anyone still held it


def test_processes_and_threads_fill_one_empty_store_at_once(sources, profile, tally):
    t = tally("load: processes + threads, one store")
    processes, threads = profile.cases(fast=3, long=32), profile.cases(fast=8, long=16)
    specs = list(sources)
    children = [
        subprocess.Popen([sys.executable, str(CHILD), "loadmany", *(specs[i % len(specs):] + specs[: i % len(specs)])],
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(processes)
    ]
    results: list[tuple[str, str, str]] = []
    failures: list[BaseException] = []

    def load(spec: str) -> None:
        name, _, revision = spec.partition("@")
        try:
            cls = load_pipeline_class(name, custom_revision=revision or None, trust_remote_code=True)
            results.append((spec, cls.__name__, cls.__pipeyard_provenance__.sha256))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    workers = [threading.Thread(target=load, args=(specs[i % len(specs)],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    for child in children:
        out, err = child.communicate(timeout=600)
        assert child.returncode == 0, err
        for line in out.splitlines():
            if not line.startswith("LOADED "):
                continue
            _, spec, name, digest = line.split()
            results.append((spec, name, digest))
    assert not failures, failures
    t.cases = len(results)
    assert len(results) == processes * len(specs) + threads
    stale = [r for r in results if (r[1], r[2]) != sources[r[0]]]
    t.failures = len(stale)
    assert not stale, f"a load got another content than it asked for: {stale}"
    _check_store({digest for spec, (_, digest) in sources.items() if spec != "one_step_unet"})


def test_weights_downloaded_by_several_processes_into_one_hub_cache(monkeypatch, tiny_ddpm_folder, profile, tally):
    t = tally("load: weights, one Hub cache")
    unet = tiny_ddpm_folder / "unet"
    server = FaultyHub(REPO, {f"unet/{p.name}": p.read_bytes() for p in unet.iterdir() if p.is_file()})
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    script = (
        "import hashlib, sys; from pipeyard import UNet2DModel\n"
        f"m = UNet2DModel.from_pretrained({REPO!r}, subfolder='unet')\n"
        "print(hashlib.sha256(b''.join(v.numpy().tobytes() for v in m.state_dict().values())).hexdigest())\n"
    )
    try:
        count = profile.cases(fast=3, long=16)
        children = [subprocess.Popen([sys.executable, "-c", script], env=_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for _ in range(count)]
        outputs = []
        for child in children:
            out, err = child.communicate(timeout=600)
            assert child.returncode == 0, err
            outputs.append(out.strip())
    finally:
        server.close()
    t.cases = count
    assert len(set(outputs)) == 1, "processes loaded different weights"
    blobs = [p for p in constants.hub_cache_dir().rglob("blobs/*") if not p.name.endswith((".lock", ".incomplete"))]
    assert len(blobs) == len(server.files), blobs  # one blob per file, no partial left


# --------------------------------------------------------------------------- scale


def _grow_store(start: int, count: int) -> None:
    """``count`` small packages and as many trust entries, written directly in the store's
    layout (what :func:`cache.store_package` writes, without its lock and renames: faster)."""
    entries = {}
    for i in range(start, start + count):
        data = f"# package {i}\n".encode()
        digest = hashlib.sha256(data).hexdigest()
        root = cache.modules_dir() / digest
        root.mkdir(parents=True)
        (root / "pipeline.py").write_bytes(data)
        (root / cache.MANIFEST_NAME).write_text(json.dumps({"main": "pipeline.py", "files": {"pipeline.py": digest}}))
        entries[digest] = {"source": f"scale test {i}", "added": "2026-11-26T00:00:00Z"}
    path = constants.pipeyard_home() / "trust.json"
    existing = json.loads(path.read_text())["trusted"] if path.exists() else {}
    path.write_text(json.dumps({"version": 1, "trusted": {**existing, **entries}}, indent=1))


def _timed(call, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _measure(invoke, spec: str) -> dict[str, float]:
    from pipeyard.host import trust_store

    def warm_load() -> None:
        load_pipeline_class(spec, custom_revision="v1")  # trusted through the trust store, offline

    packages = len(cache.list_packages())
    return {
        "packages": packages,
        "list_per_entry": _timed(lambda: invoke("cache", "list"), 3) / packages,
        "verify_per_entry": _timed(lambda: invoke("cache", "verify"), 1) / packages,
        "trust_list_per_entry": _timed(trust_store.list_trusted, 3) / packages,
        "warm_load": _timed(warm_load, 5),
    }


def test_list_verify_and_load_stay_flat_as_the_stores_grow_to_10000(sources, monkeypatch, profile, invoke, tally):
    from pipeyard.host import trust_store

    t = tally("load: 10,000-entry stores")
    load_pipeline_class("ghload", custom_revision="v1", trust_remote_code=True)
    trust_store.add_trusted(sources["ghload@v1"][1], "scale test")
    monkeypatch.setenv("PIPEYARD_OFFLINE", "1")
    _grow_store(0, 99)
    small = _measure(invoke, "ghload")
    large_size = profile.cases(fast=1_000, long=10_000)
    _grow_store(99, large_size - 100)
    large = _measure(invoke, "ghload")
    print(f"\nstore of {small['packages']:>6}: " + "  ".join(f"{k} {v * 1e3:.3f} ms" for k, v in small.items() if k != "packages"))
    print(f"store of {large['packages']:>6}: " + "  ".join(f"{k} {v * 1e3:.3f} ms" for k, v in large.items() if k != "packages"))
    t.cases = 2
    assert large["packages"] == large_size
    for key in ("list_per_entry", "verify_per_entry", "trust_list_per_entry"):
        assert large[key] <= 4 * small[key] + 1e-4, (key, small[key], large[key])
    # A warm load asks the trust store; parsing it on every load made it ~40x slower at 2,000.
    assert large["warm_load"] <= 5 * small["warm_load"] + 0.01, (small["warm_load"], large["warm_load"])
