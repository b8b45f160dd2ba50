"""Per-step overhead of each scheduler: pipeyard against diffusers, CPU, latents 1x4x64x64.

A sampling loop (``set_timesteps``, then ``scale_model_input`` + ``step`` per timestep) runs
with a fixed model output in place of a model, so what is timed is the scheduler alone. Each
scheduler is built from the Stable Diffusion 1.5 scheduler config (stochastic ones with a
seeded generator). The median over ``--runs`` loops, divided by the number of model
evaluations, is reported in microseconds (the two libraries' loops alternate, so
load on the machine hits both alike), with the pipeyard / diffusers ratio (goal <= 1.0).

    .venv/bin/python bench/schedulers.py [--steps 25] [--runs 21] [--threads 1]
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time
import warnings
from typing import Any

import torch

SCHEDULERS = (
    "DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "LMSDiscreteScheduler", "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler",
    "HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
    "UniPCMultistepScheduler", "DEISMultistepScheduler",
)
SD15_CONFIG = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "clip_sample": False,
}


def time_loop(scheduler: Any, steps: int, model_output: torch.Tensor, latents: torch.Tensor) -> float:
    """Seconds per model evaluation for one full loop."""
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters
    generator = torch.Generator().manual_seed(0)
    kwargs = {"generator": generator} if takes_generator else {}
    start = time.perf_counter()
    scheduler.set_timesteps(steps)
    x = latents
    for t in scheduler.timesteps:
        scheduler.scale_model_input(x, t)
        x = scheduler.step(model_output, t, x, **kwargs).prev_sample
    return (time.perf_counter() - start) / len(scheduler.timesteps)


def measure_pair(libraries: tuple[Any, Any], name: str, steps: int, runs: int) -> tuple[float, float]:
    """Median seconds per evaluation for each library, their loops interleaved (after a warm-up)."""
    latents = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    model_output = 0.1 * torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(2))
    schedulers = [getattr(library, name).from_config(SD15_CONFIG) for library in libraries]
    times: list[list[float]] = [[], []]
    for run in range(runs + 1):
        for k, scheduler in enumerate(schedulers):
            seconds = time_loop(scheduler, steps, model_output, latents)
            if run:  # the first loop of each is a warm-up
                times[k].append(seconds)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    import diffusers

    import pipeyard

    diffusers.utils.logging.set_verbosity_error()
    print(f"per-step overhead, {args.steps} steps, latents 1x4x64x64, median of {args.runs} loops, "
          f"{args.threads} thread(s)")
    print(f"{'scheduler':34s} {'pipeyard us':>12s} {'diffusers us':>13s} {'ratio':>7s}")
    ratios = []
    for name in SCHEDULERS:
        ours, theirs = measure_pair((pipeyard, diffusers), name, args.steps, args.runs)
        ratios.append(ours / theirs)
        print(f"{name:34s} {ours * 1e6:12.1f} {theirs * 1e6:13.1f} {ours / theirs:7.2f}")
    print(f"{'worst ratio':34s} {'':12s} {'':13s} {max(ratios):7.2f}")


if __name__ == "__main__":
    main()
