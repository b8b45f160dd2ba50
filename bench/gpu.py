"""The GPU fast-path bench of issue 9: pipeyard and diffusers side by side, in one process.

SD 1.5 architecture with random weights (saved once by diffusers, loaded by both), fp16:

* UNet step, CFG batch 2, 64x64 latents (512x512 images): eager, CUDA graph (both libraries'
  UNets replayed by :class:`pipeyard.cuda_graph.GraphedModule`, so the runner is the same),
  ``torch.compile`` (default mode), and both (``GraphedModule(unet, compile=True)``, what
  ``pipe.enable_cuda_graph(compile=True)`` runs). Median of CUDA-event timings.
* DPM++ 20-step image at batch 1 and 8: pipeyard with ``enable_cuda_graph()`` (and eager, for
  reference) against diffusers eager; seconds per image, best of ``--runs``.
* peak CUDA memory of those calls, and ``from_pretrained`` onto cuda.

Usage (on a machine with CUDA; prints a markdown table for bench/RESULTS.md)::

    .venv/bin/python bench/gpu.py [--runs 3] [--steps 50] [--no-compile]

Goals: UNet step <= 11 ms with graphs; 20-step image <= 0.45 s; every ratio <= 1.0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import pipelines as pipeline_bench  # noqa: E402  (bench/pipelines.py: folder, load, generate)

LIBRARIES = ("pipeyard", "diffusers")


def unet_inputs() -> dict[str, Any]:
    """CFG batch 2, 64x64 latents, 77 tokens of 768, on the UNet's device and dtype."""
    generator = torch.Generator("cuda").manual_seed(0)
    options = dict(device="cuda", dtype=torch.float16, generator=generator)
    return {
        "sample": torch.randn(2, 4, 64, 64, **options),
        "timestep": torch.tensor(500, device="cuda"),
        "encoder_hidden_states": torch.randn(2, 77, 768, **options),
    }


def step_ms(call: Any, inputs: dict[str, Any], steps: int) -> float:
    """Median milliseconds of one call, from CUDA events (after 3 warm-up calls)."""
    times = []
    with torch.inference_mode():
        for _ in range(3):
            call(**inputs)
        for _ in range(steps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call(**inputs)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def unet_rows(folder: Path, steps: int, compile: bool) -> list[str]:
    """UNet step rows: eager, graph, compiled (one library's UNet on the GPU at a time)."""
    from pipeyard.cuda_graph import GraphedModule

    ms: dict[tuple[str, str], float] = {}
    for lib in LIBRARIES:
        unet = pipeline_bench.load(lib, folder, "cuda", torch.float16).unet.eval()
        inputs = unet_inputs()
        ms[lib, "eager"] = step_ms(unet, inputs, steps)
        ms[lib, "graph"] = step_ms(GraphedModule(unet), inputs, steps)
        if compile:
            start = time.perf_counter()
            compiled = torch.compile(unet)
            step_ms(compiled, inputs, 1)
            ms[lib, "compile s"] = time.perf_counter() - start
            ms[lib, "compiled"] = step_ms(compiled, inputs, steps)
            ms[lib, "graph+compiled"] = step_ms(GraphedModule(unet, compile=True), inputs, steps)
        del unet
        torch.cuda.empty_cache()
    modes = ["eager", "graph"] + (["compiled", "graph+compiled", "compile s"] if compile else [])
    return [
        pipeline_bench.row(f"UNet step, CFG batch 2, {mode}", ms["pipeyard", mode], ms["diffusers", mode],
                           "s" if mode == "compile s" else "ms")
        for mode in modes
    ]


def image_rows(folder: Path, runs: int) -> list[str]:
    """20-step DPM++ seconds per image and peak memory, batch 1 and 8."""
    results: dict[tuple[str, int], tuple[float, float]] = {}
    for lib, graphs in (("pipeyard", True), ("pipeyard", False), ("diffusers", False)):
        pipe = pipeline_bench.load(lib, folder, "cuda", torch.float16)
        if graphs:
            pipe.enable_cuda_graph()
        for batch in (1, 8):
            seconds = pipeline_bench.seconds_per_image({lib: pipe}, batch, 20, "cuda", runs)[lib]
            torch.cuda.reset_peak_memory_stats()
            pipeline_bench.generate(pipe, batch, 20, "cuda")
            results[f"{lib}{'+graph' if graphs else ''}", batch] = (seconds, torch.cuda.max_memory_allocated() / 2**20)
        del pipe
        torch.cuda.empty_cache()
    rows = []
    for batch in (1, 8):
        theirs = results["diffusers", batch]
        for ours in ("pipeyard+graph", "pipeyard"):
            mine = results[ours, batch]
            rows.append(pipeline_bench.row(f"{ours} vs diffusers: s/image, batch {batch}", mine[0], theirs[0], "s"))
            rows.append(pipeline_bench.row(f"{ours} vs diffusers: peak MiB, batch {batch}", mine[1], theirs[1], "MiB"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed pipeline calls per library (best kept)")
    parser.add_argument("--steps", type=int, default=50, help="timed UNet calls per mode (median kept)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (~75 s per library)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/gpu.py needs CUDA; this machine has none")
        return 1
    pipeline_bench._quiet()
    with tempfile.TemporaryDirectory(prefix="pipeyard-gpu-bench-") as tmp:
        folder = pipeline_bench.build_folder(Path(tmp), "sd15")
        load_s = {lib: pipeline_bench.timed_load(lib, folder, "cuda", torch.float16) for lib in LIBRARIES}
        rows = [pipeline_bench.row("from_pretrained(fp16) onto cuda", load_s["pipeyard"], load_s["diffusers"], "s")]
        rows += unet_rows(folder, args.steps, not args.no_compile)
        rows += image_rows(folder, args.runs)
    title = f"{torch.cuda.get_device_name()}, SD 1.5 architecture, random weights, fp16, 512x512"
    pipeline_bench.print_table(title, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
