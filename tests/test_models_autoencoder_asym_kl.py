"""AsymmetricAutoencoderKL against diffusers: weights from a diffusers folder, encode, plain and
mask-conditioned decode, forward; its config as pipelines read it."""

from __future__ import annotations

import pytest
import torch

from pipeyard import AsymmetricAutoencoderKL, errors

TINY = dict(
    down_block_out_channels=(32, 64), up_block_out_channels=(32, 64), layers_per_down_block=1,
    layers_per_up_block=1, norm_num_groups=16, sample_size=16, latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
)
WIDER_DECODER = {**TINY, "up_block_out_channels": (16, 32, 64), "up_block_types": ("UpDecoderBlock2D",) * 3,
                 "down_block_out_channels": (32, 64, 64), "down_block_types": ("DownEncoderBlock2D",) * 3,
                 "layers_per_up_block": 2}


def _pair(oracle, config: dict):
    import diffusers

    torch.manual_seed(0)
    reference = diffusers.AsymmetricAutoencoderKL(**config).eval()
    ours = AsymmetricAutoencoderKL.from_pretrained(oracle.save(reference)).eval()
    return reference, ours


def _image_and_mask(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, size, size, generator=generator) * 2 - 1
    mask = torch.zeros(2, 1, size, size)
    mask[:, :, size // 4 : size // 2, size // 8 :] = 1.0
    return image, mask


@pytest.mark.parametrize("config", [TINY, WIDER_DECODER], ids=["tiny", "wider_decoder"])
@torch.no_grad()
def test_encode_decode_with_and_without_mask_match_diffusers(oracle, config):
    reference, ours = _pair(oracle, config)
    image, mask = _image_and_mask()
    expected = reference.encode(image).latent_dist
    posterior = ours.encode(image).latent_dist
    assert oracle.relative_error(expected.mode(), posterior.mode()) <= oracle.FP32_TOLERANCE
    latents = expected.mode()
    plain = ours.decode(latents).sample
    assert oracle.relative_error(reference.decode(latents).sample, plain) <= oracle.FP32_TOLERANCE
    conditioned = ours.decode(latents, image=image, mask=mask).sample
    assert oracle.relative_error(reference.decode(latents, image=image, mask=mask).sample, conditioned) <= 1e-4
    assert (conditioned - plain).abs().max() > 1e-3  # the mask really conditions the decoder
    assert oracle.relative_error(reference(image, mask=mask).sample, ours(image, mask=mask).sample) <= 1e-4


def test_config_reports_the_decoder_channels_and_no_upcast_like_diffusers(oracle):
    reference, ours = _pair(oracle, WIDER_DECODER)
    assert list(ours.config.block_out_channels) == list(reference.config.block_out_channels) == [16, 32, 64]
    assert ours.config.force_upcast is reference.config.force_upcast is False
    assert set(ours.state_dict()) == set(reference.state_dict())


@torch.no_grad()
def test_mask_of_the_wrong_size_is_an_input_shape_error_naming_the_shapes(oracle):
    _, ours = _pair(oracle, TINY)
    image, mask = _image_and_mask(16)
    with pytest.raises(errors.InputShapeError, match="condition encoder") as caught:
        ours.decode(torch.zeros(2, 4, 16, 16), image=image, mask=mask)
    assert caught.value.got == (2, 64, 32, 32)  # after the first up block
