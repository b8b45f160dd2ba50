"""The main job behind ``make demo`` / ``pipeyard demo``.

1. build a small unconditional model folder (a UNet2DModel and a DDPMScheduler, seeded random
   weights) in diffusers' layout — or reuse it when it is already there;
2. load it back with ``DiffusionPipeline.from_pretrained`` (the class comes from
   model_index.json) and sample a grid of images;
3. load the same folder through the bundled community pipeline ``one_step_unet``
   (``custom_pipeline="one_step_unet"``: resolved, verified, trust-checked, imported);
4. serve the folder as a Hub repository on 127.0.0.1 (:mod:`pipeyard.demo_hub`) and load it
   again by repo id, downloading into a fresh Hub cache;
5. write PNGs and print where they are and how long each step took.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class DemoReport:
    """What the demo wrote and how long each step took (seconds)."""

    model_dir: Path
    images: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


@contextmanager
def _timed(report: DemoReport, step: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    report.timings[step] = time.perf_counter() - start


def build_demo_model(folder: Path, seed: int = 0) -> None:
    """Save a small random DDPM pipeline (UNet2DModel + DDPMScheduler) to ``folder``."""
    import torch

    from pipeyard import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(folder)


def run_demo(
    out_dir: str | Path = "demo-output",
    steps: int = 25,
    batch_size: int = 4,
    seed: int = 0,
    echo: Callable[[str], Any] = print,
) -> DemoReport:
    """Run the main job; returns a :class:`DemoReport` (paths and timings)."""
    import torch

    from pipeyard import DiffusionPipeline

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = DemoReport(out / "model")
    with _timed(report, "build model folder"):
        if not (report.model_dir / "model_index.json").is_file():
            build_demo_model(report.model_dir, seed)
    with _timed(report, "load pipeline (model_index.json)"):
        pipe = DiffusionPipeline.from_pretrained(report.model_dir)
    with _timed(report, f"sample {batch_size} images, {steps} steps"):
        images = pipe(batch_size=batch_size, num_inference_steps=steps,
                      generator=torch.Generator().manual_seed(seed)).images
    report.images.append(_save_grid(images, out / "ddpm_grid.png"))
    with _timed(report, "load through custom_pipeline='one_step_unet'"):
        custom = DiffusionPipeline.from_pretrained(report.model_dir, custom_pipeline="one_step_unet")
    with _timed(report, "one_step_unet: one forward + one step"):
        sample = custom(batch_size=batch_size, generator=torch.Generator().manual_seed(seed))
    pil = DiffusionPipeline.numpy_to_pil(((sample.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).float().numpy())
    report.images.append(_save_grid(pil, out / "one_step_unet_grid.png"))
    with _timed(report, "load from a Hub-style repo on 127.0.0.1 (download + build)"):
        from_hub = _load_from_local_hub(report.model_dir, out / "hub-cache")
    echo(f"loaded {type(from_hub).__name__} from Hub repo {DEMO_REPO_ID!r} (served locally)")
    _print_report(report, type(pipe).__name__, type(custom).__name__, echo)
    return report


#: The repo id the demo serves its model folder under.
DEMO_REPO_ID = "demo/tiny-ddpm"


def _load_from_local_hub(model_dir: Path, cache: Path) -> Any:
    """Serve ``model_dir`` as a Hub repo and load it through ``custom_pipeline``."""
    import os
    import shutil

    from pipeyard import DiffusionPipeline

    from .demo_hub import DemoHub

    shutil.rmtree(cache, ignore_errors=True)  # a cold cache: the files really travel
    saved = {key: os.environ.get(key) for key in ("HF_ENDPOINT", "HF_HUB_CACHE")}
    with DemoHub({DEMO_REPO_ID: model_dir}) as hub:
        os.environ.update(HF_ENDPOINT=hub.endpoint, HF_HUB_CACHE=str(cache))
        try:
            return DiffusionPipeline.from_pretrained(DEMO_REPO_ID, custom_pipeline="one_step_unet")
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _save_grid(images: list[Any], path: Path, columns: int = 4) -> Path:
    from PIL import Image

    width, height = images[0].size
    rows = -(-len(images) // columns)
    grid = Image.new("RGB", (width * min(columns, len(images)), height * rows))
    for i, image in enumerate(images):
        grid.paste(image.convert("RGB"), ((i % columns) * width, (i // columns) * height))
    grid.save(path)
    return path


def _print_report(report: DemoReport, builtin: str, custom: str, echo: Callable[[str], Any]) -> None:
    echo(f"model folder: {report.model_dir}")
    echo(f"built-in pipeline: {builtin}; custom pipeline: {custom}")
    for step, seconds in report.timings.items():
        echo(f"  {seconds:7.2f} s  {step}")
    for path in report.images:
        echo(f"wrote {path}")
