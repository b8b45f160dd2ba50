"""The shipped text-to-image model (pipeyard/_bundled/t2i_model) and the scenes it was trained on."""

from __future__ import annotations

import fnmatch
import json
import random
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import t2i_scenes  # noqa: E402


@pytest.fixture(scope="module")
def pipe():
    from pipeyard import StableDiffusionPipeline
    from pipeyard.demo_t2i import BUNDLED_T2I_MODEL

    pipe = StableDiffusionPipeline.from_pretrained(BUNDLED_T2I_MODEL)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster on shared cores
    yield
    torch.set_num_threads(threads)


def test_shipped_model_gives_finite_32x32_images_in_a_few_steps(pipe, one_thread):
    import torch

    prompts = ["a big red circle on the left on a white background", "two small blue squares on a black background"]
    images = pipe(prompts, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (2, 32, 32, 3)
    assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1


def test_shipped_model_follows_the_background_word(pipe, one_thread):
    """Trained weights, not random ones: the background the prompt names is the one drawn.

    12 pictures (6 white, 6 black); at least 10 right (chance: 2 % of the time).
    """
    import torch

    shapes = ("a small green circle on the left", "a big red square on the center", "two small blue triangles")
    prompts = [f"{shape} on a {bg} background" for shape in shapes for bg in ("white", "black")] * 2
    images = pipe(prompts, num_inference_steps=10, generator=torch.Generator().manual_seed(0), output_type="np").images
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1).mean(axis=(1, 2))
    right = [(b > 0.5) == ("white" in p) for b, p in zip(border, prompts)]
    assert sum(right) >= 10, list(zip(prompts, border.round(2)))


def test_shipped_model_is_a_small_diffusers_format_stable_diffusion():
    from pipeyard.demo_t2i import BUNDLED_T2I_MODEL

    index = json.loads((BUNDLED_T2I_MODEL / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    files = [p for p in BUNDLED_T2I_MODEL.rglob("*") if p.is_file()]
    weights = {p.parent.name for p in files if p.suffix == ".safetensors"}
    assert weights == {"unet", "vae", "text_encoder"}
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".ckpt", ".pkl")]
    assert sum(p.stat().st_size for p in files) <= 10 * 2**20


def test_every_shipped_model_file_is_in_the_wheels_package_data():
    """pyproject lists each model folder as a package and each of its files matches a package-data pattern."""
    from pipeyard.demo_t2i import BUNDLED_T2I_MODEL

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    core = ROOT / "core"
    for path in (p for p in BUNDLED_T2I_MODEL.rglob("*") if p.is_file()):
        package = ".".join(path.parent.relative_to(core).parts)
        assert package in setuptools["packages"], f"{package} is not in [tool.setuptools] packages"
        patterns = setuptools["package-data"].get(package, [])
        assert any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns), f"{path} is not package data"


def test_tokenizer_knows_every_caption_word_as_one_token(pipe):
    for word in t2i_scenes.WORDS:
        assert len(pipe.tokenizer.tokenize(word)) == 1, word
    longest = max((s.caption for s in t2i_scenes.all_scenes()), key=lambda c: len(c.split()))
    assert len(pipe.tokenizer(longest).input_ids) <= pipe.tokenizer.model_max_length


def test_held_out_captions_are_never_drawn_for_training():
    train, held_out = t2i_scenes.split_scenes()
    assert held_out and not {s.caption for s in train} & {s.caption for s in held_out}
    drawn = t2i_scenes.sample_scenes(train, 500, random.Random(0))
    assert not [s for s in drawn if s.held_out]
    kinds = {len(s.blobs) for s in held_out}
    assert kinds == {1, 2}  # the benchmark sees both one-shape and two-shape captions


def test_detector_reads_drawn_scenes_back():
    rng = random.Random(1)
    scenes = t2i_scenes.sample_scenes(t2i_scenes.all_scenes(), 300, rng)
    right = total = 0
    for scene in scenes:
        for ok, n in t2i_scenes.score(scene, t2i_scenes.detect(t2i_scenes.draw_scene(scene, rng))).values():
            right, total = right + ok, total + n
    assert right / total > 0.99


def test_detector_scores_a_wrong_picture_as_wrong():
    expected = t2i_scenes.Scene("white", (t2i_scenes.Blob("red", "circle", "big", "left"),))
    drawn = t2i_scenes.Scene("black", (t2i_scenes.Blob("blue", "square", "small", "right"),))
    found = t2i_scenes.detect(t2i_scenes.draw_scene(drawn, random.Random(0)))
    assert found == drawn
    assert all(ok == 0 for attribute, (ok, _) in t2i_scenes.score(expected, found).items() if attribute != "count")
