"""Prompt accuracy of the bundled text-to-image model: does the picture show what the caption says?

Every held-out caption of ``scripts/t2i_scenes.py`` (never drawn during training) is rendered
by ``StableDiffusionPipeline`` (the model's own DDIM scheduler, 20 steps by default, guidance
7.5, seeded), each picture is read back by the scenes' detector, and each attribute is scored:
background, number of shapes, and each shape's colour, shape, size and position. The same
detector run on the drawn pictures of those captions is printed first (its own error rate: the
ceiling of the measure)::

    PYTHONPATH=core .venv/bin/python bench/prompt_accuracy.py [--model FOLDER] [--steps 20] [--seeds 1]

Prints a table of per-attribute accuracy and the mean over all attributes (goal: >= 90 %).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import t2i_scenes  # noqa: E402  (shared with scripts/train_t2i_model.py)

ATTRIBUTES = ("background", "count", "colour", "shape", "size", "position")


def tally(pairs: list[tuple[t2i_scenes.Scene, t2i_scenes.Scene]]) -> dict[str, float]:
    """Per-attribute accuracy (and ``"all"``) over ``(expected, found)`` scene pairs."""
    right, total = Counter(), Counter()
    for expected, found in pairs:
        for attribute, (ok, n) in t2i_scenes.score(expected, found).items():
            right[attribute] += ok
            total[attribute] += n
    result = {a: right[a] / total[a] for a in ATTRIBUTES}
    result["all"] = sum(right.values()) / sum(total.values())
    return result


def generate(pipe, captions: list[str], steps: int, seed: int, guidance: float, chunk: int) -> np.ndarray:
    """``(n, 32, 32, 3)`` images in [0, 1] for ``captions``; chunk ``i`` is seeded ``seed + i``."""
    images = []
    for i in range(0, len(captions), chunk):
        out = pipe(captions[i : i + chunk], num_inference_steps=steps, guidance_scale=guidance,
                   generator=torch.Generator().manual_seed(seed + i), output_type="np")
        images.append(out.images)
    return np.concatenate(images)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark; returns the model's accuracies."""
    from pipeyard import StableDiffusionPipeline
    from pipeyard.demo_t2i import BUNDLED_T2I_MODEL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=BUNDLED_T2I_MODEL)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--seeds", type=int, default=1, help="pictures per caption (seeds 0, 1, ...)")
    parser.add_argument("--chunk", type=int, default=64, help="captions per pipeline call")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    _, held_out = t2i_scenes.split_scenes()
    captions = [scene.caption for scene in held_out]
    rng = random.Random(0)
    drawn = tally([(s, t2i_scenes.detect(t2i_scenes.draw_scene(s, rng))) for s in held_out])

    pipe = StableDiffusionPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    pairs, start = [], time.perf_counter()
    for seed in range(args.seeds):
        images = generate(pipe, captions, args.steps, seed * 1000, args.guidance, args.chunk)
        pairs += [(scene, t2i_scenes.detect(image)) for scene, image in zip(held_out, images)]
    seconds = time.perf_counter() - start
    model = tally(pairs)

    print(f"{len(held_out)} held-out captions x {args.seeds} seed(s), {args.steps} steps, guidance {args.guidance}, "
          f"{type(pipe.scheduler).__name__}: {seconds:.1f} s")
    print(f"| attribute | model | detector on drawn pictures |\n|---|---|---|")
    for attribute in (*ATTRIBUTES, "all"):
        print(f"| {attribute} | {model[attribute]:.1%} | {drawn[attribute]:.1%} |")
    return model


if __name__ == "__main__":
    main()
