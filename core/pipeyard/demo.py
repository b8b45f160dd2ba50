"""The main job behind ``make demo`` / ``pipeyard demo``.

1. copy the small trained model that ships inside the package (``pipeyard/_bundled/demo_model``:
   a UNet2DModel and a DDPMScheduler in diffusers' layout, trained on coloured circles, squares
   and triangles by ``scripts/train_demo_model.py``) into the output folder;
2. load it through the bundled community pipeline ``ddim_noise_comparative_analysis``
   (``custom_pipeline=...``: resolved, verified, trust-checked, imported) and sample a grid of
   shapes with DDIM — ``demo_grid.png``;
3. load it with ``DiffusionPipeline.from_pretrained`` (the class comes from model_index.json:
   a DDPMPipeline) and sample a few images with DDPM;
4. load it through the community pipeline ``one_step_unet`` (one forward, one step);
4b. show the bundled text-to-image model (``pipeyard/_bundled/t2i_model``, a tiny Stable
   Diffusion): a prompt grid, prompt weighting, an interpolation strip, img2img of a
   hand-drawn shape and a scheduler comparison (:mod:`pipeyard.demo_t2i`);
5. serve the folder as a Hub repository on 127.0.0.1 (:mod:`pipeyard.demo_hub`) and load it
   again by repo id, downloading into a fresh Hub cache;
6. write PNGs and print where they are and how long each step took. No network is used.
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
    custom: str = ""


@contextmanager
def _timed(report: DemoReport, step: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    report.timings[step] = time.perf_counter() - start


#: The trained model folder shipped with the package (see ``scripts/train_demo_model.py``).
BUNDLED_MODEL = Path(__file__).resolve().parent / "_bundled" / "demo_model"
#: Grid tiles are scaled up by this factor (nearest neighbour): the model draws 16x16 images.
TILE_SCALE = 4


def copy_demo_model(folder: Path) -> None:
    """Copy the bundled trained model into ``folder`` (replacing what is there).

    Raises:
        FileNotFoundError: the installation lacks ``pipeyard/_bundled/demo_model``.
    """
    import shutil

    if not (BUNDLED_MODEL / "model_index.json").is_file():
        raise FileNotFoundError(f"the bundled demo model is missing from {BUNDLED_MODEL}; reinstall pipeyard")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(BUNDLED_MODEL, folder)


def run_demo(
    out_dir: str | Path = "demo-output",
    steps: int = 50,
    batch_size: int = 16,
    seed: int = 0,
    echo: Callable[[str], Any] = print,
    t2i_steps: int = 20,
) -> DemoReport:
    """Run the main job; returns a :class:`DemoReport` (paths and timings).

    Args:
        out_dir: folder for the copied model, the Hub cache and the PNGs.
        steps: DDIM steps of the grid (the DDPM check runs at most 4 images with as many steps).
        batch_size: images in the grid.
        seed: seeds every sampler.
        echo: where the report lines go.
        t2i_steps: steps of each text-to-image picture (:mod:`pipeyard.demo_t2i`).
    """
    with _one_torch_thread():
        return _run_steps(Path(out_dir), steps, batch_size, seed, echo, t2i_steps)


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the setting.

    The demo's tensors are tiny: on two cores shared with other work, a second OpenMP thread
    mostly waits for the busy core (measured: 0.1 s per UNet call on one thread, 0.4-2 s on two).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_steps(
    out: Path, steps: int, batch_size: int, seed: int, echo: Callable[[str], Any], t2i_steps: int = 20
) -> DemoReport:
    from pipeyard import DiffusionPipeline

    out.mkdir(parents=True, exist_ok=True)
    report = DemoReport(out / "model")
    with _timed(report, "copy the bundled model"):
        copy_demo_model(report.model_dir)
    with _timed(report, "load through custom_pipeline='ddim_noise_comparative_analysis'"):
        ddim = DiffusionPipeline.from_pretrained(report.model_dir, custom_pipeline="ddim_noise_comparative_analysis")
    with _timed(report, f"DDIM: sample {batch_size} images, {steps} steps"):
        images = ddim(batch_size=batch_size, num_inference_steps=steps, generator=_seed(seed)).images
    report.images.append(_save_grid(images, out / "demo_grid.png"))
    with _timed(report, "load pipeline (model_index.json)"):
        pipe = DiffusionPipeline.from_pretrained(report.model_dir)
    with _timed(report, f"DDPM: sample {min(batch_size, 4)} images, {steps} steps"):
        images = pipe(batch_size=min(batch_size, 4), num_inference_steps=steps, generator=_seed(seed)).images
    report.images.append(_save_grid(images, out / "ddpm_grid.png"))
    _run_one_step_unet(report, out, batch_size, seed)
    from .demo_t2i import run_t2i_demo

    run_t2i_demo(out, report, seed, echo, t2i_steps)
    _run_hub_part(report, out, echo)
    _print_report(report, type(pipe).__name__, [type(ddim).__name__, report.custom], echo)
    return report


def _seed(seed: int) -> Any:
    import torch

    return torch.Generator().manual_seed(seed)


def _run_one_step_unet(report: DemoReport, out: Path, batch_size: int, seed: int) -> None:
    """Load and run ``one_step_unet`` (one forward + one step: a noisy image, by design)."""
    from pipeyard import DiffusionPipeline

    with _timed(report, "load through custom_pipeline='one_step_unet'"):
        custom = DiffusionPipeline.from_pretrained(report.model_dir, custom_pipeline="one_step_unet")
    with _timed(report, "one_step_unet: one forward + one step"):
        sample = custom(batch_size=min(batch_size, 4), generator=_seed(seed))
    pil = DiffusionPipeline.numpy_to_pil(((sample.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).float().numpy())
    report.images.append(_save_grid(pil, out / "one_step_unet_grid.png"))
    report.custom = type(custom).__name__


#: The repo id the demo serves its model folder under.
DEMO_REPO_ID = "demo/tiny-ddpm"


def _run_hub_part(report: DemoReport, out: Path, echo: Callable[[str], Any]) -> None:
    """Load the model from a Hub repo served on 127.0.0.1, unless offline mode forbids requests."""
    from . import constants

    if constants.is_offline():
        echo("skipped: loading from a Hub-style repo on 127.0.0.1 (offline mode is on: "
             "PIPEYARD_OFFLINE or HF_HUB_OFFLINE; unset it to run this part)")
        return
    with _timed(report, "load from a Hub-style repo on 127.0.0.1 (download + build)"):
        from_hub = _load_from_local_hub(report.model_dir, out / "hub-cache")
    echo(f"loaded {type(from_hub).__name__} from Hub repo {DEMO_REPO_ID!r} (served locally)")


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


def _save_grid(images: list[Any], path: Path, columns: int = 4, scale: int = TILE_SCALE) -> Path:
    """Paste ``images`` into a grid, each scaled up ``scale`` times (nearest neighbour)."""
    from PIL import Image

    images = [image.resize((image.width * scale, image.height * scale), Image.NEAREST) for image in images]
    width, height = images[0].size
    rows = -(-len(images) // columns)
    grid = Image.new("RGB", (width * min(columns, len(images)), height * rows))
    for i, image in enumerate(images):
        grid.paste(image.convert("RGB"), ((i % columns) * width, (i // columns) * height))
    grid.save(path)
    return path


def _print_report(report: DemoReport, builtin: str, custom: list[str], echo: Callable[[str], Any]) -> None:
    echo(f"model folder: {report.model_dir} (copied from {BUNDLED_MODEL})")
    echo(f"built-in pipeline: {builtin}; custom pipelines: {', '.join(custom)}")
    for step, seconds in report.timings.items():
        echo(f"  {seconds:7.2f} s  {step}")
    for path in report.images:
        echo(f"wrote {path}")
