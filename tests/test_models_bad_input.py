"""Wrong configs, inputs and checkpoints raise typed errors that say what to change."""

from __future__ import annotations

import pytest
import torch

from pipeyard import AutoencoderKL, UNet2DConditionModel, UNet2DModel, errors

UNET = dict(
    sample_size=16, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8, attention_head_dim=8,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
)
COND_UNET = dict(
    sample_size=16, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8, cross_attention_dim=24,
    attention_head_dim=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
)
VAE = dict(
    block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=16, sample_size=16,
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
)


@pytest.fixture(scope="module")
def unet():
    return UNet2DModel(**UNET).eval()


@pytest.fixture(scope="module")
def cond_unet():
    return UNet2DConditionModel(**COND_UNET).eval()


def test_wrong_input_channels(unet):
    with pytest.raises(errors.InputShapeError) as info:
        unet(torch.randn(1, 4, 16, 16), 1)
    assert isinstance(info.value, ValueError)
    assert info.value.argument == "sample" and info.value.got == (1, 4, 16, 16)
    assert "(batch, 3, height, width)" in str(info.value)


@pytest.mark.parametrize("shape", [(1, 4, 15, 16), (1, 4, 16, 9)])
def test_spatial_size_not_divisible_by_the_downsampling_factor(cond_unet, shape):
    with pytest.raises(errors.InputShapeError, match="divisible by 2"):
        cond_unet(torch.randn(*shape), 1, torch.randn(1, 7, 24))


def test_vae_checks_its_input_too():
    vae = AutoencoderKL(**VAE)
    with pytest.raises(errors.InputShapeError, match="divisible by 2"):
        vae.encode(torch.randn(1, 3, 15, 16))
    with pytest.raises(errors.InputShapeError, match=r"\(batch, 4, height, width\)"):
        vae.decode(torch.randn(1, 3, 8, 8))


def test_missing_encoder_hidden_states(cond_unet):
    with pytest.raises(errors.MissingModelInputError, match="encoder_hidden_states") as info:
        cond_unet(torch.randn(1, 4, 16, 16), 1, None)
    assert isinstance(info.value, TypeError) and info.value.argument == "encoder_hidden_states"


def test_encoder_hidden_states_of_the_wrong_batch(cond_unet):
    with pytest.raises(errors.InputShapeError, match="encoder_hidden_states"):
        cond_unet(torch.randn(2, 4, 16, 16), 1, torch.randn(3, 7, 24))


@pytest.mark.parametrize("argument", ["timestep_cond", "added_cond_kwargs"])
def test_unsupported_forward_arguments_are_refused(cond_unet, argument):
    value = {"scale": 0.5} if argument.endswith("kwargs") else torch.ones(1, 7)
    with pytest.raises(errors.ModelInputError, match=argument):
        cond_unet(torch.randn(1, 4, 16, 16), 1, torch.randn(1, 7, 24), **{argument: value})
    cond_unet(torch.randn(1, 4, 16, 16), 1, torch.randn(1, 7, 24), cross_attention_kwargs={})


def test_timestep_of_the_wrong_length(unet):
    with pytest.raises(errors.InputShapeError, match="timestep"):
        unet(torch.randn(2, 3, 16, 16), torch.tensor([1, 2, 3]))


def test_missing_class_labels_for_a_class_conditional_unet():
    model = UNet2DModel(**{**UNET, "num_class_embeds": 3})
    with pytest.raises(errors.MissingModelInputError, match="class_labels"):
        model(torch.randn(1, 3, 16, 16), 1)


@pytest.mark.parametrize(
    ("model_class", "config", "key", "kind", "known"),
    [
        (UNet2DModel, UNET, "down_block_types", "down", ["AttnDownBlock2D", "DownBlock2D"]),
        (UNet2DModel, UNET, "up_block_types", "up", ["AttnUpBlock2D", "UpBlock2D"]),
        (UNet2DConditionModel, COND_UNET, "down_block_types", "down", ["CrossAttnDownBlock2D", "DownBlock2D"]),
        (AutoencoderKL, VAE, "down_block_types", "down", ["DownEncoderBlock2D"]),
    ],
)
def test_unknown_block_type_lists_the_known_ones(model_class, config, key, kind, known):
    bad = {**config, key: ("FancyBlock2D",) + tuple(config[key][1:])}
    with pytest.raises(errors.UnknownBlockTypeError) as info:
        model_class(**bad)
    assert isinstance(info.value, LookupError)
    assert info.value.block_type == "FancyBlock2D" and info.value.kind == kind
    assert info.value.known == known
    assert all(name in str(info.value) for name in known)


def test_unsupported_config_values_are_refused_not_ignored():
    with pytest.raises(errors.ModelConfigError, match="dual_cross_attention") as info:
        UNet2DConditionModel(**COND_UNET, dual_cross_attention=True)
    assert info.value.key == "dual_cross_attention" and info.value.value is True
    with pytest.raises(errors.ModelConfigError, match="act_fn"):
        UNet2DModel(**{**UNET, "act_fn": "sparkle"})
    with pytest.raises(errors.ModelConfigError, match="block_out_channels"):
        UNet2DModel(**{**UNET, "block_out_channels": (32, 64, 64)})


def test_bad_attention_slice_size(unet):
    with pytest.raises(errors.ModelConfigError, match="slice_size"):
        unet.set_attention_slice(0)
    with pytest.raises(errors.ModelConfigError, match="slice_size"):
        unet.set_attention_slice("half")


def test_checkpoint_of_another_architecture_names_the_keys(tmp_path):
    import json

    AutoencoderKL(**VAE).save_pretrained(tmp_path / "vae")
    (tmp_path / "vae" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", **UNET}))
    with pytest.raises(errors.StateDictMismatchError) as info:
        UNet2DModel.from_pretrained(tmp_path / "vae")
    message = str(info.value)
    assert "UNet2DModel" in message and "missing key(s)" in message and "unexpected key(s)" in message
    assert "conv_in.weight" in info.value.missing and "conv_in.weight" in message
    assert any(key.startswith("encoder.") for key in info.value.unexpected)


def test_checkpoint_with_other_widths_names_keys_and_shapes(tmp_path):
    UNet2DModel(**UNET).save_pretrained(tmp_path / "unet")
    with pytest.raises(errors.ShapeMismatchError) as info:
        UNet2DModel.from_pretrained(tmp_path / "unet", block_out_channels=(16, 32))
    key, checkpoint_shape, model_shape = info.value.mismatches[0]
    assert key in str(info.value) and str(tuple(checkpoint_shape)) in str(info.value)
    assert checkpoint_shape != model_shape
