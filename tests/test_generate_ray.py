"""``pipeyard.generate(engine="ray")`` on a real local Ray cluster (``ray.init(num_cpus=2)``).

One cluster serves the whole test session (``ray_cluster`` in tests/conftest.py); it keeps every
file it writes under a temp folder and is shut down when the session ends. Starting actors
costs seconds on two shared cores, so the tests are few and their jobs small.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

import pipeyard

pytest.importorskip("ray")

# Ray Data's own DataContext sets deprecated fields when it is created; only those, only here.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")]

DDIM = "ddim_noise_comparative_analysis"
FAST = {"num_inference_steps": 2}


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeyard.demo import copy_demo_model

    folder = tmp_path_factory.mktemp("generate-ray") / "demo-model"
    copy_demo_model(folder)
    return folder


def manifest_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def image_shas(out: Path) -> dict[str, str]:
    return {row["id"]: row["image_sha256"] for row in manifest_rows(out)}


def test_ray_engine_resumes_a_local_run_and_makes_the_same_images(
    ray_cluster: object, demo_model: Path, tmp_path: Path
) -> None:
    grid = {"custom_pipeline": DDIM, "keywords": FAST, "threads": 1, "progress": False}
    pipeyard.generate(demo_model, tmp_path / "local", seeds=range(6), **grid)
    pipeyard.generate(demo_model, tmp_path / "mixed", seeds=range(2), **grid)

    summary = pipeyard.generate(demo_model, tmp_path / "mixed", seeds=range(6), engine="ray", workers=2,
                                batch_size=1, **grid)

    assert (summary.done, summary.skipped, summary.failed, summary.engine) == (4, 2, {}, "ray")
    assert image_shas(tmp_path / "mixed") == image_shas(tmp_path / "local")
    ray_rows = manifest_rows(tmp_path / "mixed")[2:]
    workers = {row["worker"] for row in ray_rows}
    assert 1 <= len(workers) <= 2 and f":{os.getpid()}" not in " ".join(workers)  # actors, not the driver


DIE_ONCE = textwrap.dedent('''
    """A DDIM pipeline whose process dies the first time it sees die_once_marker (a test fault)."""

    import os
    import signal

    from pipeyard import DDIMPipeline


    class DieOncePipeline(DDIMPipeline):
        def __call__(self, die_once_marker=None, **kwargs):
            if die_once_marker and not os.path.exists(die_once_marker):
                open(die_once_marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return super().__call__(**kwargs)
''')


def test_a_worker_killed_mid_job_is_restarted_and_its_items_retried(
    ray_cluster: object, demo_model: Path, tmp_path: Path
) -> None:
    pipeline = tmp_path / "die_once.py"
    pipeline.write_text(DIE_ONCE)
    marker = tmp_path / "died"
    items = [{"id": "a", "seed": 1, **FAST}, {"id": "b", "seed": 2, "die_once_marker": str(marker), **FAST},
             {"id": "c", "seed": 3, **FAST}]

    summary = pipeyard.generate(demo_model, tmp_path / "ray", items=items, custom_pipeline=str(pipeline),
                                engine="ray", workers=1, batch_size=1, threads=1, progress=False)

    assert marker.exists(), "the worker never died: the fault was not injected"
    assert (summary.done, summary.failed) == (3, {}) and summary.retried >= 1
    assert sorted(row["id"] for row in manifest_rows(tmp_path / "ray")) == ["a", "b", "c"]
    local = pipeyard.generate(demo_model, tmp_path / "local", items=items, custom_pipeline=str(pipeline),
                              threads=1, progress=False)  # the marker exists: nothing dies here
    assert local.done == 3 and image_shas(tmp_path / "local") == image_shas(tmp_path / "ray")


def test_a_worker_whose_model_files_differ_from_the_pin_stops_the_job_with_the_reason(
    ray_cluster: object, tmp_path: Path
) -> None:
    from pipeyard import errors
    from pipeyard.demo import copy_demo_model
    from pipeyard.batch import grid_items
    from pipeyard.batch.job import EngineOptions, run_job
    from pipeyard.batch.pinning import pin_job

    copy_demo_model(tmp_path / "model")
    pinned, cls = pin_job(tmp_path / "model", custom_pipeline=DDIM)
    config = tmp_path / "model" / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace("1000", "999"))  # this "node" has other files

    with pytest.raises(errors.GenerateJobError) as caught:
        run_job(pinned, cls, grid_items(seeds=[0], keywords=FAST), str(tmp_path / "out"),
                EngineOptions("ray", workers=1, batch_size=1, threads=1), progress=False)

    message = str(caught.value)
    assert "PinMismatchError" in message and "model files" in message and pinned.model.revision in message
    assert "run the same job again to resume" in message
    assert not (tmp_path / "out" / "images").exists() or not any((tmp_path / "out" / "images").iterdir())
