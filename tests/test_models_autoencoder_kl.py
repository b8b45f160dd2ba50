"""AutoencoderKL against diffusers: encode, sample/mode, decode, slicing, tiling, half precision."""

from __future__ import annotations

import pytest
import torch

from pipeyard import AutoencoderKL, AutoencoderKLOutput, DecoderOutput, DiagonalGaussianDistribution

TINY = dict(
    block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=16, sample_size=16, latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
)
CONFIGS = {
    "sd_vae": TINY,
    "no_quant_convs_no_mid_attention": {
        **TINY, "use_quant_conv": False, "use_post_quant_conv": False, "mid_block_add_attention": False,
        "layers_per_block": 2, "latent_channels": 3, "scaling_factor": 0.5,
    },
}


def _pair(oracle, config: dict, **load_kwargs):
    import diffusers

    torch.manual_seed(0)
    reference = diffusers.AutoencoderKL(**config).eval()
    folder = oracle.save(reference)
    ours = AutoencoderKL.from_pretrained(folder, **load_kwargs)
    if "torch_dtype" in load_kwargs:
        reference = diffusers.AutoencoderKL.from_pretrained(folder, torch_dtype=load_kwargs["torch_dtype"])
    return reference.eval(), ours


def _images(batch: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.mark.parametrize("name", sorted(CONFIGS))
@torch.no_grad()
def test_encode_decode_and_forward_match_diffusers(oracle, name):
    reference, ours = _pair(oracle, CONFIGS[name])
    images = _images()
    encoded = ours.encode(images)
    assert isinstance(encoded, AutoencoderKLOutput)
    posterior = encoded.latent_dist
    assert isinstance(posterior, DiagonalGaussianDistribution)
    expected = reference.encode(images).latent_dist
    assert oracle.relative_error(expected.mode(), posterior.mode()) <= oracle.FP32_TOLERANCE
    assert oracle.relative_error(expected.std, posterior.std) <= oracle.FP32_TOLERANCE
    latents = expected.mode()
    decoded = ours.decode(latents)
    assert isinstance(decoded, DecoderOutput)
    assert oracle.relative_error(reference.decode(latents).sample, decoded.sample) <= oracle.FP32_TOLERANCE
    assert oracle.relative_error(reference(images).sample, ours(images).sample) <= oracle.FP32_TOLERANCE
    assert ours.config.scaling_factor == reference.config.scaling_factor


@torch.no_grad()
def test_posterior_sample_uses_the_generator_like_diffusers(oracle):
    reference, ours = _pair(oracle, TINY)
    images = _images()
    expected = reference.encode(images).latent_dist.sample(torch.Generator().manual_seed(3))
    got = ours.encode(images).latent_dist.sample(torch.Generator().manual_seed(3))
    assert oracle.relative_error(expected, got) <= oracle.FP32_TOLERANCE
    sampled = ours(images, sample_posterior=True, generator=torch.Generator().manual_seed(3)).sample
    plain = reference(images, sample_posterior=True, generator=torch.Generator().manual_seed(3)).sample
    assert oracle.relative_error(plain, sampled) <= oracle.FP32_TOLERANCE


@torch.no_grad()
def test_kl_matches_diffusers(oracle):
    reference, ours = _pair(oracle, TINY)
    images = _images()
    expected = reference.encode(images).latent_dist.kl()
    assert oracle.relative_error(expected, ours.encode(images).latent_dist.kl()) <= oracle.FP32_TOLERANCE


@torch.no_grad()
def test_slicing_gives_the_same_result(oracle):
    _, ours = _pair(oracle, TINY)
    images = _images(batch=3)
    expected = ours(images).sample
    ours.enable_slicing()
    assert oracle.relative_error(expected, ours(images).sample) <= oracle.FP32_TOLERANCE
    ours.disable_slicing()
    assert not ours.use_slicing


@torch.no_grad()
def test_tiling_matches_diffusers_tiling(oracle):
    reference, ours = _pair(oracle, TINY)  # sample_size 16: 48x48 images make 3x3 overlapping tiles
    images = _images(batch=1, size=48)
    reference.enable_tiling()
    ours.enable_tiling()
    expected = reference.encode(images).latent_dist.mode()
    got = ours.encode(images).latent_dist.mode()
    assert got.shape == (1, 4, 24, 24)
    assert oracle.relative_error(expected, got) <= oracle.FP32_TOLERANCE
    decoded = reference.decode(expected).sample
    assert oracle.relative_error(decoded, ours.decode(expected).sample) <= oracle.FP32_TOLERANCE
    ours.disable_tiling()
    assert not ours.use_tiling


@torch.no_grad()
def test_half_precision_matches_diffusers(oracle):
    dtype = oracle.half_dtype()
    reference, ours = _pair(oracle, TINY, torch_dtype=dtype)
    images = _images().to(dtype)
    expected = reference(images).sample
    got = ours(images).sample
    assert got.dtype == dtype
    assert oracle.relative_error(expected, got) <= oracle.HALF_TOLERANCE


@torch.no_grad()
def test_attention_slicing_and_channels_last_keep_the_output(oracle):
    _, ours = _pair(oracle, TINY)
    images = _images()
    expected = ours(images).sample
    ours.set_attention_slice("max")
    ours.to(memory_format=torch.channels_last)
    got = ours(images.to(memory_format=torch.channels_last)).sample
    assert oracle.relative_error(expected, got) <= oracle.FP32_TOLERANCE
