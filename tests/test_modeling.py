"""ModelMixin weight I/O: formats, variants, shards, key and shape checks, memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from pipeyard.errors import (
    FrozenConfigError,
    ShapeMismatchError,
    StateDictMismatchError,
    VariantNotFoundError,
    WeightsNotFoundError,
)
from pipeyard.modeling import select_weight_files


@pytest.fixture
def toy(toy_model_class):
    torch.manual_seed(0)
    return toy_model_class(width=16, depth=3, scale=2.0)


def _same_output(a, b):
    x = torch.randn(4, a.config.width, generator=torch.Generator().manual_seed(1))
    return torch.equal(a(x), b(x))


def test_round_trip_safetensors_is_exact(tmp_path, toy, toy_model_class):
    toy.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    loaded = toy_model_class.from_pretrained(tmp_path)
    assert _same_output(toy, loaded)
    assert loaded.config.scale == 2.0 and not loaded.training
    assert torch.equal(loaded.offsets, torch.arange(16.0))  # non-persistent buffer kept real


def test_bin_checkpoint_loads_and_is_used_only_when_allowed(tmp_path, toy, toy_model_class):
    toy.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "diffusion_pytorch_model.bin").is_file()
    assert _same_output(toy, toy_model_class.from_pretrained(tmp_path, allow_pickle=True))
    assert _same_output(toy, toy_model_class.from_pretrained(tmp_path, use_safetensors=False, allow_pickle=True))
    with pytest.raises(WeightsNotFoundError, match="use_safetensors=None.*allow_pickle=True"):
        toy_model_class.from_pretrained(tmp_path, use_safetensors=True)


def test_safetensors_preferred_over_bin(tmp_path, toy, toy_model_class):
    toy.save_pretrained(tmp_path, safe_serialization=False)
    other = toy_model_class(width=16, depth=3, scale=2.0)
    other.save_pretrained(tmp_path)  # same folder, now with .safetensors too
    assert _same_output(other, toy_model_class.from_pretrained(tmp_path))  # no allow_pickle needed
    assert _same_output(toy, toy_model_class.from_pretrained(tmp_path, use_safetensors=False, allow_pickle=True))


def test_sharded_checkpoint_round_trip_and_index(tmp_path, toy, toy_model_class):
    toy.save_pretrained(tmp_path, max_shard_size=1500)
    index = json.loads((tmp_path / "diffusion_pytorch_model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and shards[0] == f"diffusion_pytorch_model-00001-of-{len(shards):05d}.safetensors"
    assert _same_output(toy, toy_model_class.from_pretrained(tmp_path))


def test_resaving_unsharded_removes_stale_shards(tmp_path, toy):
    toy.save_pretrained(tmp_path, max_shard_size=1500)
    toy.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]


def test_variant_files_and_missing_variant_lists_available(tmp_path, toy, toy_model_class):
    toy.to(torch.float16).save_pretrained(tmp_path, variant="fp16")
    assert (tmp_path / "diffusion_pytorch_model.fp16.safetensors").is_file()
    loaded = toy_model_class.from_pretrained(tmp_path, variant="fp16")
    assert loaded.dtype == torch.float16
    with pytest.raises(VariantNotFoundError, match="available variants: 'fp16'") as info:
        toy_model_class.from_pretrained(tmp_path)  # no default weights, only fp16
    assert info.value.variant is None and isinstance(info.value, FileNotFoundError)
    with pytest.raises(VariantNotFoundError, match="variant 'ema'"):
        toy_model_class.from_pretrained(tmp_path, variant="ema")


def test_sharded_variant_names_match_diffusers_layout(tmp_path, toy):
    toy.save_pretrained(tmp_path, variant="fp16", max_shard_size=1500)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "diffusion_pytorch_model.safetensors.index.fp16.json" in names
    assert "diffusion_pytorch_model.fp16-00001-of-00002.safetensors" in names or any(
        n.startswith("diffusion_pytorch_model.fp16-00001-of-") for n in names
    )


def test_torch_dtype_converts_floating_weights(tmp_path, toy, toy_model_class):
    toy.save_pretrained(tmp_path)
    loaded = toy_model_class.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}


def test_device_argument_places_weights(tmp_path, toy, toy_model_class):
    toy.save_pretrained(tmp_path)
    loaded = toy_model_class.from_pretrained(tmp_path, device="cpu")
    assert loaded.device == torch.device("cpu")


def test_low_cpu_mem_usage_off_gives_the_same_model(tmp_path, toy, toy_model_class):
    toy.save_pretrained(tmp_path)
    assert _same_output(toy, toy_model_class.from_pretrained(tmp_path, low_cpu_mem_usage=False))


def test_missing_and_unexpected_keys_are_listed_with_class_and_path(tmp_path, toy_model_class):
    toy_model_class(width=4, depth=3).save_pretrained(tmp_path)
    with pytest.raises(StateDictMismatchError) as info:
        toy_model_class.from_pretrained(tmp_path, depth=2)
    err = info.value
    assert err.unexpected == ["layers.2.bias", "layers.2.weight"] and err.missing == []
    assert "ToyModel" in str(err) and str(tmp_path) in str(err) and "2 unexpected key(s)" in str(err)
    with pytest.raises(StateDictMismatchError, match="2 missing key"):
        toy_model_class.from_pretrained(tmp_path, depth=4)


def test_more_than_twenty_keys_are_cut_with_a_count(tmp_path, toy_model_class):
    toy_model_class(width=2, depth=30).save_pretrained(tmp_path)
    with pytest.raises(StateDictMismatchError, match=r"58 unexpected key\(s\): .*\(\+38 more\)"):
        toy_model_class.from_pretrained(tmp_path, depth=1)


def test_shape_mismatch_names_key_and_both_shapes(tmp_path, toy_model_class):
    toy_model_class(width=4).save_pretrained(tmp_path)
    with pytest.raises(ShapeMismatchError, match=r"layers.0.weight: checkpoint \(4, 4\) vs model \(8, 8\)"):
        toy_model_class.from_pretrained(tmp_path, width=8)


def test_no_weights_at_all(tmp_path, toy):
    toy.save_config(tmp_path)
    with pytest.raises(WeightsNotFoundError, match="diffusion_pytorch_model.safetensors"):
        type(toy).from_pretrained(tmp_path)


def test_rename_hook_reads_old_key_names(tmp_path, toy_model_class):
    from safetensors.torch import save_file

    class Renaming(toy_model_class):
        @classmethod
        def _rename_checkpoint_keys(cls, keys):
            return {k: k.replace("old_layers", "layers") for k in keys if k.startswith("old_layers")}

    model = Renaming(width=4, depth=1)
    model.save_config(tmp_path)
    save_file({f"old_{k}": v.contiguous() for k, v in model.state_dict().items()},
              tmp_path / "diffusion_pytorch_model.safetensors")
    assert _same_output(model, Renaming.from_pretrained(tmp_path))


def test_model_config_cannot_be_replaced(toy):
    with pytest.raises(FrozenConfigError):
        toy.config = {}


def test_max_shard_size_as_a_string_shards_like_the_same_number_of_bytes(tmp_path, toy):
    toy.save_pretrained(tmp_path / "int", max_shard_size=1500)
    toy.save_pretrained(tmp_path / "str", max_shard_size="1.5KB")
    assert sorted(p.name for p in (tmp_path / "int").iterdir()) == sorted(p.name for p in (tmp_path / "str").iterdir())


def test_bad_max_shard_size_is_refused_before_anything_is_written(tmp_path, toy):
    with pytest.raises(ValueError, match="lots"):
        toy.save_pretrained(tmp_path / "out", max_shard_size="lots")
    assert not (tmp_path / "out").exists()


def test_select_prefers_index_of_the_variant():
    names = ["config.json", "diffusion_pytorch_model.safetensors.index.fp16.json",
             "diffusion_pytorch_model.fp16-00001-of-00002.safetensors", "diffusion_pytorch_model.bin"]
    chosen = select_weight_files(names, "x", "fp16", None)
    assert chosen.index == "diffusion_pytorch_model.safetensors.index.fp16.json"
    assert select_weight_files(names, "x", None, None).files == ("diffusion_pytorch_model.bin",)


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from pipeyard import ModelMixin, register_to_config

    def status_kb(field):
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

    class Big(ModelMixin):
        @register_to_config
        def __init__(self, n: int = 4):
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(2048, 4096) for _ in range(n))

    folder, mode = sys.argv[1], sys.argv[2]
    if mode == "save":
        Big().save_pretrained(folder)
        raise SystemExit
    # The peak of the load alone: reset the high-water mark (VmHWM) first. ru_maxrss would keep
    # an earlier peak (e.g. compiling bytecode on the first imports in a fresh venv).
    before = status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    model = Big.from_pretrained(folder, low_cpu_mem_usage=(mode == "low"))
    total = sum(float(p.sum()) for p in model.parameters())  # touch every weight page
    after = status_kb("VmHWM")
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    print((after - before) * 1024 / size)
    """
)


def _peak_ratio(script, folder, mode):
    out = subprocess.run([sys.executable, str(script), str(folder), mode], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1]) if mode != "save" else 0.0


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc/self/clear_refs")
def test_low_cpu_mem_usage_peak_is_about_one_copy_of_the_weights(tmp_path):
    script = tmp_path / "measure.py"
    script.write_text(_MEMORY_SCRIPT)
    _peak_ratio(script, tmp_path / "big", "save")
    low = _peak_ratio(script, tmp_path / "big", "low")
    full = _peak_ratio(script, tmp_path / "big", "full")
    assert low <= 1.25, f"peak RSS grew by {low:.2f}x the weights with low_cpu_mem_usage=True"
    assert full >= low + 0.3, f"the measurement cannot see the second copy (full {full:.2f}x, low {low:.2f}x)"
