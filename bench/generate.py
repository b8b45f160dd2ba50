"""Images/s of ``pipeyard generate``: the local engine (1 worker) against Ray with 1 and 2 workers.

The shipped demo model (16x16 UNet2DModel) through the bundled community pipeline
``ddim_noise_comparative_analysis``, ``--steps`` DDIM steps per image, ``--items`` images per
run, every worker on 1 torch thread (1 CPU; 1 GPU each with ``--gpu``). Each engine runs once,
into its own fresh output folder, through the engines' own code (pin once, workers load the
pinned bytes, the driver writes PNGs and the manifest).

Two rates per run:

* ``steady``: images/s from the first result to the last (workers loaded and warm): what a
  long job gets. The first batch of results is not counted.
* ``job``: images/s over the whole run, starting workers included (Ray starts actors: seconds).

Goals (issue 17): Ray with 1 worker within 10% of local (steady ratio >= 0.9); 2 workers
>= 1.7x one worker.

    PYTHONPATH=core .venv/bin/python bench/generate.py [--items 96] [--steps 20] [--gpu]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def timed_run(engine: Callable[..., int], pinned: Any, cls: type, items: list, out: Path, options: Any
              ) -> tuple[float, float, int]:
    """(steady images/s, job images/s, images) of one run of ``engine``."""
    from pipeyard.batch import job

    stamps: list[tuple[float, int]] = []
    original = job._Sink.accept

    def accept(self: Any, batch: Mapping[str, Any]) -> None:
        original(self, batch)
        stamps.append((time.perf_counter(), len(batch["id"])))

    job._Sink.accept = accept  # type: ignore[method-assign]
    start = time.perf_counter()
    try:
        summary = job.run_job(pinned, cls, items, str(out), options, progress=False)
    finally:
        job._Sink.accept = original  # type: ignore[method-assign]
    end = time.perf_counter()
    assert summary.done == len(items) and not summary.failed, summary.lines()
    after_first = sum(count for _, count in stamps[1:])
    steady = after_first / (stamps[-1][0] - stamps[0][0]) if len(stamps) > 1 else float("nan")
    return steady, summary.done / (end - start), summary.done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=96)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--gpu", action="store_true", help="1 GPU per worker, device cuda")
    args = parser.parse_args()

    import ray

    import pipeyard
    from pipeyard.demo import copy_demo_model
    from pipeyard.batch.job import EngineOptions
    from pipeyard.batch.local import run_local
    from pipeyard.batch.pinning import pin_job
    from pipeyard.batch.ray_engine import run_ray

    work = Path(tempfile.mkdtemp(prefix="pyg-"))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ["PIPEYARD_HOME"] = str(work / "home")
    try:
        copy_demo_model(work / "model")
        device = "cuda" if args.gpu else None
        pinned, cls = pin_job(work / "model", custom_pipeline="ddim_noise_comparative_analysis", device=device)
        items = pipeyard.batch.grid_items(seeds=range(args.items), keywords={"num_inference_steps": args.steps})
        gpu_count = _gpu_count() if args.gpu else 0
        gpus = min(1.0, gpu_count / 2) if args.gpu else 0.0  # 2 workers share one GPU if there is one
        ray.init(num_cpus=2, num_gpus=gpu_count, _temp_dir=str(work / "ray"),
                 include_dashboard=False, log_to_driver=False)
        results = {}
        runs = [("local, 1 worker", run_local, 1, "local"), ("ray, 1 worker", run_ray, 1, "ray"),
                ("ray, 2 workers", run_ray, 2, "ray")]
        for name, engine, workers, kind in runs:
            options = EngineOptions(kind, None, workers, 1.0, gpus, args.batch_size, 1)
            results[name] = timed_run(engine, pinned, cls, items, work / name.replace(", ", "-"), options)
            steady, whole, done = results[name]
            print(f"{name:16s} steady {steady:7.2f} images/s   job {whole:7.2f} images/s   ({done} images)", flush=True)
        ray.shutdown()
        _print_ratios(results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _gpu_count() -> int:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--gpu: torch sees no CUDA device")
    return torch.cuda.device_count()


def _print_ratios(results: Mapping[str, tuple[float, float, int]]) -> None:
    local, one, two = (results[name] for name in ("local, 1 worker", "ray, 1 worker", "ray, 2 workers"))
    print(f"steady: ray 1 worker / local = {one[0] / local[0]:.2f}  (goal >= 0.90)")
    print(f"steady: ray 2 workers / ray 1 worker = {two[0] / one[0]:.2f}  (goal >= 1.70)")
    print(f"job:    ray 1 worker / local = {one[1] / local[1]:.2f}   ray 2 / ray 1 = {two[1] / one[1]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
