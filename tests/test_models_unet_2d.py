"""UNet2DModel against diffusers: random weights saved by diffusers load and compute the same."""

from __future__ import annotations

import math

import pytest
import torch

from pipeyard import UNet2DModel, UNet2DOutput

TINY = dict(
    sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
    norm_num_groups=8, attention_head_dim=8,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
)

CONFIGS = {
    # google/ddpm-cifar10-32 layout, scaled down
    "ddpm": TINY,
    # score-SDE flavour: Fourier time embedding, scale-shift norm, every other option off-default
    "fourier_scale_shift": {
        **TINY, "time_embedding_type": "fourier", "resnet_time_scale_shift": "scale_shift",
        "center_input_sample": True, "flip_sin_to_cos": False, "freq_shift": 1, "downsample_padding": 0,
        "mid_block_scale_factor": math.sqrt(2.0), "attention_head_dim": None,
    },
    "class_conditional_no_mid_attention": {
        **TINY, "num_class_embeds": 10, "add_attention": False, "freq_shift": 1, "attn_norm_num_groups": 4,
        "down_block_types": ("AttnDownBlock2D", "DownBlock2D"), "up_block_types": ("UpBlock2D", "AttnUpBlock2D"),
    },
    "three_levels": {
        **TINY, "block_out_channels": (16, 32, 32), "layers_per_block": 2, "norm_num_groups": 16,
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    },
}


def _inputs(config: dict, batch: int = 2) -> dict:
    generator = torch.Generator().manual_seed(0)
    sample = torch.rand(batch, config["in_channels"], 16, 16, generator=generator)
    fourier = config.get("time_embedding_type") == "fourier"
    timestep = torch.tensor([0.5, 3.0][:batch]) if fourier else torch.tensor([10, 900][:batch])
    inputs = {"sample": sample, "timestep": timestep}
    if config.get("num_class_embeds"):
        inputs["class_labels"] = torch.tensor([1, 7][:batch])
    return inputs


def _pair(oracle, config: dict, **load_kwargs):
    import diffusers

    torch.manual_seed(0)
    reference = diffusers.UNet2DModel(**config).eval()
    folder = oracle.save(reference)
    ours = UNet2DModel.from_pretrained(folder, **load_kwargs)
    if "torch_dtype" in load_kwargs:
        reference = diffusers.UNet2DModel.from_pretrained(folder, torch_dtype=load_kwargs["torch_dtype"]).eval()
    return reference, ours


@pytest.mark.parametrize("name", sorted(CONFIGS))
@torch.no_grad()
def test_forward_matches_diffusers_in_float32(oracle, name):
    reference, ours = _pair(oracle, CONFIGS[name])
    inputs = _inputs(CONFIGS[name])
    expected = reference(**inputs).sample
    output = ours(**inputs)
    assert isinstance(output, UNet2DOutput)
    assert oracle.relative_error(expected, output.sample) <= oracle.FP32_TOLERANCE
    ours.set_attention_slice("max")
    assert oracle.relative_error(expected, ours(**inputs).sample) <= oracle.FP32_TOLERANCE


@pytest.mark.parametrize("name", ["ddpm", "fourier_scale_shift"])
@torch.no_grad()
def test_forward_matches_diffusers_in_half_precision(oracle, name):
    dtype = oracle.half_dtype()
    reference, ours = _pair(oracle, CONFIGS[name], torch_dtype=dtype)
    assert ours.dtype == dtype
    inputs = _inputs(CONFIGS[name])
    inputs["sample"] = inputs["sample"].to(dtype)
    expected = reference(**inputs).sample
    got = ours(**inputs).sample
    assert got.dtype == expected.dtype  # fourier: dividing by float32 sigmas promotes, in both
    assert oracle.relative_error(expected, got) <= oracle.HALF_TOLERANCE


@pytest.mark.parametrize(
    "timestep", [10, 10.0, torch.tensor(10), torch.tensor([10]), torch.tensor([10, 10])], ids=repr
)
@torch.no_grad()
def test_timestep_forms_broadcast_like_diffusers(oracle, timestep):
    reference, ours = _pair(oracle, TINY)
    sample = _inputs(TINY)["sample"]
    expected = reference(sample, timestep).sample
    assert oracle.relative_error(expected, ours(sample, timestep).sample) <= oracle.FP32_TOLERANCE


@torch.no_grad()
def test_return_dict_false_gives_a_tuple_and_outputs_index_like_tuples(oracle):
    _, ours = _pair(oracle, TINY)
    inputs = _inputs(TINY)
    output = ours(**inputs)
    as_tuple = ours(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
    torch.testing.assert_close(as_tuple[0], output[0])
    assert output["sample"] is output.sample


@torch.no_grad()
def test_channels_last_gives_the_same_output(oracle):
    _, ours = _pair(oracle, TINY)
    inputs = _inputs(TINY)
    expected = ours(**inputs).sample
    ours.to(memory_format=torch.channels_last)
    inputs["sample"] = inputs["sample"].to(memory_format=torch.channels_last)
    assert oracle.relative_error(expected, ours(**inputs).sample) <= oracle.FP32_TOLERANCE


@pytest.mark.parametrize("slice_size", ["auto", "max", 1, [1, 1, 1, 1]])
@torch.no_grad()
def test_attention_slicing_keeps_the_output(oracle, slice_size):
    _, ours = _pair(oracle, TINY)
    inputs = _inputs(TINY)
    expected = ours(**inputs).sample
    ours.set_attention_slice(slice_size)
    assert oracle.relative_error(expected, ours(**inputs).sample) <= oracle.FP32_TOLERANCE
    ours.disable_attention_slicing()
    assert all(getattr(m, "slice_size", None) is None for m in ours.modules())


def test_pipeyard_save_loads_in_diffusers(oracle, tmp_path):
    import diffusers

    torch.manual_seed(0)
    ours = UNet2DModel(**TINY).eval()
    ours.save_pretrained(tmp_path / "ours")
    reference = diffusers.UNet2DModel.from_pretrained(tmp_path / "ours").eval()
    inputs = _inputs(TINY)
    with torch.no_grad():
        assert oracle.relative_error(reference(**inputs).sample, ours(**inputs).sample) <= oracle.FP32_TOLERANCE
