"""Checkpoints written by diffusers load unchanged: formats, shards, variants, old key names."""

from __future__ import annotations

import pytest
import torch

from pipeyard import AutoencoderKL, UNet2DConditionModel, UNet2DModel

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
FAMILIES = {
    "unet_2d": ("UNet2DModel", UNet2DModel, UNET),
    "unet_2d_condition": ("UNet2DConditionModel", UNet2DConditionModel, COND_UNET),
    "autoencoder_kl": ("AutoencoderKL", AutoencoderKL, VAE),
}
SAVE_FORMATS = {
    "safetensors": {},
    "bin": {"safe_serialization": False},
    "sharded_safetensors": {"max_shard_size": "50KB"},
    "sharded_bin": {"max_shard_size": "50KB", "safe_serialization": False},
    "fp16_variant": {"variant": "fp16"},
}


def _reference(family: str):
    import diffusers

    class_name, ours_class, config = FAMILIES[family]
    torch.manual_seed(0)
    return getattr(diffusers, class_name)(**config).eval(), ours_class


def _assert_same_weights(reference: torch.nn.Module, ours: torch.nn.Module) -> None:
    expected = reference.state_dict()
    got = ours.state_dict()
    assert set(got) == set(expected)
    for key, tensor in expected.items():
        torch.testing.assert_close(got[key].float(), tensor.float(), rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("fmt", sorted(SAVE_FORMATS))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_diffusers_checkpoints_load_with_no_missing_or_unexpected_keys(oracle, family, fmt):
    reference, ours_class = _reference(family)
    save_kwargs = SAVE_FORMATS[fmt]
    if save_kwargs.get("variant") == "fp16":
        reference = reference.half()
    folder = oracle.save(reference, **save_kwargs)
    if fmt.startswith("sharded"):
        assert len(list(folder.glob("diffusion_pytorch_model-*"))) > 1
    pickled = save_kwargs.get("safe_serialization") is False  # diffusers' .bin: torch.save pickles
    ours = ours_class.from_pretrained(folder, variant=save_kwargs.get("variant"), allow_pickle=pickled)
    _assert_same_weights(reference, ours)


def _legacy_checkpoint(reference: torch.nn.Module, folder) -> int:
    """Rewrite a saved checkpoint with the attention key names of diffusers < 0.14."""
    from safetensors.torch import load_file, save_file

    path = folder / "diffusion_pytorch_model.safetensors"
    old_names = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    state = load_file(path)
    renamed = {}
    for key, tensor in state.items():
        new_key = key
        if ".attentions." in key and "transformer_blocks" not in key:
            for new, old in old_names.items():
                new_key = new_key.replace(f".{new}.", f".{old}.")
        renamed[new_key] = tensor
    save_file(renamed, path)
    return sum(1 for k in renamed if k.endswith(("query.weight", "proj_attn.bias")))


@pytest.mark.parametrize("family", ["unet_2d", "autoencoder_kl"])
def test_old_attention_key_names_are_converted_on_load(oracle, family):
    reference, ours_class = _reference(family)
    folder = oracle.save(reference)
    assert _legacy_checkpoint(reference, folder) >= 2
    ours = ours_class.from_pretrained(folder)
    _assert_same_weights(reference, ours)


def test_pipeyard_checkpoints_load_in_diffusers(tmp_path):
    import diffusers

    torch.manual_seed(0)
    ours = UNet2DConditionModel(**COND_UNET)
    ours.save_pretrained(tmp_path, variant="fp16", max_shard_size="50KB")
    reference = diffusers.UNet2DConditionModel.from_pretrained(tmp_path, variant="fp16")
    _assert_same_weights(ours, reference)


def test_from_pretrained_then_forward_with_meta_init_keeps_the_frequency_table(oracle):
    reference, _ = _reference("unet_2d")
    ours = UNet2DModel.from_pretrained(oracle.save(reference), torch_dtype=torch.float16)
    assert ours.time_proj._frequencies.dtype == torch.float32
    assert not any(p.is_meta for p in ours.parameters())
