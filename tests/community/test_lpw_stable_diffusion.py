"""The ``lpw_stable_diffusion`` community pipeline on tiny random SD components."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from pipeyard import DiffusionPipeline


@pytest.fixture(scope="module")
def pipes(tiny_sd_folder):
    kwargs = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    custom = DiffusionPipeline.from_pretrained(tiny_sd_folder, custom_pipeline="lpw_stable_diffusion", **kwargs)
    plain = DiffusionPipeline.from_pretrained(tiny_sd_folder, **kwargs)
    return custom, plain


def _run(pipe, prompt, **kwargs):
    return pipe(prompt, num_inference_steps=2, guidance_scale=2.0, generator=torch.Generator().manual_seed(0),
                output_type="np", **kwargs).images


def test_the_emphasis_syntax_parses_to_weights(pipes):
    parse = sys.modules[type(pipes[0]).__module__].parse_prompt_attention
    assert parse("a (cat:1.5) and [dog]") == [("a ", 1.0), ("cat", 1.5), (" and ", 1.0), ("dog", 1 / 1.1)]
    assert parse("((big)) cat") == [("big", pytest.approx(1.21)), (" cat", 1.0)]
    assert parse(r"a \(literal\) (unclosed") == [("a (literal) ", 1.0), ("unclosed", 1.1)]
    assert parse("ratio 3:2") == [("ratio 3:2", 1.0)]


def test_a_short_plain_prompt_gives_the_plain_pipelines_image(pipes):
    custom, plain = pipes
    assert type(custom).__name__ == "LongPromptWeightingStableDiffusionPipeline"
    ours = _run(custom, "a photo of a cat", negative_prompt="blurry")
    np.testing.assert_array_equal(ours, _run(plain, "a photo of a cat", negative_prompt="blurry"))


def test_words_past_77_tokens_are_read_in_a_second_window(pipes):
    custom, plain = pipes
    head = "a photo of a cat " * 20  # 100 tokens
    embeds, negative = custom.long_prompt_embeddings([head + "dog"], [""])
    assert embeds.shape == (1, 2 * 77, 32) and negative.shape == embeds.shape
    # the plain pipeline truncates: the tail word changes nothing; here it changes the image
    assert np.array_equal(_run(plain, head + "dog"), _run(plain, head + "horse"))
    assert not np.array_equal(_run(custom, head + "dog"), _run(custom, head + "horse"))


def test_a_weight_scales_its_tokens_and_keeps_the_mean(pipes):
    custom, _ = pipes
    (plain_embeds, _), (weighted, _) = (custom.long_prompt_embeddings([p], [""]) for p in ("a cat", "a (cat:1.5)"))
    assert weighted.shape == plain_embeds.shape == (1, 77, 32)
    torch.testing.assert_close(weighted.mean(), plain_embeds.mean())
    ratio = weighted[0, 2].norm() / plain_embeds[0, 2].norm()  # BOS, "a", "cat"
    neighbour = weighted[0, 1].norm() / plain_embeds[0, 1].norm()
    assert float(ratio / neighbour) == pytest.approx(1.5, rel=1e-4)
    assert not np.array_equal(_run(custom, "a cat"), _run(custom, "a (cat:1.5)"))


@pytest.mark.parametrize("prompt", [
    "(cat:0.5) " + "a house and a tree " * 5,
    "(dog:1.3) " + "a house and a tree " * 5,
    "(big:1.1) a house and a tree ",
])
def test_weighted_prompts_whose_mean_is_near_zero_stay_finite(pipes, prompt):
    """The tiny text encoder's embeddings average to ~0: restoring the mean divided by ~0 (NaN)."""
    custom, _ = pipes
    embeds, _ = custom.long_prompt_embeddings([prompt], [""])
    assert torch.isfinite(embeds).all() and embeds.abs().max() < 100
    assert np.isfinite(_run(custom, prompt)).all()
