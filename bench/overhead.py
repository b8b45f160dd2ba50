"""Per-call framework overhead of the SD 1.5 UNet: pipeyard vs diffusers, in one run, on CPU.

The SD 1.5 UNet topology (block types, 2 layers per block, transformer depth 1, 8 heads) at
tiny widths, so that a call is mostly Python and dispatcher work: the cost the GPU waits for
in a launch-bound pipeline. Both models get the same random weights.

What is printed, per round (median of ``--calls`` calls, alternating the models, measured in
this thread's CPU time so that other processes on a shared machine disturb it less):

    pipeyard, diffusers     one forward call
    floor                   the same diffusers model traced by TorchScript and run by its C++
                            interpreter: the same kernels with no Python per operator (the
                            cheaper of the two libraries' traces; a measuring tool only)
    wall ratio              pipeyard / diffusers (goal of issue 9: <= 0.5)
    overhead ratio          (pipeyard - floor) / (diffusers - floor): the framework work the
                            issue is about, with the kernels' own time taken out

Usage::

    nice python bench/overhead.py                 # median of 100 calls, 3 rounds
    nice python bench/overhead.py --calls 500 --rounds 5
    nice python bench/overhead.py --profile       # cProfile of pipeyard's forward, top 25
    nice python bench/overhead.py --ops           # aten ops per call (each one a kernel launch on a GPU)
    nice python bench/overhead.py --narrow        # widths (8, 8, 16, 16), oneDNN off: cheaper kernels

diffusers is a benchmark-time dependency only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from models import SD15_UNET  # noqa: E402  (bench/models.py)

#: the SD 1.5 UNet of bench/models.py (block types, layers, 8 heads) at tiny widths
TINY_SD15_UNET = {
    **SD15_UNET, "sample_size": 8, "block_out_channels": (32, 32, 64, 64), "cross_attention_dim": 32,
    "norm_num_groups": 8,
}


#: --narrow: convs cost ~28 us instead of ~120 us on a small CPU, so Python's share grows
NARROW = dict(block_out_channels=(8, 8, 16, 16), cross_attention_dim=8)


def build_pair(narrow: bool = False) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(pipeyard, diffusers) UNets with the same random weights, in eval mode."""
    import diffusers

    import pipeyard

    torch.manual_seed(0)
    reference = diffusers.UNet2DConditionModel(**{**TINY_SD15_UNET, **(NARROW if narrow else {})}).eval()
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        ours = pipeyard.UNet2DConditionModel.from_pretrained(folder).eval()
    return ours, reference


def make_inputs(narrow: bool = False) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    context_dim = (NARROW if narrow else TINY_SD15_UNET)["cross_attention_dim"]
    return {
        "sample": torch.randn(2, 4, 8, 8, generator=generator),
        "timestep": torch.tensor(500),
        "encoder_hidden_states": torch.randn(2, 77, context_dim, generator=generator),
    }


def time_calls(models: list[Callable[..., Any]], inputs: dict[str, Any], calls: int) -> list[float]:
    """Median CPU time of one call of each model, in ms; calls alternate between models."""
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for _ in range(calls):
            for model, samples in zip(models, times):
                start = time.thread_time()
                model(**inputs)
                samples.append(time.thread_time() - start)
    return [statistics.median(samples) * 1e3 for samples in times]


def traced(model: torch.nn.Module, inputs: dict[str, Any]) -> Callable[..., Any]:
    """``model`` run by TorchScript's interpreter: its kernels without Python per operator."""

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
            return self.model(sample, timestep, context, return_dict=False)[0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated, and chatty about tracing: fine for a measuring tool
        with torch.no_grad():
            script = torch.jit.trace(Positional().eval(), tuple(inputs.values()), check_trace=False)
    return lambda **kwargs: script(*kwargs.values())


def check_equal(ours: torch.nn.Module, reference: torch.nn.Module, inputs: dict[str, Any]) -> float:
    """Largest absolute difference between the two outputs (sanity check)."""
    with torch.inference_mode():
        return (ours(**inputs).sample - reference(**inputs).sample).abs().max().item()


def count_ops(model: torch.nn.Module, inputs: dict[str, Any]) -> int:
    """How many aten operators one forward call dispatches (views included)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            Counter.count += 1
            return func(*args, **(kwargs or {}))

    with torch.inference_mode():
        model(**inputs)  # warm: caches built on the first call are not counted
        with Counter():
            model(**inputs)
    return Counter.count


def profile(model: Callable[..., Any], inputs: dict[str, Any], calls: int) -> None:
    import cProfile
    import pstats

    with torch.inference_mode():
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            model(**inputs)
        profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--ops", action="store_true")
    parser.add_argument("--narrow", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.narrow:
        torch.backends.mkldnn.enabled = False
    ours, reference = build_pair(args.narrow)
    inputs = make_inputs(args.narrow)
    if args.ops:
        print(f"aten ops per call: pipeyard {count_ops(ours, inputs)}  diffusers {count_ops(reference, inputs)}")
        return
    if args.profile:
        profile(ours, inputs, args.calls)
        return
    print(f"max |pipeyard - diffusers| = {check_equal(ours, reference, inputs):.3g}")
    models = [ours, reference, traced(ours, inputs), traced(reference, inputs)]
    time_calls(models, inputs, 10)  # warm up
    for round_ in range(args.rounds):
        mine, theirs, *floors = time_calls(models, inputs, args.calls)
        floor = min(floors)
        print(
            f"round {round_}: pipeyard {mine:.3f} ms  diffusers {theirs:.3f} ms  floor {floor:.3f} ms  "
            f"wall ratio {mine / theirs:.3f}  overhead ratio {(mine - floor) / (theirs - floor):.3f}"
        )

if __name__ == "__main__":
    main()
