"""``pipeyard run``: load a (custom) pipeline, sample, write an image, print timings.

Loading goes through ``DiffusionPipeline.from_pretrained(model, custom_pipeline=...)``, so
the host's resolve / verify / trust steps apply exactly as in Python. Download bars come from
the Hub client, denoising bars from the pipeline's ``progress_bar``. Only this module and
``demo`` import torch, and only inside the command. What is checked before the load and
what ``__call__`` receives is in :mod:`.run_args`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from .. import errors
from .run_args import call_arguments, check_device, image_format

DTYPES = ("float32", "float16", "bfloat16")


@contextmanager
def timed(timings: dict[str, float], step: str) -> Iterator[None]:
    """Record how long the block took under ``step``."""
    start = time.perf_counter()
    yield
    timings[step] = time.perf_counter() - start


def scheduler_names() -> list[str]:
    """Every scheduler class pipeyard exports."""
    import pipeyard

    return [name for name in pipeyard.__all__ if name.endswith("Scheduler")]


def check_scheduler_name(name: str) -> None:
    """Raise :class:`~pipeyard.errors.UnknownSchedulerError` unless pipeyard exports ``name``."""
    if name not in scheduler_names():
        raise errors.UnknownSchedulerError(name, scheduler_names())


def swap_scheduler(pipe: Any, name: str) -> None:
    """Replace ``pipe.scheduler`` by ``pipeyard.<name>`` built from the current config.

    Raises:
        UnknownSchedulerError: ``name`` is not one of pipeyard's schedulers.
    """
    import pipeyard

    check_scheduler_name(name)
    if getattr(pipe, "scheduler", None) is None:
        raise click.UsageError(f"{type(pipe).__name__} has no scheduler to replace; drop --scheduler")
    pipe.scheduler = getattr(pipeyard, name).from_config(pipe.scheduler.config)


def output_images(output: Any) -> list[Any]:
    """PIL images from what the pipeline returned.

    ``.images`` (or the first item of a tuple) may be PIL images, a numpy array or tensor in
    [0, 1]; a bare tensor returned by ``__call__`` is a sample in [-1, 1] (``(N, C, H, W)``).
    """
    import numpy as np
    import torch

    from .. import DiffusionPipeline

    if isinstance(output, torch.Tensor):
        output = ((output.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
        return DiffusionPipeline.numpy_to_pil(output)
    images = output[0] if isinstance(output, tuple) else getattr(output, "images", output)
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    if isinstance(images, np.ndarray):
        return DiffusionPipeline.numpy_to_pil(images)
    if isinstance(images, list) and images and all(hasattr(i, "save") for i in images):
        return images
    raise click.ClickException(
        f"cannot save what the pipeline returned ({type(output).__name__}): expected .images "
        f"(PIL images, numpy array or tensor) or a tensor"
    )


def save_grid(images: list[Any], path: Path, fmt: str = "PNG") -> Path:
    """One image as is, several as a near-square grid; written atomically in ``fmt``."""
    from PIL import Image

    from ..fileio import atomic_replace

    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    grid = Image.new("RGB", (width * columns, height * rows))
    for i, image in enumerate(images):
        grid.paste(image.convert("RGB"), ((i % columns) * width, (i // columns) * height))
    with atomic_replace(path) as tmp:
        grid.save(tmp, format=fmt)
    return path


def load_pipeline(model: str, custom_pipeline: str, revision: str | None, trust_remote_code: bool,
                  dtype: str | None, device: str | None, allow_pickle: bool = False) -> Any:
    """``DiffusionPipeline.from_pretrained(model, custom_pipeline=...)``, then ``.to(device)``."""
    import torch

    from .. import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(
        model, custom_pipeline=custom_pipeline, custom_revision=revision,
        trust_remote_code=trust_remote_code, torch_dtype=getattr(torch, dtype) if dtype else None,
        allow_pickle=allow_pickle,
    )
    return pipe.to(device) if device else pipe


@click.command()
@click.argument("name_or_path")
@click.option("--model", required=True, help="Model folder or Hub repo id (model_index.json).")
@click.option("--prompt", default=None, help="Text prompt, for pipelines that take one.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="num_inference_steps.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--num-images", type=click.IntRange(min=1), default=1, show_default=True,
              help="Images per call (batch_size / num_images_per_prompt); several make a grid.")
@click.option("--scheduler", default=None, help="A pipeyard scheduler class, e.g. EulerDiscreteScheduler.")
@click.option("--dtype", type=click.Choice(DTYPES), default=None, help="torch_dtype of the components.")
@click.option("--device", default=None, help="e.g. cpu, cuda, cuda:1, mps (one this machine has).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("pipeyard-run.png"),
              show_default=True, help="Image file: .png, .jpg/.jpeg or .webp, in an existing folder.")
@click.option("--revision", default=None, help="custom_revision of the custom pipeline.")
@click.option("--trust-remote-code", is_flag=True, help="Run remote code that is not in your trust store.")
@click.option("--allow-pickle", is_flag=True,
              help="Load components whose only weights are pickle .bin files (read with weights_only=True).")
def run(name_or_path: str, model: str, prompt: str | None, steps: int | None, seed: int, num_images: int,
        scheduler: str | None, dtype: str | None, device: str | None, out: Path, revision: str | None,
        trust_remote_code: bool, allow_pickle: bool) -> None:
    """Load NAME_OR_PATH as custom_pipeline over --model, sample, write an image, print timings."""
    fmt = image_format(out)  # everything that can be checked is checked before the slow load
    if device:
        check_device(device)
    if scheduler:
        check_scheduler_name(scheduler)
    timings: dict[str, float] = {}
    with timed(timings, "load"):
        pipe = load_pipeline(model, name_or_path, revision, trust_remote_code, dtype, device, allow_pickle)
        if scheduler:
            swap_scheduler(pipe, scheduler)
    kwargs = call_arguments(pipe, prompt, steps, seed, num_images)
    with timed(timings, "sample"):
        output = pipe(**kwargs)
    with timed(timings, "save"):
        images = output_images(output)
        save_grid(images, out, fmt)
    click.echo(f"pipeline: {type(pipe).__name__}  scheduler: {type(getattr(pipe, 'scheduler', None)).__name__}")
    for step, seconds in timings.items():
        click.echo(f"  {seconds:7.2f} s  {step}")
    click.echo(f"wrote {out} ({len(images)} image(s))")
