"""Loading one pipeline component from its subfolder of a :class:`~pipeyard.hub.FileSource`.

Three kinds of component exist and each is read its own way:

* pipeyard models (:class:`~pipeyard.modeling.ModelMixin`): config + the chosen weight files;
* config-only objects (schedulers): their config file;
* everything else (transformers models, tokenizers, image processors, plugin classes): the
  class's own ``from_pretrained`` on the local subfolder, after fetching the subfolder's files
  (for weights, only the format and variant asked for).

Pickle weights (``.bin``) are loaded for either kind of model only with
``LoadOptions.allow_pickle``; without it they are refused before they are downloaded.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .. import errors
from ..configuration import ConfigMixin
from ..hub import FileSource
from .components import LoadOptions

logger = logging.getLogger(__name__)

# transformers weight files: model[.variant][-00001-of-00002].safetensors, pytorch_model...bin,
# and their .index[.variant].json
_HF_WEIGHTS = re.compile(
    r"^(?P<stem>model|pytorch_model|tf_model|flax_model)(?:\.(?P<variant>[\w-]+?))?"
    r"(?:-\d{5}-of-\d{5})?\.(?P<ext>safetensors|bin|h5|msgpack)(?:\.index(?:\.[\w-]+)?\.json)?$"
)
_HF_INDEX = re.compile(r"^(model|pytorch_model)\.(safetensors|bin)\.index(?:\.(?P<variant>[\w-]+))?\.json$")


def load_component(name: str, cls: type, source: FileSource, options: LoadOptions) -> Any:
    """Load component ``name`` (an instance of ``cls``) from ``source/<name>/``.

    Raises:
        EntryNotFoundError: the repo has no ``<name>/`` subfolder.
        PickleWeightsError: its weights are pickle files and ``options.allow_pickle`` is False.
    """
    names = source.under(name)
    if not names:
        raise source.missing(f"component folder {name}/", errors.EntryNotFoundError(
            source.location, f"{name}/", source.commit,
            hint=f"model_index.json lists component {name!r} but the repository has no such "
            f"subfolder; pass {name}=<object> to from_pretrained or fix the repository",
        ))
    from ..modeling import ModelMixin

    if issubclass(cls, ModelMixin):
        return cls._from_source(
            source, name, torch_dtype=options.dtype_for(name), variant=options.variant,
            use_safetensors=options.use_safetensors, device=options.device,
            low_cpu_mem_usage=options.low_cpu_mem_usage, allow_pickle=options.allow_pickle, overrides={},
        )
    if issubclass(cls, ConfigMixin):
        root = source.fetch(f"{name}/{n}" for n in names)
        return cls.from_pretrained(root, subfolder=name)
    files = _files_for_foreign_class(names, options)
    pickles = [n for n in files if (m := _HF_WEIGHTS.match(n)) and m.group("ext") == "bin"]
    if pickles and not options.allow_pickle:
        raise errors.PickleWeightsError(f"{source.location}/{name}", [f"{name}/{n}" for n in pickles])
    # The class reads its folder itself, any file of it: a local folder's files must all be
    # inside (fetch checks them); from the Hub only the picked ones are downloaded.
    root = source.fetch(f"{name}/{n}" for n in (names if source.is_local else files))
    return _foreign_from_pretrained(cls, root / name, name, options)


def _files_for_foreign_class(names: list[str], options: LoadOptions) -> list[str]:
    """All non-weight files, plus the weights of one format and variant (safetensors first)."""
    others = [n for n in names if not _HF_WEIGHTS.match(n)]
    weights = [n for n in names if _HF_WEIGHTS.match(n)]
    for ext in ("safetensors", "bin"):
        if options.use_safetensors is False and ext == "safetensors":
            continue
        if options.use_safetensors and ext == "bin":
            continue
        picked = [n for n in weights if _matches(n, ext, options.variant)]
        if picked:
            return others + picked
    return others


def _matches(name: str, ext: str, variant: str | None) -> bool:
    match = _HF_WEIGHTS.match(name)
    if not match or match.group("ext") != ext:
        return False
    index = _HF_INDEX.match(name)
    found_variant = index.group("variant") if index else match.group("variant")
    return found_variant == variant


def _foreign_from_pretrained(cls: type, folder: Any, name: str, options: LoadOptions) -> Any:
    """Call a non-pipeyard class's ``from_pretrained`` with the options it understands."""
    loader = getattr(cls, "from_pretrained", None)
    if loader is None:
        raise errors.ComponentError(
            f"component {name!r} is a {cls.__name__}, which has no from_pretrained(); pass "
            f"{name}=<object> to from_pretrained instead"
        )
    kwargs: dict[str, Any] = {}
    if getattr(loader, "__module__", "").startswith("transformers"):
        # A repository's config (auto_map) must never pick code to run: transformers asks
        # interactively, or runs it, unless told no (transformers CVE-2026-5241).
        kwargs["trust_remote_code"] = False
    if _is_torch_module(cls):
        dtype = options.dtype_for(name)
        if dtype is not None:
            kwargs[_dtype_keyword(loader)] = dtype
        if options.variant is not None:
            kwargs["variant"] = options.variant
        if options.use_safetensors is not None:
            kwargs["use_safetensors"] = options.use_safetensors
    component = loader(folder, **kwargs)
    if options.device is not None and _is_torch_module(cls):
        component = component.to(options.device)
    return component


def _is_torch_module(cls: type) -> bool:
    import torch

    return issubclass(cls, torch.nn.Module)


def _dtype_keyword(loader: Any) -> str:
    """transformers >= 4.56 takes ``dtype`` (and warns on ``torch_dtype``); older ones ``torch_dtype``."""
    if not getattr(loader, "__module__", "").startswith("transformers"):
        return "torch_dtype"
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
