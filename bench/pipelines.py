"""Stable Diffusion pipelines: pipeyard against diffusers on the same folder, seeds and scheduler.

Both libraries load one folder saved by diffusers (random weights, safetensors) and run
DPM-Solver++ with the same seeds; the table gives pipeyard / diffusers ratios (goal: <= 1.0).

* ``cpu`` (always): a small SD-shaped model (4-level VAE, 3-level UNet, 2-layer CLIP text
  encoder), 128x128 images. Seconds per image are timed in this process with the two
  pipelines interleaved (best of ``--runs``); peak RSS comes from one fresh subprocess per
  library (load + one call), since a process's peak cannot be reset.
* ``gpu`` (when CUDA is available; skipped with a message otherwise): the SD 1.5 architecture
  (UNet 320/640/1280/1280, CLIP ViT-L/14 text encoder, 4-level VAE) with random weights, fp16,
  512x512, 20 DPM++ steps, batch 1 and batch 8, peak CUDA memory with and without attention
  slicing, and ``from_pretrained`` of the local safetensors folder onto the GPU.

    .venv/bin/python bench/pipelines.py [--runs 3] [--only cpu|gpu]   # BENCH_SCHEDULER=... to change solver
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

PROMPT = "a photo of an astronaut riding a horse"

#: model sizes: (unet channels, unet head dim, cross-attention dim, text layers, text heads,
#: text intermediate, vae channels, unet sample size)
CONFIGS = {
    "small": dict(unet=(64, 128, 128), heads=8, cross=64, text_layers=2, text_heads=4, text_ff=256,
                  vae=(32, 64, 64, 64), sample=16, vocab=1000, layers_per_block=1),
    "sd15": dict(unet=(320, 640, 1280, 1280), heads=8, cross=768, text_layers=12, text_heads=12, text_ff=3072,
                 vae=(128, 256, 512, 512), sample=64, vocab=49408, layers_per_block=2),
}


# ---------------------------------------------------------------------- building the folder


def _byte_level_tokenizer(folder: Path) -> Any:
    """A CLIP tokenizer over single bytes only (no merges): no download, real CLIP behaviour."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = list(bytes_to_unicode().values())
    vocab = [*alphabet, *(c + "</w>" for c in alphabet), "<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=77)


def _unet(c: dict[str, Any]) -> Any:
    from diffusers import UNet2DConditionModel

    levels = len(c["unet"])
    return UNet2DConditionModel(
        sample_size=c["sample"], block_out_channels=c["unet"], layers_per_block=c["layers_per_block"],
        down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
        cross_attention_dim=c["cross"], attention_head_dim=c["heads"],
    )


def _vae(c: dict[str, Any]) -> Any:
    from diffusers import AutoencoderKL

    levels = len(c["vae"])
    return AutoencoderKL(
        block_out_channels=c["vae"], layers_per_block=2, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        sample_size=c["sample"] * 2 ** (levels - 1),
    )


def build_folder(folder: Path, size: str) -> Path:
    """Save a random SD pipeline of ``size`` (see CONFIGS) with diffusers, in safetensors."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    c = CONFIGS[size]
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=c["cross"], intermediate_size=c["text_ff"], num_hidden_layers=c["text_layers"],
        num_attention_heads=c["text_heads"], vocab_size=c["vocab"], max_position_embeddings=77,
    ))
    scheduler = PNDMScheduler(  # as SD 1.x repositories ship; load() swaps in the benchmarked one
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=_vae(c), text_encoder=text_encoder, tokenizer=_byte_level_tokenizer(folder / "_tok"), unet=_unet(c),
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder / size, safe_serialization=True)
    return folder / size


# ---------------------------------------------------------------------- loading and running


SCHEDULER = "DPMSolverMultistepScheduler"


def _scheduler_name() -> str:
    """The benchmarked scheduler: DPM-Solver++ unless BENCH_SCHEDULER names another class."""
    return os.environ.get("BENCH_SCHEDULER", SCHEDULER)


def load(library: str, folder: Path, device: str, dtype: torch.dtype, scheduler: str | None = None) -> Any:
    """``DiffusionPipeline.from_pretrained(folder, torch_dtype=dtype).to(device)`` of ``library``,
    with its scheduler swapped by ``from_config`` as in the seed documents."""
    module = __import__(library)
    dtype_keyword = "dtype" if library == "diffusers" else "torch_dtype"  # diffusers 0.42 deprecates torch_dtype
    pipe = module.DiffusionPipeline.from_pretrained(folder, **{dtype_keyword: dtype}).to(device)
    scheduler_cls = getattr(module, scheduler or _scheduler_name())
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe: Any, batch: int, steps: int, device: str) -> None:
    """One call: ``batch`` images of the prompt, one generator per image."""
    generators = [torch.Generator(device).manual_seed(i) for i in range(batch)]
    pipe(prompt=batch * [PROMPT], generator=generators, num_inference_steps=steps, output_type="np")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def seconds_per_image(pipes: dict[str, Any], batch: int, steps: int, device: str, runs: int) -> dict[str, float]:
    """Best time of ``runs`` calls per library, interleaved, divided by the batch."""
    best = {name: float("inf") for name in pipes}
    for name, pipe in pipes.items():  # warm-up
        generate(pipe, batch, 1, device)
    for _ in range(runs):
        for name, pipe in pipes.items():
            _sync(device)
            start = time.perf_counter()
            generate(pipe, batch, steps, device)
            _sync(device)
            best[name] = min(best[name], (time.perf_counter() - start) / batch)
    return best


def peak_cuda_mib(pipe: Any, batch: int, steps: int, slicing: bool) -> float:
    """Peak CUDA memory of one call (MiB), with or without attention slicing."""
    if slicing:
        pipe.enable_attention_slicing()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    generate(pipe, batch, steps, "cuda")
    torch.cuda.synchronize()
    if slicing:
        pipe.disable_attention_slicing()
    return torch.cuda.max_memory_allocated() / 2**20


def peak_rss_mib(library: str, folder: Path, steps: int) -> float:
    """Peak RSS (MiB) of a fresh process that loads ``folder`` with ``library`` and runs once.

    Read from VmHWM in /proc: ``ru_maxrss`` survives ``exec`` on Linux, so a child started by
    this (large) process would report this process's peak.
    """
    code = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); import pipelines as b; "
        "from pathlib import Path; torch.set_num_threads(int(sys.argv[5])); b._quiet(); "
        "p = b.load(sys.argv[2], Path(sys.argv[3]), 'cpu', torch.float32); b.generate(p, 1, int(sys.argv[4]), 'cpu'); "
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    args = [sys.executable, "-c", code, str(Path(__file__).parent), library, str(folder), str(steps),
            str(torch.get_num_threads())]
    done = subprocess.run(args, check=True, capture_output=True, text=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def timed_load(library: str, folder: Path, device: str, dtype: torch.dtype) -> float:
    """Seconds for ``from_pretrained(...).to(device)`` (best of two, after one untimed load)."""
    best = float("inf")
    for attempt in range(3):
        _sync(device)
        start = time.perf_counter()
        pipe = load(library, folder, device, dtype)
        _sync(device)
        if attempt:
            best = min(best, time.perf_counter() - start)
        del pipe
    return best


# ---------------------------------------------------------------------- reports


def row(label: str, ours: float, theirs: float, unit: str) -> str:
    return f"| {label} | {ours:.3f} {unit} | {theirs:.3f} {unit} | {ours / theirs:.2f} |"


def print_table(title: str, rows: list[str]) -> None:
    print(f"\n### {title}\n\n| measure | pipeyard | diffusers | ratio |\n|---|---|---|---|")
    print("\n".join(rows))


def cpu_bench(root: Path, runs: int) -> None:
    folder = build_folder(root, "small")
    steps, batch = 10, 2
    pipes = {lib: load(lib, folder, "cpu", torch.float32) for lib in ("pipeyard", "diffusers")}
    spi = seconds_per_image(pipes, batch, steps, "cpu", runs)
    del pipes
    rss = {lib: peak_rss_mib(lib, folder, steps) for lib in ("pipeyard", "diffusers")}
    load_s = {lib: timed_load(lib, folder, "cpu", torch.float32) for lib in ("pipeyard", "diffusers")}
    print_table(
        f"CPU, small SD config, 128x128, {_scheduler_name()} {steps} steps, batch {batch}, {torch.get_num_threads()} threads",
        [row("seconds per image", spi["pipeyard"], spi["diffusers"], "s"),
         row("peak RSS (load + 1 image)", rss["pipeyard"], rss["diffusers"], "MiB"),
         row("from_pretrained (fp32)", load_s["pipeyard"], load_s["diffusers"], "s")],
    )


def gpu_bench(root: Path, runs: int) -> None:
    if not torch.cuda.is_available():
        print("\n### GPU\n\nskipped: CUDA is not available on this machine")
        return
    folder = build_folder(root, "sd15")
    load_s = {lib: timed_load(lib, folder, "cuda", torch.float16) for lib in ("pipeyard", "diffusers")}
    rows = [row("from_pretrained(fp16).to('cuda')", load_s["pipeyard"], load_s["diffusers"], "s")]
    spi: dict[tuple[str, int], float] = {}
    mem: dict[tuple[str, int, bool], float] = {}
    for lib in ("pipeyard", "diffusers"):  # one library on the GPU at a time, for memory
        pipe = load(lib, folder, "cuda", torch.float16)
        for batch in (1, 8):
            spi[lib, batch] = seconds_per_image({lib: pipe}, batch, 20, "cuda", runs)[lib]
            for slicing in (False, True):
                mem[lib, batch, slicing] = peak_cuda_mib(pipe, batch, 20, slicing)
        del pipe
        torch.cuda.empty_cache()
    for batch in (1, 8):
        rows.append(row(f"seconds per image, batch {batch}", spi["pipeyard", batch], spi["diffusers", batch], "s"))
        for slicing in (False, True):
            label = f"peak memory, batch {batch}, slicing {'on' if slicing else 'off'}"
            rows.append(row(label, mem["pipeyard", batch, slicing], mem["diffusers", batch, slicing], "MiB"))
    print_table(f"GPU ({torch.cuda.get_device_name()}), SD 1.5 architecture, fp16, 512x512, {_scheduler_name()} 20 steps", rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed calls per library (best is kept)")
    parser.add_argument("--only", choices=("cpu", "gpu"), help="run one part only")
    args = parser.parse_args(argv)
    _quiet()
    benches: dict[str, Callable[[Path, int], None]] = {"cpu": cpu_bench, "gpu": gpu_bench}
    with tempfile.TemporaryDirectory(prefix="pipeyard-bench-") as tmp:
        for name, bench in benches.items():
            if args.only in (None, name):
                bench(Path(tmp), args.runs)
    return 0


def _quiet() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


if __name__ == "__main__":
    raise SystemExit(main())
