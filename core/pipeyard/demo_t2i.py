"""The text-to-image part of ``pipeyard demo``: the bundled tiny Stable Diffusion, shown five ways.

The model (``pipeyard/_bundled/t2i_model``, trained by ``scripts/train_t2i_model.py``) draws
32x32 pictures of one or two coloured shapes from captions such as "a big red circle on the
left on a white background". :func:`run_t2i_demo` copies it into the output folder and writes:

=========================  ================================================================
``t2i_grid.png``           :data:`PROMPTS` through ``StableDiffusionPipeline`` (model_index.json)
``lpw_grid.png``           the same prompts and seeds with emphasis, through the bundled
                           ``lpw_stable_diffusion`` community pipeline
``interpolation.png``      a walk between two (prompt, seed) pairs (``interpolate_stable_diffusion``)
``img2img.png``            a hand-drawn shape, then ``img2img_stable_diffusion`` turning it towards a prompt
``schedulers.png``         one prompt and seed through several schedulers (:data:`SCHEDULERS`)
=========================  ================================================================

Every tile is scaled up :data:`TILE_SCALE` times (nearest neighbour).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .demo import DemoReport, _save_grid, _seed, _timed

#: The trained text-to-image folder shipped with the package (see ``scripts/train_t2i_model.py``).
BUNDLED_T2I_MODEL = Path(__file__).resolve().parent / "_bundled" / "t2i_model"
#: The model draws 32x32 pictures; the grids show them 4x larger.
TILE_SCALE = 4
#: The prompt grid, one tile per prompt.
PROMPTS = (
    "a big red circle on the left on a white background",
    "a small blue square on the top on a white background",
    "a big yellow triangle on the center on a black background",
    "a small green circle on the bottom on a black background",
    "a big blue circle on the left and a small red square on the right on a white background",
    "a small yellow square on the left and a big green triangle on the right on a black background",
    "two big red triangles on a white background",
    "two small blue circles on a black background",
)
#: :data:`PROMPTS` with emphasis on a word of each, for the prompt-weighting pipeline
WEIGHTED_PROMPTS = (
    "a big (red:1.3) circle on the left on a white background",
    "a small (blue:1.3) square on the top on a white background",
    "a big (yellow:1.3) triangle on the center on a black background",
    "a small (green:1.3) circle on the bottom on a black background",
    "a big (blue:1.3) circle on the left and a small red square on the right on a white background",
    "a small (yellow:1.3) square on the left and a big green triangle on the right on a black background",
    "two big (red:1.3) triangles on a white background",
    "two small (blue:1.3) circles on a black background",
)
#: The two ends of the interpolation walk: (prompt, seed).
WALK = (("a big red circle on the left on a white background", 1),
        ("a big blue square on the right on a white background", 2))
#: Schedulers compared on one prompt and seed (all configured from the model's own scheduler config).
SCHEDULERS = (
    "DDIMScheduler", "LMSDiscreteScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler", "UniPCMultistepScheduler",
)
#: What the img2img step asks for, starting from :func:`hand_drawn_shape`.
IMG2IMG_PROMPT = "a big yellow triangle on the center on a white background"


def copy_t2i_model(folder: Path) -> None:
    """Copy the bundled text-to-image model into ``folder`` (replacing what is there).

    Raises:
        FileNotFoundError: the installation lacks ``pipeyard/_bundled/t2i_model``.
    """
    if not (BUNDLED_T2I_MODEL / "model_index.json").is_file():
        raise FileNotFoundError(
            f"the bundled text-to-image model is missing from {BUNDLED_T2I_MODEL}; reinstall pipeyard"
        )
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(BUNDLED_T2I_MODEL, folder)


def hand_drawn_shape(size: int = 32) -> Any:
    """A wobbly yellow triangle-ish polygon on white, as a quick mouse drawing would be (a PIL image)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (242, 242, 242))
    scale = size / 32
    points = [(16, 7), (19, 12), (24, 21), (25, 24), (15, 23), (7, 25), (11, 16)]
    ImageDraw.Draw(image).polygon([(x * scale, y * scale) for x, y in points], fill=(230, 200, 40))
    return image


def run_t2i_demo(out: Path, report: DemoReport, seed: int, echo: Callable[[str], Any], steps: int = 20) -> None:
    """Write the five text-to-image pictures into ``out``, timing each step into ``report``."""
    from pipeyard import DiffusionPipeline

    model = out / "t2i-model"
    with _timed(report, "copy the bundled text-to-image model"):
        copy_t2i_model(model)
    with _timed(report, "load StableDiffusionPipeline (model_index.json)"):
        pipe = DiffusionPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    with _timed(report, f"text-to-image: {len(PROMPTS)} prompts, {steps} steps"):
        images = pipe(list(PROMPTS), num_inference_steps=steps, generator=_seed(seed)).images
    report.images.append(_save_grid(images, out / "t2i_grid.png", scale=TILE_SCALE))
    _run_community(report, model, out, seed, steps)
    _run_schedulers(report, pipe, out, seed, steps)
    for i, prompt in enumerate(PROMPTS):
        echo(f"t2i_grid.png tile {i + 1}: {prompt!r}")


def _run_community(report: DemoReport, model: Path, out: Path, seed: int, steps: int) -> None:
    """Prompt weighting, interpolation and img2img: three bundled community pipelines."""
    from pipeyard import DiffusionPipeline

    with _timed(report, "load through custom_pipeline='lpw_stable_diffusion'"):
        lpw = DiffusionPipeline.from_pretrained(model, custom_pipeline="lpw_stable_diffusion")
    lpw.set_progress_bar_config(disable=True)
    with _timed(report, f"prompt weighting: {len(WEIGHTED_PROMPTS)} prompts, {steps} steps"):
        images = lpw(list(WEIGHTED_PROMPTS), num_inference_steps=steps, generator=_seed(seed)).images
    report.images.append(_save_grid(images, out / "lpw_grid.png", scale=TILE_SCALE))

    with _timed(report, "load through custom_pipeline='interpolate_stable_diffusion'"):
        walker = DiffusionPipeline.from_pretrained(model, custom_pipeline="interpolate_stable_diffusion")
    walker.set_progress_bar_config(disable=True)
    with _timed(report, f"interpolation: 6 frames, {steps} steps each"):
        frames = walker.walk(*WALK, num_frames=6, num_inference_steps=steps)
    report.images.append(_save_grid(frames, out / "interpolation.png", columns=6, scale=TILE_SCALE))

    with _timed(report, "load through custom_pipeline='img2img_stable_diffusion'"):
        img2img = DiffusionPipeline.from_pretrained(model, custom_pipeline="img2img_stable_diffusion")
    img2img.set_progress_bar_config(disable=True)
    sketch = hand_drawn_shape()
    with _timed(report, f"img2img of a hand-drawn shape: strength 0.6, {steps} steps"):
        result = img2img(IMG2IMG_PROMPT, image=sketch, strength=0.6, num_inference_steps=steps,
                         generator=_seed(seed)).images[0]
    report.images.append(_save_grid([sketch, result], out / "img2img.png", columns=2, scale=TILE_SCALE))


def _run_schedulers(report: DemoReport, pipe: Any, out: Path, seed: int, steps: int) -> None:
    """One prompt and seed through each of :data:`SCHEDULERS` (the pipeline's scheduler is restored)."""
    import pipeyard

    original, images = pipe.scheduler, []
    try:
        with _timed(report, f"scheduler comparison: {len(SCHEDULERS)} schedulers, {steps} steps each"):
            for name in SCHEDULERS:
                pipe.scheduler = getattr(pipeyard, name).from_config(original.config)
                images += pipe(PROMPTS[4], num_inference_steps=steps, generator=_seed(seed)).images
    finally:
        pipe.scheduler = original
    report.images.append(_save_grid(images, out / "schedulers.png", columns=len(SCHEDULERS), scale=TILE_SCALE))
