"""Cold import cost: `import X; X.DiffusionPipeline` for pipeyard and diffusers, side by side.

Each measurement is a fresh interpreter (so nothing is cached in-process); the median of
several runs is reported, and the ratio pipeyard / diffusers. Goal: pipeyard at least 5x
faster (ratio <= 0.2).

    .venv/bin/python bench/import_time.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

SNIPPET = "import {lib}; {lib}.DiffusionPipeline"


def cold_import_seconds(lib: str, runs: int) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", SNIPPET.format(lib=lib)], check=True)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def interpreter_seconds(runs: int) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    base = interpreter_seconds(args.runs)
    ours = cold_import_seconds("pipeyard", args.runs) - base
    theirs = cold_import_seconds("diffusers", args.runs) - base
    print(f"bare interpreter start  {base * 1000:8.1f} ms (subtracted below)")
    print(f"pipeyard.DiffusionPipeline  {ours * 1000:8.1f} ms")
    print(f"diffusers.DiffusionPipeline {theirs * 1000:8.1f} ms")
    print(f"ratio pipeyard/diffusers    {ours / theirs:8.3f}  (goal <= 0.2, i.e. >= 5x faster)")


if __name__ == "__main__":
    main()
