"""UNet2DConditionModel against diffusers (SD 1.x and 2.x families, tiny widths)."""

from __future__ import annotations

import pytest
import torch

from pipeyard import UNet2DConditionModel, UNet2DConditionOutput

SD1 = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
    norm_num_groups=8, cross_attention_dim=24, attention_head_dim=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
)

CONFIGS = {
    "sd1": SD1,
    # SD 2: linear projections, per-block head counts, upcast attention
    "sd2": {**SD1, "attention_head_dim": (2, 4), "use_linear_projection": True, "upcast_attention": True},
    "only_cross_deep_transformers": {**SD1, "only_cross_attention": True, "transformer_layers_per_block": 2},
    "per_block_lists": {
        **SD1, "block_out_channels": (16, 32, 32), "norm_num_groups": 16, "layers_per_block": (1, 2, 1),
        "cross_attention_dim": (24, 24, 24), "only_cross_attention": (False, True, False),
        "transformer_layers_per_block": (1, 2, 1), "attention_head_dim": (2, 4, 4),
        "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        "flip_sin_to_cos": False, "freq_shift": 1, "center_input_sample": True, "mid_block_scale_factor": 0.5,
    },
    "class_embeds_no_mid_block": {**SD1, "num_class_embeds": 5, "mid_block_type": None},
}


def _inputs(config: dict, batch: int = 2) -> dict:
    generator = torch.Generator().manual_seed(0)
    cross = config["cross_attention_dim"]
    cross = cross[0] if isinstance(cross, tuple) else cross
    inputs = {
        "sample": torch.randn(batch, 4, 16, 16, generator=generator),
        "timestep": torch.tensor([10, 900][:batch]),
        "encoder_hidden_states": torch.randn(batch, 7, cross, generator=generator),
    }
    if config.get("num_class_embeds"):
        inputs["class_labels"] = torch.tensor([1, 4][:batch])
    return inputs


def _pair(oracle, config: dict, **load_kwargs):
    import diffusers

    torch.manual_seed(0)
    reference = diffusers.UNet2DConditionModel(**config).eval()
    folder = oracle.save(reference)
    ours = UNet2DConditionModel.from_pretrained(folder, **load_kwargs)
    if "torch_dtype" in load_kwargs:
        reference = diffusers.UNet2DConditionModel.from_pretrained(folder, torch_dtype=load_kwargs["torch_dtype"])
    return reference.eval(), ours


@pytest.mark.parametrize("name", sorted(CONFIGS))
@torch.no_grad()
def test_forward_matches_diffusers_in_float32(oracle, name):
    reference, ours = _pair(oracle, CONFIGS[name])
    inputs = _inputs(CONFIGS[name])
    expected = reference(**inputs).sample
    output = ours(**inputs)
    assert isinstance(output, UNet2DConditionOutput)
    assert oracle.relative_error(expected, output.sample) <= oracle.FP32_TOLERANCE
    ours.set_attention_slice("auto")
    assert oracle.relative_error(expected, ours(**inputs).sample) <= oracle.FP32_TOLERANCE


@pytest.mark.parametrize("name", ["sd1", "sd2"])
@torch.no_grad()
def test_forward_matches_diffusers_in_half_precision(oracle, name):
    dtype = oracle.half_dtype()
    reference, ours = _pair(oracle, CONFIGS[name], torch_dtype=dtype)
    inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in _inputs(CONFIGS[name]).items()}
    expected = reference(**inputs).sample
    got = ours(**inputs).sample
    assert got.dtype == dtype
    assert oracle.relative_error(expected, got) <= oracle.HALF_TOLERANCE
    ours.set_attention_slice("max")
    assert oracle.relative_error(expected, ours(**inputs).sample) <= oracle.HALF_TOLERANCE


@torch.no_grad()
def test_encoder_attention_mask_matches_diffusers(oracle):
    reference, ours = _pair(oracle, SD1)
    inputs = _inputs(SD1)
    mask = torch.ones(2, 7)
    mask[0, 3:] = 0
    expected = reference(**inputs, encoder_attention_mask=mask).sample
    assert oracle.relative_error(expected, ours(**inputs, encoder_attention_mask=mask).sample) <= oracle.FP32_TOLERANCE
    ours.set_attention_slice(1)
    assert oracle.relative_error(expected, ours(**inputs, encoder_attention_mask=mask).sample) <= oracle.FP32_TOLERANCE


@torch.no_grad()
def test_self_attention_mask_matches_diffusers(oracle):
    config = {**SD1, "mid_block_type": None}  # every self-attention layer then sees the 16x16 = 256 tokens
    reference, ours = _pair(oracle, config)
    inputs = _inputs(config)
    mask = torch.ones(2, 256)
    mask[0, 100:] = 0
    mask[1, ::3] = 0
    encoder_mask = torch.ones(2, 7)
    encoder_mask[1, 4:] = 0
    expected = reference(**inputs, attention_mask=mask).sample
    got = ours(**inputs, attention_mask=mask).sample
    assert oracle.relative_error(expected, got) <= oracle.FP32_TOLERANCE
    assert (got - ours(**inputs).sample).abs().max() > 1e-4  # the mask really changes the result
    both = reference(**inputs, attention_mask=mask, encoder_attention_mask=encoder_mask).sample
    ours.set_attention_slice(1)
    got = ours(**inputs, attention_mask=mask, encoder_attention_mask=encoder_mask).sample
    assert oracle.relative_error(both, got) <= oracle.FP32_TOLERANCE


@torch.no_grad()
def test_controlnet_residuals_match_diffusers(oracle):
    reference, ours = _pair(oracle, SD1)
    inputs = _inputs(SD1)
    generator = torch.Generator().manual_seed(5)
    shapes = [(2, 32, 16, 16)] * 2 + [(2, 32, 8, 8), (2, 64, 8, 8)]  # conv_in, resnet, downsampler, resnet
    extra = {
        "down_block_additional_residuals": tuple(torch.randn(shape, generator=generator) for shape in shapes),
        "mid_block_additional_residual": torch.randn(2, 64, 8, 8, generator=generator),
    }
    expected = reference(**inputs, **extra).sample
    assert oracle.relative_error(expected, ours(**inputs, **extra).sample) <= oracle.FP32_TOLERANCE


@pytest.mark.parametrize("timestep", [10, 10.5, torch.tensor(10), torch.tensor([10])], ids=repr)
@torch.no_grad()
def test_timestep_forms_broadcast_like_diffusers(oracle, timestep):
    reference, ours = _pair(oracle, SD1)
    inputs = {**_inputs(SD1), "timestep": timestep}
    assert oracle.relative_error(reference(**inputs).sample, ours(**inputs).sample) <= oracle.FP32_TOLERANCE


@torch.no_grad()
def test_num_attention_heads_names_what_attention_head_dim_means(oracle):
    torch.manual_seed(0)
    legacy = UNet2DConditionModel(**SD1).eval()
    named = UNet2DConditionModel.from_config({**SD1, "attention_head_dim": 16, "num_attention_heads": 4}).eval()
    named.load_state_dict(legacy.state_dict())
    inputs = _inputs(SD1)
    torch.testing.assert_close(named(**inputs).sample, legacy(**inputs).sample)
    assert named.down_blocks[0].attentions[0].transformer_blocks[0].attn1.heads == 4


@torch.no_grad()
def test_channels_last_and_return_dict_false(oracle):
    _, ours = _pair(oracle, SD1)
    inputs = _inputs(SD1)
    expected = ours(**inputs).sample
    ours.to(memory_format=torch.channels_last)
    inputs["sample"] = inputs["sample"].to(memory_format=torch.channels_last)
    (got,) = ours(**inputs, return_dict=False)
    assert oracle.relative_error(expected, got) <= oracle.FP32_TOLERANCE


@pytest.mark.slow
@torch.no_grad()
def test_full_size_sd15_unet_matches_diffusers(oracle):
    """The real SD 1.5 UNet config (860M parameters), random weights, 32x32 latents."""
    import diffusers

    config = dict(
        sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2, cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    torch.manual_seed(0)
    reference = diffusers.UNet2DConditionModel(**config).eval()
    folder = oracle.save(reference)
    ours = UNet2DConditionModel.from_pretrained(folder)
    inputs = {
        "sample": torch.randn(1, 4, 32, 32), "timestep": 500, "encoder_hidden_states": torch.randn(1, 77, 768),
    }
    expected = reference(**inputs).sample
    assert oracle.relative_error(expected, ours(**inputs).sample) <= oracle.FP32_TOLERANCE


def test_guidance_embedding_time_cond_proj_dim_matches_diffusers(oracle):
    """Latent consistency models embed the guidance scale: timestep_cond through time_cond_proj_dim."""
    import torch
    from diffusers import UNet2DConditionModel as Theirs

    from pipeyard import UNet2DConditionModel, errors

    torch.manual_seed(0)
    theirs = Theirs(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, cross_attention_dim=32, attention_head_dim=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        time_cond_proj_dim=16,
    ).eval()
    ours = UNet2DConditionModel.from_pretrained(oracle.save(theirs)).eval()
    sample, context, condition = torch.randn(2, 4, 8, 8), torch.randn(2, 5, 32), torch.randn(2, 16)
    with torch.no_grad():
        expected = theirs(sample, 7, context, timestep_cond=condition).sample
        assert torch.allclose(ours(sample, 7, context, timestep_cond=condition).sample, expected, atol=1e-5)
        assert not torch.allclose(ours(sample, 7, context).sample, expected, atol=1e-3)  # the condition counts
    plain = UNet2DConditionModel(**{k: v for k, v in ours.config.items() if k != "time_cond_proj_dim" and not k.startswith("_")})
    with pytest.raises(errors.ModelInputError, match="time_cond_proj_dim"):
        plain(sample, 7, context, timestep_cond=condition)


def test_image_projection_matches_diffusers():
    import torch
    from diffusers.models.embeddings import ImageProjection as Theirs

    from pipeyard.models.embeddings import ImageProjection

    theirs, ours = Theirs(16, 32, 4), ImageProjection(16, 32, 4)
    ours.load_state_dict(theirs.state_dict())
    embeds = torch.randn(3, 16)
    assert torch.equal(ours(embeds), theirs(embeds)) and ours(embeds).shape == (3, 4, 32)


def test_multi_ip_adapter_image_projection_matches_diffusers():
    import torch
    from diffusers.models.embeddings import ImageProjection as TheirProjection
    from diffusers.models.embeddings import MultiIPAdapterImageProjection as Theirs

    from pipeyard import errors
    from pipeyard.models.embeddings import ImageProjection, MultiIPAdapterImageProjection

    theirs = Theirs([TheirProjection(16, 32, 4), TheirProjection(8, 32, 2)])
    ours = MultiIPAdapterImageProjection([ImageProjection(16, 32, 4), ImageProjection(8, 32, 2)])
    ours.load_state_dict(theirs.state_dict())
    embeds = [torch.randn(2, 3, 16), torch.randn(2, 1, 8)]
    for got, expected in zip(ours(embeds), theirs(embeds)):
        assert torch.equal(got, expected)
    assert ours.num_ip_adapters == 2
    with pytest.raises(errors.ModelInputError, match="one per adapter"):
        ours(embeds[:1])
