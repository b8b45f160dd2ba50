"""StableDiffusionSafetyChecker against diffusers': same weights, same flags, same black images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeyard import StableDiffusionSafetyChecker


@pytest.fixture
def saved_reference(tmp_path):
    """A tiny diffusers safety checker with concept thresholds that flag some images, saved."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker as Reference
    from transformers import CLIPConfig

    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  image_size=30, patch_size=6, projection_dim=16)
    text = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4, projection_dim=16)
    config = CLIPConfig(vision_config=vision, text_config=text, projection_dim=16)
    torch.manual_seed(0)
    reference = Reference(config).eval()
    with torch.no_grad():
        reference.concept_embeds.normal_()
        reference.special_care_embeds.normal_()
        # thresholds between the images' best scores, so that about half of them are flagged
        embeds = reference.visual_projection(reference.vision_model(_clip_input())[1])
        normalize = torch.nn.functional.normalize
        best_concept = (normalize(embeds) @ normalize(reference.concept_embeds).t()).max(dim=1).values
        best_special = (normalize(embeds) @ normalize(reference.special_care_embeds).t()).max(dim=1).values
        reference.concept_embeds_weights.fill_(float(best_concept.median()))
        reference.special_care_embeds_weights.fill_(float(best_special.median()))
    reference.save_pretrained(tmp_path / "safety_checker")
    return reference, tmp_path / "safety_checker"


def _clip_input(batch: int = 8) -> torch.Tensor:
    return torch.randn(batch, 3, 30, 30, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", ["numpy", "torch", "list"])
def test_flags_and_black_images_match_diffusers(saved_reference, kind):
    reference, folder = saved_reference
    ours = StableDiffusionSafetyChecker.from_pretrained(folder).eval()
    clip_input = _clip_input()
    images = np.random.default_rng(0).random((8, 12, 12, 3)).astype(np.float32)
    if kind == "torch":
        images = torch.from_numpy(images)
    elif kind == "list":
        images = [torch.from_numpy(image) for image in images]
    expected_images, expected_flags = reference(clip_input=clip_input, images=_copy(images))
    got_images, got_flags = ours(clip_input=clip_input, images=images)
    assert got_flags == expected_flags
    assert any(got_flags) and not all(got_flags), "fixture thresholds should flag some images, not all"
    for expected, got in zip(expected_images, got_images):
        np.testing.assert_array_equal(np.asarray(expected), np.asarray(got))


def test_weight_names_match_diffusers(saved_reference):
    reference, folder = saved_reference
    ours = StableDiffusionSafetyChecker.from_pretrained(folder)
    assert set(ours.state_dict()) == set(reference.state_dict())


def test_loads_with_torch_dtype(saved_reference):
    _, folder = saved_reference
    ours = StableDiffusionSafetyChecker.from_pretrained(folder, torch_dtype=torch.bfloat16)
    assert ours.dtype == torch.bfloat16
    _, flags = ours(clip_input=_clip_input().to(torch.bfloat16), images=np.zeros((8, 4, 4, 3)))
    assert len(flags) == 8


def test_importing_pipeyard_does_not_import_transformers():
    import subprocess
    import sys

    code = "import sys, pipeyard; pipeyard.UNet2DModel; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _copy(images):
    if isinstance(images, list):
        return [image.clone() for image in images]
    return images.clone() if torch.is_tensor(images) else images.copy()
