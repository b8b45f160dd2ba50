"""Time pipeyard's models against diffusers' on the same weights and inputs.

Usage::

    python bench/models.py                 # CPU: tiny models and an SD-1.5-sized UNet, 32x32 latents
    python bench/models.py --device cuda   # GPU: SD 1.5 UNet fp16, batch 2, 64x64 latents, + torch.compile
    python bench/models.py --only sd15_unet --repeats 5

For each case both models get the same random weights (saved by diffusers, loaded by both) and
the same inputs; the forward passes alternate, and the median time of each is reported with the
ratio pipeyard / diffusers (below 1.0: pipeyard is faster). On CUDA, times come from CUDA events.
diffusers is a benchmark-time dependency only.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)
TINY_UNET = dict(
    sample_size=32, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8, attention_head_dim=8,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
)
DDPM_CIFAR_UNET = dict(
    sample_size=32, block_out_channels=(128, 256, 256, 256), layers_per_block=2, attention_head_dim=None,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), downsample_padding=0,
    norm_eps=1e-6, flip_sin_to_cos=False, freq_shift=1,
)
TINY_COND_UNET = dict(
    sample_size=32, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8, cross_attention_dim=32,
    attention_head_dim=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
)
SD_VAE_DECODER = dict(
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, sample_size=256, latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)
TINY_VAE = dict(
    block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=16, sample_size=32,
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
)


@dataclass
class Case:
    """One benchmark: which class, which config, and the inputs of one forward call."""

    name: str
    class_name: str
    config: dict[str, Any]
    inputs: Callable[[torch.device, torch.dtype], dict[str, Any]]
    method: str = "forward"


def _unet_inputs(channels: int, size: int, batch: int = 1) -> Callable[[torch.device, torch.dtype], dict[str, Any]]:
    def make(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        return {"sample": torch.randn(batch, channels, size, size, device=device, dtype=dtype), "timestep": 500}

    return make


def _cond_inputs(size: int, dim: int, batch: int = 1) -> Callable[[torch.device, torch.dtype], dict[str, Any]]:
    def make(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        return {
            "sample": torch.randn(batch, 4, size, size, device=device, dtype=dtype), "timestep": 500,
            "encoder_hidden_states": torch.randn(batch, 77, dim, device=device, dtype=dtype),
        }

    return make


def _latents(size: int, batch: int = 1) -> Callable[[torch.device, torch.dtype], dict[str, Any]]:
    def make(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        return {"z": torch.randn(batch, 4, size, size, device=device, dtype=dtype)}

    return make


def cpu_cases() -> list[Case]:
    return [
        Case("tiny_unet_2d", "UNet2DModel", TINY_UNET, _unet_inputs(3, 32, batch=2)),
        Case("ddpm_cifar10_unet_2d", "UNet2DModel", DDPM_CIFAR_UNET, _unet_inputs(3, 32)),
        Case("tiny_unet_2d_condition", "UNet2DConditionModel", TINY_COND_UNET, _cond_inputs(32, 32, batch=2)),
        Case("sd15_unet", "UNet2DConditionModel", SD15_UNET, _cond_inputs(32, 768)),
        Case("tiny_vae_decode", "AutoencoderKL", TINY_VAE, _latents(16, batch=2), "decode"),
        Case("sd_vae_decode_32", "AutoencoderKL", SD_VAE_DECODER, _latents(32), "decode"),
    ]


def cuda_cases() -> list[Case]:
    return [
        Case("sd15_unet_fp16_b2_64", "UNet2DConditionModel", SD15_UNET, _cond_inputs(64, 768, batch=2)),
        Case("sd_vae_decode_fp16_64", "AutoencoderKL", SD_VAE_DECODER, _latents(64), "decode"),
    ]


# ---------------------------------------------------------------------- timing


def load_pair(case: Case, device: torch.device, dtype: torch.dtype, folder: str) -> tuple[Any, Any]:
    """diffusers' model with random weights and pipeyard's, loaded from the same saved folder."""
    import diffusers

    import pipeyard

    torch.manual_seed(0)
    getattr(diffusers, case.class_name)(**case.config).save_pretrained(folder)
    reference = getattr(diffusers, case.class_name).from_pretrained(folder, torch_dtype=dtype).to(device).eval()
    ours = getattr(pipeyard, case.class_name).from_pretrained(folder, torch_dtype=dtype, device=device)
    return reference, ours


def time_call(call: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call takes (CUDA events on GPU, perf_counter on CPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def compare(calls: dict[str, Callable[[], Any]], device: torch.device, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each callable, interleaved so that drift hits all alike."""
    with torch.inference_mode():
        for _ in range(warmup):
            for call in calls.values():
                call()
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(repeats):
            for name, call in calls.items():
                times[name].append(time_call(call, device))
    return {name: statistics.median(values) for name, values in times.items()}


def run_case(case: Case, device: torch.device, dtype: torch.dtype, repeats: int, warmup: int, compile_: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        reference, ours = load_pair(case, device, dtype, folder)
    inputs = case.inputs(device, dtype)
    calls = {
        "diffusers": lambda: getattr(reference, case.method)(**inputs),
        "pipeyard": lambda: getattr(ours, case.method)(**inputs),
    }
    if compile_:
        compiled_ref = torch.compile(getattr(reference, case.method))
        compiled_ours = torch.compile(getattr(ours, case.method))
        calls["diffusers+compile"] = lambda: compiled_ref(**inputs)
        calls["pipeyard+compile"] = lambda: compiled_ours(**inputs)
    medians = compare(calls, device, repeats, warmup)
    line = f"{case.name:<26} " + "  ".join(f"{name} {seconds * 1000:9.2f} ms" for name, seconds in medians.items())
    line += f"  ratio {medians['pipeyard'] / medians['diffusers']:.3f}"
    if compile_:
        line += f"  compiled ratio {medians['pipeyard+compile'] / medians['diffusers+compile']:.3f}"
    print(line, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per model (10 CPU, 30 GPU)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="case names to run")
    parser.add_argument("--no-compile", action="store_true", help="GPU: skip the torch.compile timings")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    cases = cuda_cases() if on_gpu else cpu_cases()
    if args.only:
        cases = [case for case in cases if case.name in args.only]
    dtype = torch.float16 if on_gpu else torch.float32
    repeats = args.repeats or (30 if on_gpu else 10)
    threads = torch.get_num_threads()
    print(f"device {device}, dtype {dtype}, torch {torch.__version__}, threads {threads}, median of {repeats}")
    for case in cases:
        run_case(case, device, dtype, repeats, args.warmup, compile_=on_gpu and not args.no_compile)


if __name__ == "__main__":
    main()
