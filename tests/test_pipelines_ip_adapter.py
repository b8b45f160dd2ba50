"""IP-Adapter: processors, image embeddings and loading, against diffusers on a tiny pipeline.

The adapter file is written here in diffusers' layout (random weights), with a tiny CLIP
vision encoder beside it; both pipelines load it with ``load_ip_adapter`` and must give the
same images for the same image prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import assert_images_equal

from pipeyard import StableDiffusionPipeline, errors
from pipeyard.pipelines.stable_diffusion_img2img import StableDiffusionImg2ImgPipeline
from pipeyard.pipelines.stable_diffusion_inpaint import StableDiffusionInpaintPipeline
from pipeyard.models.ip_adapter import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

PROJECTION_DIM = 16


def _adapter_folder(root: Path, unet: Any, seed: int = 0) -> Path:
    """An IP-Adapter folder: ``ip.safetensors`` (diffusers' keys) and ``image_encoder/``."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    tensors = {
        "image_proj.proj.weight": torch.randn(4 * cross, PROJECTION_DIM, generator=generator) * 0.2,
        "image_proj.proj.bias": torch.randn(4 * cross, generator=generator) * 0.1,
        "image_proj.norm.weight": 1 + torch.randn(cross, generator=generator) * 0.1,
        "image_proj.norm.bias": torch.randn(cross, generator=generator) * 0.1,
    }
    cross_layers = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    for k, name in zip(range(1, 2 * len(cross_layers), 2), cross_layers):
        layer = unet.get_submodule(name.removesuffix(".processor"))
        for part in ("to_k_ip", "to_v_ip"):
            tensors[f"ip_adapter.{k}.{part}.weight"] = torch.randn(layer.to_k.out_features, cross, generator=generator) * 0.3
    root.mkdir(parents=True, exist_ok=True)
    save_file(tensors, root / "ip.safetensors")
    config = transformers.CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32,
        patch_size=8, projection_dim=PROJECTION_DIM,
    )
    torch.manual_seed(seed)
    transformers.CLIPVisionModelWithProjection(config).save_pretrained(root / "image_encoder")
    return root


@pytest.fixture(scope="module")
def ip_pair(tiny_sd_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    theirs = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd_folder, safety_checker=None)
    ours = StableDiffusionPipeline.from_pretrained(tiny_sd_folder, safety_checker=None)
    folder = _adapter_folder(tmp_path_factory.mktemp("ip-adapter"), theirs.unet)
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
        pipe.load_ip_adapter(str(folder), subfolder="", weight_name="ip.safetensors")
    return ours, theirs, folder


def _image(seed: int = 0) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8))


def _run(pipe: Any, **kwargs: Any) -> np.ndarray:
    call = {"prompt": "a cat", "num_inference_steps": 3, "output_type": "np", "generator": torch.Generator().manual_seed(0)}
    return pipe(**{**call, **kwargs}).images


@pytest.mark.parametrize("case", [
    {"ip_adapter_image": _image()},
    {"ip_adapter_image": _image(1), "num_images_per_prompt": 2, "guidance_scale": 1.0},
    {"ip_adapter_image": _image(2), "prompt": ["a cat", "a dog"], "negative_prompt": ["blurry", "dark"]},
], ids=["one-image", "two-per-prompt-unguided", "two-prompts"])
def test_ip_adapter_image_prompt_equals_diffusers(ip_pair: tuple[Any, Any, Path], case: dict) -> None:
    ours, theirs, _ = ip_pair
    assert_images_equal(_run(ours, **case), _run(theirs, **case))
    assert {type(p).__name__ for k, p in ours.unet.attn_processors.items() if k.endswith("attn2.processor")} == {
        "IPAdapterAttnProcessor2_0"
    }


def test_ip_adapter_scale_and_precomputed_embeds_equal_diffusers(ip_pair: tuple[Any, Any, Path]) -> None:
    ours, theirs = ip_pair[:2]
    try:
        for pipe in (ours, theirs):
            pipe.set_ip_adapter_scale(0.4)
        embeds_ours = ours.prepare_ip_adapter_image_embeds(_image(3), None, "cpu", 1, True)
        embeds_theirs = theirs.prepare_ip_adapter_image_embeds(_image(3), None, "cpu", 1, True)
        torch.testing.assert_close(embeds_ours[0], embeds_theirs[0], rtol=1e-4, atol=1e-5)
        assert_images_equal(_run(ours, ip_adapter_image_embeds=embeds_ours), _run(theirs, ip_adapter_image_embeds=embeds_theirs))
    finally:
        for pipe in (ours, theirs):
            pipe.set_ip_adapter_scale(1.0)


def test_unet_state_dict_names_the_adapter_weights_as_diffusers(ip_pair: tuple[Any, Any, Path]) -> None:
    ours, theirs = ip_pair[:2]
    assert set(ours.unet.state_dict()) == set(theirs.unet.state_dict())


@pytest.mark.parametrize("processor", ["IPAdapterAttnProcessor", "IPAdapterAttnProcessor2_0"])
@torch.no_grad()
def test_ip_adapter_processors_compute_what_diffusers_computes(ip_pair: tuple[Any, Any, Path], processor: str) -> None:
    from diffusers.models import attention_processor as reference

    ours, theirs = ip_pair[:2]
    name = next(k for k in theirs.unet.attn_processors if k.endswith("attn2.processor")).removesuffix(".processor")
    layer_ours, layer_theirs = ours.unet.get_submodule(name), theirs.unet.get_submodule(name)
    mine = {"IPAdapterAttnProcessor": IPAdapterAttnProcessor, "IPAdapterAttnProcessor2_0": IPAdapterAttnProcessor2_0}
    made = mine[processor](layer_ours.to_k.out_features, layer_ours.to_k.in_features, [4, 4], [0.5, 0.0])
    other = getattr(reference, processor)(layer_theirs.to_k.out_features, layer_theirs.to_k.in_features, [4, 4], [0.5, 0.0])
    torch.manual_seed(3)
    for module in (made, other):
        module.load_state_dict({k: torch.randn_like(v) for k, v in made.state_dict().items()} if module is made else made.state_dict())
    generator = torch.Generator().manual_seed(4)
    hidden = torch.randn(2, 64, layer_ours.to_q.in_features, generator=generator)
    context = (torch.randn(2, 7, layer_ours.to_k.in_features, generator=generator),
               [torch.randn(2, 4, layer_ours.to_k.in_features, generator=generator) for _ in range(2)])
    torch.testing.assert_close(made(layer_ours, hidden, context), other(layer_theirs, hidden, context), rtol=1e-4, atol=1e-5)


def test_ip_adapter_image_without_an_adapter_loaded_is_a_typed_error(tiny_sd_folder: Path) -> None:
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_folder, safety_checker=None)
    with pytest.raises(errors.ComponentError, match="load_ip_adapter"):
        pipe("a cat", num_inference_steps=1, ip_adapter_image=_image(), output_type="np")


def test_unknown_projection_and_hub_names_are_refused(ip_pair: tuple[Any, Any, Path], tmp_path: Path) -> None:
    from safetensors.torch import save_file

    ours = ip_pair[0]
    save_file({"image_proj.latents": torch.zeros(1, 4, 8), "ip_adapter.1.to_k_ip.weight": torch.zeros(2, 2)},
              tmp_path / "plus.safetensors")
    with pytest.raises(errors.UnsupportedFeatureError, match="only the base IP-Adapter image projection"):
        ours.load_ip_adapter(str(tmp_path), subfolder=None, weight_name="plus.safetensors", image_encoder_folder=None)
    with pytest.raises(errors.UnsupportedFeatureError, match="local folder only"):
        ours.load_ip_adapter("h94/IP-Adapter", subfolder="models", weight_name="ip-adapter_sd15.safetensors")
    with pytest.raises(errors.UnsupportedFeatureError, match=r"\.safetensors file"):
        ours.load_ip_adapter(str(tmp_path), subfolder=None, weight_name="ip-adapter_sd15.bin")


def test_unload_ip_adapter_restores_the_plain_unet(tiny_sd_folder: Path, ip_pair: tuple[Any, Any, Path]) -> None:
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    before = _run(pipe)
    pipe.load_ip_adapter(str(ip_pair[2]), subfolder="", weight_name="ip.safetensors")
    pipe.unload_ip_adapter()
    assert pipe.unet.encoder_hid_proj is None
    assert all(p.uses_fast_path() for p in [m for m in pipe.unet.modules() if hasattr(m, "uses_fast_path")])
    assert_images_equal(_run(pipe), before)


# ---------------------------------------------------------------------- image-to-image and inpainting


def _mask(size: int = 16) -> PIL.Image.Image:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[4:12, 2:10] = 255
    return PIL.Image.fromarray(mask, mode="L")


IMAGE_PIPELINES = {
    "img2img": (StableDiffusionImg2ImgPipeline, "StableDiffusionImg2ImgPipeline", {"strength": 0.75}),
    "inpaint": (StableDiffusionInpaintPipeline, "StableDiffusionInpaintPipeline",
                {"mask_image": _mask(), "height": 16, "width": 16, "strength": 1.0}),
}


@pytest.fixture(scope="module", params=sorted(IMAGE_PIPELINES))
def image_ip_pair(request: pytest.FixtureRequest, tiny_sd_folder: Path, ip_pair: tuple[Any, Any, Path]) -> tuple[Any, Any, dict]:
    """pipeyard's and diffusers' img2img (or inpaint) pipeline with the same IP-Adapter loaded."""
    mine, name, call = IMAGE_PIPELINES[request.param]
    ours = mine.from_pretrained(tiny_sd_folder, safety_checker=None)
    theirs = getattr(diffusers, name).from_pretrained(tiny_sd_folder, safety_checker=None)
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
        pipe.load_ip_adapter(str(ip_pair[2]), subfolder="", weight_name="ip.safetensors")
    return ours, theirs, {"image": _image(5).resize((16, 16)), **call}


@pytest.mark.parametrize("case", [
    {"ip_adapter_image": _image()},
    {"ip_adapter_image": _image(1), "num_images_per_prompt": 2, "guidance_scale": 1.0},
    {"ip_adapter_image": _image(2), "prompt": ["a cat", "a dog"], "negative_prompt": ["blurry", "dark"]},
], ids=["one-image", "two-per-prompt-unguided", "two-prompts"])
def test_image_pipelines_ip_adapter_image_prompt_equals_diffusers(image_ip_pair: tuple[Any, Any, dict], case: dict) -> None:
    ours, theirs, call = image_ip_pair
    images = (len(case["prompt"]) if "prompt" in case else 1) * case.get("num_images_per_prompt", 1)
    if "mask_image" not in call and images > 1:  # img2img wants one start image per output image
        call = {**call, "image": [call["image"]] * images}
    mine = _run(ours, **call, **case)
    assert_images_equal(mine, _run(theirs, **call, **case))
    other = {**case, "ip_adapter_image": _image(9)}
    assert np.abs(mine - _run(ours, **call, **other)).max() > 1e-3  # the image prompt reached the UNet


def test_image_pipelines_precomputed_ip_adapter_embeds_equal_diffusers(image_ip_pair: tuple[Any, Any, dict]) -> None:
    ours, theirs, call = image_ip_pair
    embeds = ours.prepare_ip_adapter_image_embeds(_image(3), None, "cpu", 1, True)
    assert_images_equal(_run(ours, ip_adapter_image_embeds=embeds, **call),
                        _run(theirs, ip_adapter_image_embeds=[e.clone() for e in embeds], **call))


@pytest.mark.parametrize("kind", sorted(IMAGE_PIPELINES))
def test_image_pipelines_ip_adapter_inputs_are_checked_with_typed_errors(tiny_sd_folder: Path, kind: str) -> None:
    mine, _, call = IMAGE_PIPELINES[kind]
    pipe = mine.from_pretrained(tiny_sd_folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    call = {"image": _image(5).resize((16, 16)), **call}
    with pytest.raises(errors.ComponentError, match="load_ip_adapter"):
        _run(pipe, ip_adapter_image=_image(), **call)
    with pytest.raises(errors.ConflictingInputsError, match="ip_adapter_image or ip_adapter_image_embeds"):
        _run(pipe, ip_adapter_image=_image(), ip_adapter_image_embeds=[torch.zeros(2, 1, PROJECTION_DIM)], **call)
    with pytest.raises(errors.PipelineInputError, match="must be a list of tensors"):
        _run(pipe, ip_adapter_image_embeds=torch.zeros(2, 1, PROJECTION_DIM), **call)
