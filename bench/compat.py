"""diffusers-written community pipelines: do they run on pipeyard, and give diffusers' output?

    .venv/bin/python bench/compat.py DIR [--only NAME] [--steps 2]

For each ``*.py`` pipeline file in DIR, both libraries load it as ``custom_pipeline`` over the
same small random components (saved once by diffusers) and call it with the same arguments and
seeds, each in a fresh process: diffusers in one, pipeyard in one where ``import diffusers``
fails (what a user without diffusers has). One line per file — ``equal``, the max abs
difference, or the error — then ``N/M equal`` and the time ratios pipeyard / diffusers of
"load" (import of the library + ``from_pretrained``) and "call" (the pipeline call alone; its
arguments are built before the clock starts). diffusers is a benchmark-time dependency only.

The arguments come from the pipeline's ``__call__`` parameters (a prompt, a picture for
``image``-like inputs, a mask for ``mask_image``, 2 steps, a seeded generator, numpy output);
the components from its ``__init__`` (Stable Diffusion parts, or a UNet2DModel + scheduler).
Two corpus families need other components than the tiny SD: a 9-channel UNet for inpainting,
a UNet with a guidance embedding for latent consistency; :data:`VARIANTS` names them.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROMPT = "a photo of a cat"
SIZE = 64  # pixels; the tiny VAE downsamples by 8 like SD's (files hard-code 8): 8x8 latents
#: file stem -> component variant, where the default (by __init__ parameters) is not enough
VARIANTS = {"img2img_inpainting": "sd_inpaint", "latent_consistency_txt2img": "sd_lcm"}
#: file stem -> call arguments a file needs beyond the generic ones (documented in the file)
CALL_EXTRAS: dict[str, dict[str, Any]] = {
    "pipeline_prompt2prompt": {
        "prompt": ["a photo of a cat", "a photo of a dog"],
        "cross_attention_kwargs": {"edit_type": "replace", "n_self_replace": 0.4, "n_cross_replace": 0.4},
    },
}


# ---------------------------------------------------------------------- components (diffusers)


def _save_sd(folder: Path, in_channels: int = 4, time_cond_proj_dim: int | None = None) -> None:
    import torch
    from pipelines import _byte_level_tokenizer as byte_level_tokenizer  # bench/pipelines.py
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=SIZE // 8, in_channels=in_channels,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
        time_cond_proj_dim=time_cond_proj_dim,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 16, 32, 32), latent_channels=4, sample_size=SIZE, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    text = CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=3,
                          vocab_size=1000, projection_dim=32, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                  image_size=32, patch_size=4, projection_dim=32)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=CLIPTextModel(text).eval(), tokenizer=byte_level_tokenizer(folder.parent / "_tok"), unet=unet,
        scheduler=PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False),
        safety_checker=StableDiffusionSafetyChecker(CLIPConfig(text_config=text.to_dict(), vision_config=vision,
                                                               projection_dim=32)).eval(),
        feature_extractor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
    )
    pipe.save_pretrained(folder, safe_serialization=True)


def _save_unet2d(folder: Path) -> None:
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=SIZE // 4, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(folder)


def _quiet() -> None:
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    warnings.filterwarnings("ignore")
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def build_components(root: Path) -> dict[str, Path]:
    _quiet()
    builders = {
        "sd": lambda f: _save_sd(f), "sd_inpaint": lambda f: _save_sd(f, in_channels=9),
        "sd_lcm": lambda f: _save_sd(f, time_cond_proj_dim=256), "unet2d": _save_unet2d,
    }
    folders = {}
    for name, build in builders.items():
        folders[name] = root / name
        build(folders[name])
    return folders


# ---------------------------------------------------------------------- what to pass


def pipeline_signature(path: Path) -> tuple[list[str], list[str]]:
    """(__init__ parameters, __call__ parameters) of the file's last class with both."""
    found: tuple[list[str], list[str]] = ([], [])
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if not isinstance(node, ast.ClassDef):
            continue
        methods = {m.name: [a.arg for a in m.args.args[1:]] for m in node.body if isinstance(m, ast.FunctionDef)}
        if "__init__" in methods and "__call__" in methods and any("Pipeline" in ast.unparse(b) for b in node.bases):
            found = (methods["__init__"], methods["__call__"])
    return found


def variant_of(path: Path) -> str:
    init, _ = pipeline_signature(path)
    return VARIANTS.get(path.stem, "sd" if "text_encoder" in init else "unet2d")


def call_arguments(file: Path, steps: int) -> dict[str, Any]:
    import numpy as np
    import torch
    from PIL import Image

    call = pipeline_signature(file)[1]
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    inner = Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8), mode="RGBA")
    mask = Image.fromarray(((rng.random((SIZE, SIZE)) > 0.5) * 255).astype(np.uint8))
    offered = {
        "prompt": PROMPT, "num_inference_steps": steps, "height": SIZE, "width": SIZE,
        "generator": torch.Generator().manual_seed(0), "output_type": "np", "image": picture,
        "ref_image": picture, "inner_image": inner, "mask_image": mask, "batch_size": 1,
    }
    arguments = {name: value for name, value in offered.items() if name in call}
    return {**arguments, **CALL_EXTRAS.get(file.stem, {})}


def file_scheduler_class(file: Path) -> str | None:
    """A scheduler class the file defines itself (it expects one of those, not the repo's)."""
    for node in ast.parse(file.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef) and any("SchedulerMixin" in ast.unparse(b) for b in node.bases):
            return node.name
    return None


def as_array(output: Any) -> Any:
    import numpy as np
    import torch

    for attribute in ("images", "sample"):
        if hasattr(output, attribute):
            output = getattr(output, attribute)
            break
    if isinstance(output, tuple):
        output = output[0]
    if isinstance(output, list) and output and not isinstance(output[0], (int, float)):
        output = np.stack([np.asarray(o, dtype=np.float32) for o in output])
    if isinstance(output, torch.Tensor):
        output = output.detach().float().cpu().numpy()
    return np.asarray(output, dtype=np.float32)


# ---------------------------------------------------------------------- one side, in its own process


class _NoDiffusers:
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] == "diffusers":
            raise ImportError("diffusers is not installed in this process")


def worker(library: str, file: Path, model: Path, steps: int, out: Path) -> None:
    import numpy as np

    started = time.perf_counter()  # import + load: pipeyard imports its runtime lazily, on load
    if library == "pipeyard":
        sys.meta_path.insert(0, _NoDiffusers())  # type: ignore[arg-type]
        from pipeyard import DiffusionPipeline
    else:
        from diffusers import DiffusionPipeline
        from diffusers.utils import logging

        logging.set_verbosity_error()
    # a local file the caller names: pipeyard runs it as such; diffusers asks for the flag
    extra = {} if library == "pipeyard" else {"trust_remote_code": True}
    pipe = DiffusionPipeline.from_pretrained(str(model), custom_pipeline=str(file), **extra)
    loaded = time.perf_counter()
    pipe.set_progress_bar_config(disable=True)
    own_scheduler = file_scheduler_class(file)
    if own_scheduler is not None:  # e.g. IADB, LCM: built with its defaults, as their examples do
        pipe.scheduler = getattr(sys.modules[type(pipe).__module__], own_scheduler)()
    import torch

    # the arguments are built outside the timed call: building them imports PIL / numpy.random,
    # which diffusers has imported while loading and pipeyard (lazy) would pay inside "call"
    arguments = call_arguments(file, steps)
    torch.manual_seed(0)  # files that draw noise from the global generator (LCM) get the same draws
    called = time.perf_counter()
    output = pipe(**arguments)
    done = time.perf_counter()
    np.save(out.with_suffix(".npy"), as_array(output))
    out.with_suffix(".json").write_text(json.dumps({"load": loaded - started, "call": done - called}))


def run_side(library: str, file: Path, model: Path, steps: int, out: Path) -> tuple[Any, dict[str, float] | str]:
    import numpy as np

    command = [sys.executable, __file__, "--worker", library, str(file), str(model), str(steps), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return None, (lines[-1] if lines else f"exit {done.returncode}")[:300]
    return np.load(out.with_suffix(".npy")), json.loads(out.with_suffix(".json").read_text())


# ---------------------------------------------------------------------- the table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--only", default=None, help="one file stem")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)
    files = sorted(p for p in args.folder.glob("*.py") if args.only in (None, p.stem))
    ratios: dict[str, list[float]] = {"load": [], "call": []}
    equal = 0
    with tempfile.TemporaryDirectory() as tmp:
        models = build_components(Path(tmp) / "models")
        for file in files:
            results = {lib: run_side(lib, file, models[variant_of(file)], args.steps, Path(tmp) / f"{file.stem}.{lib}")
                       for lib in ("diffusers", "pipeyard")}
            (theirs, their_times), (ours, our_times) = results["diffusers"], results["pipeyard"]
            if isinstance(their_times, str):
                print(f"{file.name:40s} diffusers fails: {their_times}")
                continue
            if isinstance(our_times, str):
                print(f"{file.name:40s} pipeyard fails: {our_times}")
                continue
            diff = float(abs(theirs - ours).max()) if theirs.shape == ours.shape else float("inf")
            same = diff <= args.tolerance
            equal += same
            for step in ratios:
                ratios[step].append(our_times[step] / their_times[step])
            verdict = "equal" if same else "DIFFERENT"
            print(f"{file.name:40s} {verdict:9s} max diff {diff:.2e}  load x{ratios['load'][-1]:.2f}  "
                  f"call x{ratios['call'][-1]:.2f}")
    print(f"{equal}/{len(files)} equal")
    for step, values in ratios.items():
        if values:
            print(f"median {step} time pipeyard / diffusers: {statistics.median(values):.2f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]), Path(sys.argv[6]))
    else:
        raise SystemExit(main())
