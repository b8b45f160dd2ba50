"""Weight files are data from a stranger: damaged safetensors, pickle weights and hostile shard
indexes end in typed errors that name the file, what is wrong and what to do."""

from __future__ import annotations

import json
import os
import struct

import pytest
import torch

from pipeyard import ConfigMixin, DiffusionPipeline, plugins, register_to_config
from pipeyard.errors import ConfigFileError, CorruptWeightsError, PickleWeightsError, WeightsError

WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture
def saved(tmp_path, toy_model_class):
    """A toy model saved as safetensors; returns (folder, model class)."""
    torch.manual_seed(0)
    toy_model_class(width=4, depth=1).save_pretrained(tmp_path / "model")
    return tmp_path / "model", toy_model_class


def _split(path):
    """(header dict, data bytes) of a safetensors file."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + length]), raw[8 + length :]


def _write(path, header, data, *, header_bytes=None):
    text = header_bytes if header_bytes is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def _move(header, name, offsets):
    return {**header, name: {**header[name], "data_offsets": offsets}}


# --------------------------------------------------------------------------- safetensors


def _damage(kind, path):
    header, data = _split(path)
    first = next(k for k in header if k != "__metadata__")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "shorter than the length field":
        path.write_bytes(b"\x01\x02")
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:-7])
    elif kind == "header length 2**62":
        path.write_bytes(struct.pack("<Q", 2**62) + path.read_bytes()[8:])
    elif kind == "offsets past the end":
        _write(path, _move(header, first, [0, len(data) + 4096]), data)
    elif kind == "header not JSON":
        _write(path, None, data, header_bytes=b"not json at all")
    elif kind == "header not a mapping":
        _write(path, None, data, header_bytes=b"[1, 2, 3]")
    elif kind == "header nested 100,000 deep":
        _write(path, None, data, header_bytes=b"[" * 100_000)
    elif kind == "dtype x shape not the byte span":
        _write(path, {**header, first: {**header[first], "dtype": "F64"}}, data)
    elif kind == "unknown dtype":
        _write(path, {**header, first: {**header[first], "dtype": "Q7"}}, data)
    elif kind == "shape not integers":
        _write(path, {**header, first: {**header[first], "shape": ["4", 1]}}, data)
    elif kind == "offsets reversed":
        begin, end = header[first]["data_offsets"]
        _write(path, _move(header, first, [end, begin]), data)
    elif kind == "metadata not strings":
        _write(path, {**header, "__metadata__": {"format": 1}}, data)
    elif kind == "tensor named twice":
        text = json.dumps(header)
        _write(path, None, data, header_bytes=(text[:-1] + f', "{first}": ' + json.dumps(header[first]) + "}").encode())
    elif kind == "trailing bytes":  # passes the header checks; safetensors' own refusal is translated
        path.write_bytes(path.read_bytes() + b"\0" * 64)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("empty", "it is empty"),
        ("shorter than the length field", "shorter than the 8-byte header length"),
        ("truncated", "lies at bytes"),
        ("header length 2**62", "its header claims 4,611,686,018,427,387,904 bytes"),
        ("offsets past the end", "(it is truncated)"),
        ("header not JSON", "its JSON header is not valid: Expecting value"),
        ("header not a mapping", "expected a JSON object, found a list"),
        ("header nested 100,000 deep", "nest deeper than 64 levels"),
        ("dtype x shape not the byte span", "is F64 of shape (4,), which takes 32 bytes, but its data span is 16 bytes"),
        ("unknown dtype", "dtype 'Q7', which safetensors does not define"),
        ("shape not integers", "not a list of non-negative integers"),
        ("offsets reversed", "not [begin, end] byte positions"),
        ("metadata not strings", "__metadata__ is not a mapping of strings"),
        ("tensor named twice", "appears twice in one object"),
        ("trailing bytes", "safetensors cannot read it"),
    ],
)
def test_damaged_safetensors_file_is_a_typed_error_naming_file_problem_and_fix(saved, kind, reason):
    folder, model_class = saved
    _damage(kind, folder / WEIGHTS)
    with pytest.raises(CorruptWeightsError) as info:
        model_class.from_pretrained(folder)
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, WeightsError)
    assert err.path == str(folder / WEIGHTS) and reason in err.reason
    assert str(folder / WEIGHTS) in str(err) and "download or save it again" in str(err)
    assert len(str(err)) < 700


def test_damaged_file_in_the_hub_cache_names_the_repository_folder_to_delete(saved, tmp_path):
    folder, model_class = saved
    snapshot = tmp_path / "hub" / "models--alice--toy" / "snapshots" / ("0" * 40)
    snapshot.parent.mkdir(parents=True)
    folder.rename(snapshot)
    _damage("truncated", snapshot / WEIGHTS)
    with pytest.raises(CorruptWeightsError) as info:
        model_class.from_pretrained(snapshot)
    assert f"delete the folder {tmp_path / 'hub' / 'models--alice--toy'}" in info.value.fix


def test_a_huge_tensor_name_is_clipped_in_the_message(saved):
    folder, model_class = saved
    header, data = _split(folder / WEIGHTS)
    first = next(k for k in header if k != "__metadata__")
    entry = {**header.pop(first), "dtype": "F64"}
    _write(folder / WEIGHTS, {**header, "x" * 100_000: entry}, data)
    with pytest.raises(CorruptWeightsError, match=r"x{100}\.\.\.\(\+99900 characters\)") as info:
        model_class.from_pretrained(folder)
    assert len(str(info.value)) < 800


# --------------------------------------------------------------------------- pickle


def test_pickle_weights_are_refused_without_allow_pickle(tmp_path, toy_model_class):
    model = toy_model_class(width=4, depth=1)
    model.save_pretrained(tmp_path, safe_serialization=False)
    with pytest.raises(PickleWeightsError) as info:
        toy_model_class.from_pretrained(tmp_path)
    message = str(info.value)
    assert isinstance(info.value, PermissionError) and info.value.files == ["diffusion_pytorch_model.bin"]
    assert "can run code" in message and "allow_pickle=True" in message and "weights_only=False" not in message
    loaded = toy_model_class.from_pretrained(tmp_path, allow_pickle=True)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_allowed_pickle_that_names_code_is_refused_without_running_it(tmp_path, toy_model_class):
    toy_model_class(width=4, depth=1).save_config(tmp_path)
    marker = str(tmp_path / "ran")
    torch.save({"layers.0.weight": _RunsCode(marker)}, tmp_path / "diffusion_pytorch_model.bin")
    with pytest.raises(CorruptWeightsError) as info:
        toy_model_class.from_pretrained(tmp_path, allow_pickle=True)
    message = str(info.value)
    assert not os.path.exists(marker)
    assert "posix.mkdir" in message and "weights_only=True" in message and "Nothing of it was run" in message
    assert "weights_only=False" not in message and "`False`" not in message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ([torch.zeros(1)], "it holds a list, not a flat mapping"),
        ({"state_dict": {"a": torch.zeros(1)}}, "it holds a dict, not a flat mapping"),
    ],
)
def test_allowed_pickle_that_is_not_a_flat_state_dict_is_a_typed_error(tmp_path, toy_model_class, content, reason):
    toy_model_class(width=4, depth=1).save_config(tmp_path)
    torch.save(content, tmp_path / "diffusion_pytorch_model.bin")
    with pytest.raises(CorruptWeightsError, match=reason):
        toy_model_class.from_pretrained(tmp_path, allow_pickle=True)


def test_allowed_pickle_that_is_not_a_pickle_is_a_typed_error(tmp_path, toy_model_class):
    toy_model_class(width=4, depth=1).save_config(tmp_path)
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(b"junk" * 10)
    with pytest.raises(CorruptWeightsError, match="diffusion_pytorch_model.bin cannot be used") as info:
        toy_model_class.from_pretrained(tmp_path, allow_pickle=True)
    assert "weights_only=False" not in str(info.value)


def test_allowed_pickle_in_torch_legacy_format_loads(tmp_path, toy_model_class):
    model = toy_model_class(width=4, depth=1)
    model.save_config(tmp_path)
    torch.save(model.state_dict(), tmp_path / "diffusion_pytorch_model.bin", _use_new_zipfile_serialization=False)
    loaded = toy_model_class.from_pretrained(tmp_path, allow_pickle=True)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


class PickleSchedule(ConfigMixin):
    config_name = "scheduler_config.json"

    @register_to_config
    def __init__(self, steps: int = 10):
        self.steps = steps


class PicklePipeline(DiffusionPipeline):
    def __init__(self, model, scheduler):
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler)


def _pipeline_with_bin_model(folder, toy_model_class):
    class Resolver:
        @plugins.hookimpl
        def pipeyard_resolve_component_class(self, library, class_name):
            return {"ToyModel": toy_model_class, "PickleSchedule": PickleSchedule}.get(class_name)

    plugins.register(Resolver(), name="pickle-test-resolver")
    model = toy_model_class(width=4, depth=1)
    PicklePipeline(model, PickleSchedule(3)).save_pretrained(folder)
    (folder / "model" / WEIGHTS).unlink()
    model.save_pretrained(folder / "model", safe_serialization=False)
    return model


def test_pipeline_refuses_a_pickle_component_unless_allow_pickle(tmp_path, toy_model_class):
    model = _pipeline_with_bin_model(tmp_path / "pipe", toy_model_class)
    with pytest.raises(PickleWeightsError, match="model/diffusion_pytorch_model.bin"):
        PicklePipeline.from_pretrained(tmp_path / "pipe")
    pipe = PicklePipeline.from_pretrained(tmp_path / "pipe", allow_pickle=True)
    assert torch.equal(pipe.model.layers[0].weight, model.layers[0].weight)


def test_pickle_weights_on_the_hub_are_refused_before_they_are_downloaded(olah_hub, tmp_path, toy_model_class, hub_requests):
    model = toy_model_class(width=4, depth=1)
    model.save_pretrained(tmp_path / "m", safe_serialization=False)
    repo_id, git = olah_hub.new_repo()
    git.commit({p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()})
    with pytest.raises(PickleWeightsError):
        toy_model_class.from_pretrained(repo_id)
    assert not [r for r in hub_requests if ".bin" in r]


def test_damaged_file_from_the_hub_names_the_cache_folder(olah_hub, tmp_path, toy_model_class):
    toy_model_class(width=4, depth=1).save_pretrained(tmp_path / "m")
    _damage("truncated", tmp_path / "m" / WEIGHTS)
    repo_id, git = olah_hub.new_repo()
    git.commit({p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()})
    with pytest.raises(CorruptWeightsError) as info:
        toy_model_class.from_pretrained(repo_id)
    cache = os.environ["HF_HUB_CACHE"]
    assert info.value.path.startswith(cache)
    assert "models--" + repo_id.replace("/", "--") in info.value.fix and "Hugging Face cache" in info.value.fix


# --------------------------------------------------------------------------- shards


@pytest.fixture
def sharded(tmp_path, toy_model_class):
    torch.manual_seed(0)
    toy_model_class(width=16, depth=3).save_pretrained(tmp_path / "model", max_shard_size=1500)
    return tmp_path / "model", toy_model_class


def _rewrite_index(folder, change):
    path = folder / "diffusion_pytorch_model.safetensors.index.json"
    index = json.loads(path.read_text())
    change(index["weight_map"])
    path.write_text(json.dumps(index))


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/tmp/outside.safetensors", "sub/x.safetensors",
                                   "..", "x.bin", "", 7])
def test_shard_index_naming_a_file_outside_its_folder_is_refused(sharded, shard):
    folder, model_class = sharded
    (folder.parent / "outside.safetensors").write_bytes((folder / next(folder.glob("*00001*")).name).read_bytes())
    _rewrite_index(folder, lambda weight_map: weight_map.update({next(iter(weight_map)): shard}))
    with pytest.raises(CorruptWeightsError) as info:
        model_class.from_pretrained(folder)
    assert info.value.path.endswith("diffusion_pytorch_model.safetensors.index.json")
    assert "not the name of a .safetensors file beside the index" in str(info.value)
    assert "A download cannot repair this" in str(info.value)


def test_damaged_shard_is_named(sharded):
    folder, model_class = sharded
    second = sorted(folder.glob("*-00002-of-*"))[0]
    _damage("truncated", second)
    with pytest.raises(CorruptWeightsError) as info:
        model_class.from_pretrained(folder)
    assert info.value.path == str(second)


def test_shard_index_nested_too_deep_is_a_config_file_error(sharded):
    folder, model_class = sharded
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text("[" * 100_000)
    with pytest.raises(ConfigFileError, match="nest deeper than 64 levels"):
        model_class.from_pretrained(folder)



class ForeignEncoder(torch.nn.Module):
    """A component of another library: a torch module with its own from_pretrained."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(2, 2)

    @classmethod
    def from_pretrained(cls, folder, **_):
        module = cls()
        module.load_state_dict(torch.load(folder / "pytorch_model.bin", weights_only=True))
        return module


class ForeignPipeline(DiffusionPipeline):
    def __init__(self, encoder, scheduler):
        super().__init__()
        self.register_modules(encoder=encoder, scheduler=scheduler)


def test_pipeline_refuses_pickle_weights_of_another_library_unless_allow_pickle(tmp_path):
    class Resolver:
        @plugins.hookimpl
        def pipeyard_resolve_component_class(self, library, class_name):
            return {"ForeignEncoder": ForeignEncoder, "PickleSchedule": PickleSchedule}.get(class_name)

    plugins.register(Resolver(), name="foreign-pickle-resolver")
    folder = tmp_path / "pipe"
    PickleSchedule(2).save_pretrained(folder / "scheduler")
    (folder / "encoder").mkdir()
    (folder / "encoder" / "config.json").write_text("{}")
    encoder = ForeignEncoder()
    torch.save(encoder.state_dict(), folder / "encoder" / "pytorch_model.bin")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "ForeignPipeline", "encoder": ["foreign", "ForeignEncoder"],
        "scheduler": ["foreign", "PickleSchedule"],
    }))
    with pytest.raises(PickleWeightsError, match="encoder/pytorch_model.bin") as info:
        ForeignPipeline.from_pretrained(folder)
    assert info.value.location == f"{folder}/encoder"
    pipe = ForeignPipeline.from_pretrained(folder, allow_pickle=True)
    assert torch.equal(pipe.encoder.proj.weight, encoder.proj.weight)
