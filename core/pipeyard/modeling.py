"""ModelMixin: the weight I/O every pipeyard model shares.

A saved model is a folder in diffusers' layout::

    config.json                                       the __init__ arguments (ConfigMixin)
    diffusion_pytorch_model[.<variant>].safetensors   the weights, or .bin (torch.save)
    diffusion_pytorch_model[.<variant>]-00001-of-00003.safetensors   ... when sharded, with
    diffusion_pytorch_model.safetensors.index[.<variant>].json      the key -> shard map

Weight files are data from a stranger: :mod:`pipeyard.checkpoints` checks each safetensors file
against its own header before it is read, refuses pickle (``.bin``) weights unless the caller
passes ``allow_pickle=True``, and keeps shards beside their index.

Loading checks the checkpoint against the model *before* reading tensor data (names and shapes
come from the safetensors headers), so a wrong checkpoint fails fast with every missing,
unexpected and mis-shaped key named. With ``low_cpu_mem_usage=True`` (the default) parameters
are created on the meta device, so no memory is spent on random initial weights, and the loaded
tensors are assigned in place: peak memory is about one copy of the weights.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from . import constants, errors
from .checkpoints import load_checkpoint_file, read_checkpoint_shapes, shards_from_index
from .configuration import ConfigMixin
from .fileio import atomic_replace, read_json_file, write_json_atomic

logger = logging.getLogger(__name__)

M = TypeVar("M", bound="ModelMixin")
PathLike = str | os.PathLike[str]

_WEIGHTS_STEM = "diffusion_pytorch_model"
_FORMATS = ("safetensors", "bin")
# diffusion_pytorch_model[.variant][-00001-of-00002].(safetensors|bin)
_WEIGHT_FILE = re.compile(
    rf"^{_WEIGHTS_STEM}(?:\.(?P<variant>[\w-]+?))?(?:-\d{{5}}-of-\d{{5}})?\.(?P<fmt>safetensors|bin)$"
)
# diffusion_pytorch_model.(safetensors|bin).index[.variant].json
_INDEX_FILE = re.compile(rf"^{_WEIGHTS_STEM}\.(?P<fmt>safetensors|bin)\.index(?:\.(?P<variant>[\w-]+))?\.json$")


def add_variant(name: str, variant: str | None) -> str:
    """``diffusion_pytorch_model.safetensors`` -> ``diffusion_pytorch_model.fp16.safetensors``."""
    if not variant:
        return name
    stem, _, ext = name.rpartition(".")
    return f"{stem}.{variant}.{ext}"


def weights_name(fmt: str, variant: str | None = None) -> str:
    return add_variant(f"{_WEIGHTS_STEM}.{fmt}", variant)


def index_name(fmt: str, variant: str | None = None) -> str:
    return add_variant(f"{_WEIGHTS_STEM}.{fmt}.index.json", variant)


# ---------------------------------------------------------------------- choosing files


@dataclass(frozen=True)
class WeightFiles:
    """The files that hold one checkpoint: one file, or an index and its shards."""

    fmt: str
    files: tuple[str, ...]
    index: str | None = None


def available_variants(names: list[str]) -> set[str | None]:
    found: set[str | None] = set()
    for name in names:
        match = _WEIGHT_FILE.match(name) or _INDEX_FILE.match(name)
        if match:
            found.add(match.group("variant"))
    return found


def select_weight_files(
    names: list[str], location: str, variant: str | None, use_safetensors: bool | None
) -> WeightFiles:
    """Pick the checkpoint among ``names`` (files of one folder) for a variant and format.

    safetensors is preferred; ``.bin`` is chosen when no safetensors file exists and
    ``use_safetensors`` is not True. ``use_safetensors=False`` asks for ``.bin`` only. (Loading
    a ``.bin`` file then needs ``allow_pickle=True``; the caller checks that.)

    Raises:
        VariantNotFoundError: no weights for this variant, while other variants exist.
        WeightsNotFoundError: no weights of the allowed formats at all.
    """
    formats = _FORMATS if use_safetensors is None else (("safetensors",) if use_safetensors else ("bin",))
    present = set(names)
    for fmt in formats:
        if index_name(fmt, variant) in present:
            return WeightFiles(fmt, (), index_name(fmt, variant))
        if weights_name(fmt, variant) in present:
            return WeightFiles(fmt, (weights_name(fmt, variant),))
    variants = available_variants(names)
    if variants and variant not in variants:
        raise errors.VariantNotFoundError(location, variant, [v or "None" for v in variants])
    looked_for = [name for fmt in formats for name in (weights_name(fmt, variant), index_name(fmt, variant))]
    hint = ""
    if use_safetensors and any(n.endswith(".bin") for n in names):
        hint = (
            "Only .bin (pickle) weights exist: pass use_safetensors=None (or False) and, if you trust "
            "them, allow_pickle=True to load them"
        )
    raise errors.WeightsNotFoundError(location, looked_for, hint)


# ---------------------------------------------------------------------- building


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create every ``nn.Parameter`` registered in this block on the meta device.

    Buffers stay real, so tables computed in ``__init__`` (non-persistent buffers, tokenizer
    position ids) keep their values; parameters cost no memory and no initialisation time,
    since ``reset_parameters`` on a meta tensor does nothing.
    """
    original = torch.nn.Module.register_parameter

    def register_on_meta(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    torch.nn.Module.register_parameter = register_on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = original  # type: ignore[method-assign]


# ---------------------------------------------------------------------- the mixin


class ModelMixin(torch.nn.Module, ConfigMixin):
    """Base class of pipeyard models: config + diffusers-compatible weight files.

    Subclasses decorate ``__init__`` with ``@register_to_config`` and may override
    :meth:`_rename_checkpoint_keys` to read checkpoints written with older key names.
    """

    config_name = constants.CONFIG_NAME

    def __setattr__(self, name: str, value: Any) -> None:
        # nn.Module routes attribute writes through its own __setattr__; the config is not a
        # module attribute and must stay unassignable from outside.
        if name == "config":
            raise errors.FrozenConfigError("assigning model.config")
        super().__setattr__(name, value)

    # ------------------------------------------------------------------ properties

    @property
    def device(self) -> torch.device:
        """Device of the first parameter (or buffer)."""
        for tensor in self._tensors():
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the first floating-point parameter (or buffer)."""
        for tensor in self._tensors():
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.get_default_dtype()

    def _tensors(self) -> Iterator[torch.Tensor]:
        yield from self.parameters()
        yield from self.buffers()

    def num_parameters(self, only_trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)

    @classmethod
    def _rename_checkpoint_keys(cls, keys: list[str]) -> dict[str, str]:
        """Map checkpoint key names to this model's names (``{}``: they are the same).

        Override to read checkpoints written by older code (e.g. attention ``query`` ->
        ``to_q``). Return only the keys that change.
        """
        return {}

    # ------------------------------------------------------------------ saving

    def save_pretrained(
        self,
        save_directory: PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str = "5GB",
        **_: Any,
    ) -> None:
        """Write ``config.json`` and the weights (sharded above ``max_shard_size``) to a folder.

        ``max_shard_size`` is a number of bytes or a string such as ``"5GB"`` or ``"500MB"``
        (huggingface_hub's units: KB, MB, GB, TB). Every file is written to a temp name and moved
        into place; weight files of an earlier save with the same format and variant that the new
        save does not use are removed. A bad argument is refused before anything is written.
        """
        from huggingface_hub import split_torch_state_dict_into_shards

        directory = Path(save_directory)
        if directory.is_file():
            raise errors.WeightsError(f"cannot save {type(self).__name__} into {directory}: it is a file")
        fmt = "safetensors" if safe_serialization else "bin"
        state_dict = {k: v.detach() for k, v in self.state_dict().items()}
        pattern = weights_name(fmt, variant).replace(f".{fmt}", f"{{suffix}}.{fmt}")
        split = split_torch_state_dict_into_shards(state_dict, filename_pattern=pattern, max_shard_size=max_shard_size)
        directory.mkdir(parents=True, exist_ok=True)
        self.save_config(directory)
        for filename, keys in split.filename_to_tensors.items():
            shard = {key: state_dict[key].contiguous() for key in keys}
            _save_shard_atomic(directory / filename, shard, fmt)
        index_path = directory / index_name(fmt, variant)
        if split.is_sharded:
            write_json_atomic(index_path, {"metadata": dict(split.metadata), "weight_map": split.tensor_to_filename})
        keep = {*split.filename_to_tensors, *([index_path.name] if split.is_sharded else [])}
        _remove_stale_weights(directory, fmt, variant, keep)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls: type[M],
        pretrained_model_name_or_path: PathLike,
        *,
        subfolder: str | None = None,
        torch_dtype: torch.dtype | None = None,
        variant: str | None = None,
        use_safetensors: bool | None = None,
        device: torch.device | str | None = None,
        low_cpu_mem_usage: bool = True,
        allow_pickle: bool = False,
        revision: str | None = None,
        cache_dir: PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        proxies: str | Mapping[str, str] | None = None,
        endpoint: str | None = None,
        **overrides: Any,
    ) -> M:
        """Load a model from a local folder or a Hub repo in diffusers' layout.

        Only the config and the chosen weight files are downloaded. Extra keywords override
        config values. ``revision``, ``token``, ``cache_dir``, ``local_files_only``, ``proxies``
        and ``endpoint`` say how the Hub is reached (:class:`~pipeyard.hub.HubOptions`).
        safetensors weights are preferred, and checked against their own header
        before they are read. Pickle weights (``.bin``), used when a repository has nothing else,
        need ``allow_pickle=True`` (unpickling can run code); they are then read with
        ``torch.load(weights_only=True)``, which accepts tensors only.

        Example::

            unet = UNet2DModel.from_pretrained("google/ddpm-cifar10-32", torch_dtype=torch.float16)

        Raises:
            WeightsNotFoundError, VariantNotFoundError: no suitable weight files.
            PickleWeightsError: only pickle weights, and ``allow_pickle`` is False.
            CorruptWeightsError: a weights file or shard index is damaged or malformed.
            StateDictMismatchError: missing or unexpected keys (first 20 of each, and counts).
            ShapeMismatchError: keys whose shapes differ, with both shapes.
            InvalidRepoIdError, InvalidSubfolderError, HubOptionError: before any request.
        """
        from . import hub

        hub.check_subfolder(subfolder)
        options = hub.HubOptions(revision, token, cache_dir, local_files_only, proxies, endpoint)
        source = hub.open_source(pretrained_model_name_or_path, options)
        return cls._from_source(
            source, subfolder, torch_dtype=torch_dtype, variant=variant, use_safetensors=use_safetensors,
            device=device, low_cpu_mem_usage=low_cpu_mem_usage, allow_pickle=allow_pickle, overrides=overrides,
        )

    @classmethod
    def _from_source(
        cls: type[M],
        source: Any,
        subfolder: str | None,
        *,
        torch_dtype: torch.dtype | None,
        variant: str | None,
        use_safetensors: bool | None,
        device: torch.device | str | None,
        low_cpu_mem_usage: bool,
        overrides: Mapping[str, Any],
        allow_pickle: bool = False,
    ) -> M:
        prefix = f"{subfolder.strip('/')}/" if subfolder else ""
        location = f"{source.location}/{prefix}".rstrip("/")
        names = source.under(subfolder)
        if cls.config_name not in names:
            raise source.missing(prefix + cls.config_name, errors.EntryNotFoundError(location, cls.config_name, source.commit))
        try:
            chosen = select_weight_files(names, location, variant, use_safetensors)
        except errors.WeightsError as exc:
            raise source.missing(f"the weights in {prefix or './'} (variant {variant!r})", exc) from exc
        weight_files = [prefix + f for f in (chosen.index or "", *chosen.files) if f]
        if chosen.fmt == "bin" and not allow_pickle:  # refused before anything is downloaded
            raise errors.PickleWeightsError(location, weight_files)
        root = source.fetch([prefix + cls.config_name, *weight_files])
        folder = root / prefix if prefix else root
        if chosen.index:
            shards = shards_from_index(folder / chosen.index, chosen.fmt)
            root = source.fetch([prefix + s for s in shards])
            folder = root / prefix if prefix else root
            chosen = WeightFiles(chosen.fmt, tuple(shards), chosen.index)
        config = read_json_file(folder / cls.config_name)
        config["_name_or_path"] = os.fspath(source.location)
        paths = [folder / name for name in chosen.files]
        return cls._build_and_load(config, overrides, paths, chosen.fmt, torch_dtype, device, low_cpu_mem_usage)

    @classmethod
    def _build_and_load(
        cls: type[M],
        config: dict[str, Any],
        overrides: Mapping[str, Any],
        paths: list[Path],
        fmt: str,
        dtype: torch.dtype | None,
        device: torch.device | str | None,
        low_cpu_mem_usage: bool,
    ) -> M:
        target = torch.device(device) if device is not None else torch.device("cpu")
        with parameters_on_meta() if low_cpu_mem_usage else contextlib.nullcontext():
            where = os.fspath(paths[0].parent / cls.config_name) if paths else str(config.get("_name_or_path"))
            model = cls.from_file_config(config, where, **overrides)
        checkpoint = ", ".join(os.fspath(p) for p in paths)
        shapes: dict[str, tuple[int, ...]] = {}
        for path in paths:
            shapes.update(read_checkpoint_shapes(path, fmt))
        rename = cls._rename_checkpoint_keys(list(shapes))
        shapes = {rename.get(k, k): v for k, v in shapes.items()}
        _check_keys_and_shapes(model, shapes, cls.__name__, checkpoint)
        state_dict: dict[str, torch.Tensor] = {}
        for path in paths:
            state_dict.update(load_checkpoint_file(path, fmt, target, dtype, rename))
        model.load_state_dict(state_dict, strict=True, assign=low_cpu_mem_usage)
        del state_dict
        model.to(device=target, dtype=dtype)
        return model.eval()


# ---------------------------------------------------------------------- helpers


def _check_keys_and_shapes(
    model: torch.nn.Module, checkpoint: Mapping[str, tuple[int, ...]], class_name: str, where: str
) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(checkpoint))
    unexpected = sorted(set(checkpoint) - set(expected))
    if missing or unexpected:
        raise errors.StateDictMismatchError(class_name, where, missing, unexpected)
    mismatched = [(k, checkpoint[k], expected[k]) for k in sorted(expected) if checkpoint[k] != expected[k]]
    if mismatched:
        raise errors.ShapeMismatchError(class_name, where, mismatched)


def _save_shard_atomic(path: Path, tensors: dict[str, torch.Tensor], fmt: str) -> None:
    with atomic_replace(path) as tmp:
        if fmt == "safetensors":
            from safetensors.torch import save_file

            save_file(tensors, tmp, metadata={"format": "pt"})
        else:
            torch.save(tensors, tmp)


def _remove_stale_weights(directory: Path, fmt: str, variant: str | None, keep: set[str]) -> None:
    for path in directory.iterdir():
        match = _WEIGHT_FILE.match(path.name) or _INDEX_FILE.match(path.name)
        if match and match.group("fmt") == fmt and match.group("variant") == variant and path.name not in keep:
            path.unlink()
