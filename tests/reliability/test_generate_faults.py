"""``pipeyard generate`` under faults: the driver killed again and again, a poison item on Ray.

Both scenarios are long (seconds per case: a fresh process or a Ray actor imports torch), so
they run with the ``long`` profile (``make reliability``) only; tests/test_generate.py and
tests/test_generate_ray.py hold one case of each kind in the default run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import pipeyard

DDIM = "ddim_noise_comparative_analysis"
DRIVER = textwrap.dedent("""
    import sys
    import pipeyard
    pipeyard.generate(sys.argv[1], sys.argv[2], seeds=range(int(sys.argv[3])), threads=1, batch_size=2,
                      custom_pipeline="ddim_noise_comparative_analysis", keywords={"num_inference_steps": 6},
                      progress=False)
""")


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeyard.demo import copy_demo_model

    folder = tmp_path_factory.mktemp("generate-faults") / "demo-model"
    copy_demo_model(folder)
    return folder


def _rows(out: Path) -> list[dict]:
    manifest = out / "manifest.jsonl"
    return [json.loads(line) for line in manifest.read_text().splitlines()] if manifest.is_file() else []


def _kill_at_random(model: Path, out: Path, count: int, rng: random.Random) -> None:
    """Start a driver, let it finish a random number of rows, wait a random instant, kill -9."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(model), str(out), str(count)], env=env)
    target = len(_rows(out)) + rng.randint(1, 4)
    deadline = time.monotonic() + 120
    while driver.poll() is None and time.monotonic() < deadline:
        manifest = out / "manifest.jsonl"
        if manifest.is_file() and manifest.read_text().count("\n") >= target:
            break
        time.sleep(0.01)
    time.sleep(rng.uniform(0, 0.3))
    driver.send_signal(signal.SIGKILL)
    driver.wait()


def test_driver_killed_at_random_instants_loses_and_duplicates_nothing(
    demo_model: Path, tmp_path: Path, profile, tally
) -> None:
    if not profile.long:
        pytest.skip("long profile only (make reliability); tests/test_generate.py kills the driver once")
    t = tally("generate: driver kill -9 mid-job, then rerun")
    count, rng = 30, random.Random(17)
    reference = pipeyard.generate(demo_model, tmp_path / "reference", seeds=range(count), threads=1, batch_size=2,
                                  custom_pipeline=DDIM, keywords={"num_inference_steps": 6}, progress=False)
    expected = {row["id"]: row["image_sha256"] for row in _rows(tmp_path / "reference")}
    assert reference.done == count
    for case in range(profile.cases(fast=1, long=4)):
        out = tmp_path / f"case-{case}"
        for _ in range(3):
            _kill_at_random(demo_model, out, count, rng)
            t.faults += 1
        pipeyard.generate(demo_model, out, seeds=range(count), threads=1, batch_size=2, custom_pipeline=DDIM,
                          keywords={"num_inference_steps": 6}, progress=False)
        rows = _rows(out)
        got = {row["id"]: row["image_sha256"] for row in rows}
        t.cases += 1
        t.data_lost += sum(1 for key, sha in expected.items() if got.get(key) != sha)
        t.failures += (len(rows) != len(got)) + len(list((out / "images").glob(".*.tmp")))
        t.failures += sum(1 for row in rows
                          if hashlib.sha256((out / row["file"]).read_bytes()).hexdigest() != row["image_sha256"])
    assert (t.data_lost, t.failures) == (0, 0)


DIE_ALWAYS = textwrap.dedent('''
    """A DDIM pipeline whose process dies on every item that sets poison (a test fault)."""

    import os
    import signal

    from pipeyard import DDIMPipeline


    class PoisonPipeline(DDIMPipeline):
        def __call__(self, poison=False, **kwargs):
            if poison:
                os.kill(os.getpid(), signal.SIGKILL)
            return super().__call__(**kwargs)
''')


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_a_poison_item_is_reported_failed_after_its_retries_and_the_job_goes_on(
    demo_model: Path, tmp_path: Path, profile, tally, request
) -> None:
    if not profile.long:
        pytest.skip("long profile only (make reliability): each worker death restarts an actor")
    request.getfixturevalue("ray_cluster")
    t = tally("generate: poison item kills its Ray worker every time")
    pipeline = tmp_path / "poison.py"
    pipeline.write_text(DIE_ALWAYS)
    items = [{"id": "good", "seed": 1, "num_inference_steps": 2},
             {"id": "poison", "seed": 2, "num_inference_steps": 2, "poison": True}]

    summary = pipeyard.generate(demo_model, tmp_path / "out", items=items, custom_pipeline=str(pipeline),
                                engine="ray", workers=1, batch_size=1, threads=1, retries=1, progress=False)

    t.cases, t.faults = 1, 2
    t.failures += summary.done != 1 or list(summary.failed) != ["poison"]
    assert summary.done == 1 and list(summary.failed) == ["poison"]
    assert "died 2 times (retries=1)" in summary.failed["poison"]
    assert [row["id"] for row in _rows(tmp_path / "out")] == ["good"]
