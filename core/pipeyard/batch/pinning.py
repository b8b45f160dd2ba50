"""Pinning: the driver decides once what code and weights the job runs; workers check and obey.

On the driver (:func:`pin_job`), once per job:

* the custom pipeline (or the module a model_index.json names) goes through the host like any
  load: resolve, fetch, verify, the trust gate, import. Its files are then read back and
  re-hashed: a :class:`PinnedCode` holds the bytes, their package sha256 and the commit;
* a Hub model's revision is resolved to a commit; a local model folder is fingerprinted (the
  sha256 of every file's sha256).

On a worker (:func:`load_pinned_pipeline`), once per worker process:

* the bytes are hashed again and compared with the pin before anything is written or imported;
  they are then loaded as a local file of the worker (the host verifies them again), and the
  loaded class's sha256 must be the pin's. Nothing is resolved by name on a worker, and no
  trust is granted there: the one trust decision was the driver's, on these exact bytes;
* weights come from the pinned commit (Hub) or from a folder whose fingerprint matches.

A pipeline of an installed entry point is code installed on every node; a worker loads it by
its registered name and checks its sha256 against the pin.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import errors


#: The ``torch_dtype`` names a job may ask for (strings: a job travels to workers as data).
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class PinnedCode:
    """A verified, trusted pipeline package, as the driver loaded it.

    Attributes:
        name: what named it (the ``custom_pipeline`` value, or ``model_index.json``).
        kind: the host's source kind name (``BUNDLED``, ``HUB``, ``ENTRY_POINT``...).
        sha256: the package digest (what the trust store records).
        commit: the commit it came from, when remote.
        class_name: the pipeline class.
        main: the pipeline file, relative to the package.
        files: every file's bytes (empty for an entry point).
    """

    name: str
    kind: str
    sha256: str
    commit: str | None
    class_name: str
    main: str
    files: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    def record(self) -> dict[str, Any]:
        """What the manifest says about the code."""
        return {"name": self.name, "kind": self.kind, "sha256": self.sha256, "commit": self.commit,
                "class": self.class_name}


@dataclass(frozen=True)
class PinnedModel:
    """The model at one revision.

    Attributes:
        location: an absolute folder, or a Hub repo id.
        revision: the Hub commit, or ``sha256:<fingerprint>`` of a local folder.
        endpoint, cache_dir, local_files_only: how workers reach the Hub (never a token:
            give workers ``HF_TOKEN`` in their environment).
    """

    location: str
    revision: str
    is_hub: bool
    endpoint: str | None = None
    cache_dir: str | None = None
    local_files_only: bool = False

    def hub_keywords(self) -> dict[str, Any]:
        """The ``from_pretrained`` keywords that pin the weights."""
        if not self.is_hub:
            return {}
        return {"revision": self.revision, "endpoint": self.endpoint, "cache_dir": self.cache_dir,
                "local_files_only": self.local_files_only}


@dataclass(frozen=True)
class PinnedJob:
    """Everything a worker needs to build the job's pipeline, with nothing left to resolve."""

    model: PinnedModel
    code: PinnedCode | None
    builtin_class: str | None
    torch_dtype: str | None = None
    device: str | None = None
    allow_pickle: bool = False

    def pipeline_key(self) -> str:
        """The part of every item's hash that says which code runs."""
        return self.code.sha256 if self.code is not None else f"builtin:{self.builtin_class}"


# --------------------------------------------------------------------------- on the driver


def pin_job(
    model: str | os.PathLike[str],
    *,
    custom_pipeline: str | None = None,
    custom_revision: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    hub_options: Mapping[str, Any] | None = None,
    torch_dtype: str | None = None,
    device: str | None = None,
    allow_pickle: bool = False,
) -> tuple[PinnedJob, type]:
    """Resolve, verify and trust-check the job's code; pin it and the model's revision.

    Returns:
        The pinned job, and the pipeline class as loaded here (to check the items against).

    Raises:
        What :func:`pipeyard.host.load_pipeline_class` and :func:`pipeyard.hub.open_source`
        raise (UntrustedCodeError, PipelineNotFoundError, the Hub errors...).
    """
    from .. import hub

    if torch_dtype is not None and torch_dtype not in DTYPES:
        raise errors.JobSpecError("torch_dtype", f"{errors.clip(repr(torch_dtype))} is not a dtype name",
                                  f"use one of {', '.join(DTYPES)}")
    extra = dict(hub_options or {})
    options = hub.HubOptions(revision=revision, token=extra.get("token"), cache_dir=extra.get("cache_dir"),
                             local_files_only=bool(extra.get("local_files_only", False)),
                             endpoint=extra.get("endpoint"))
    source = hub.open_source(model, options)
    pinned_model = _pin_model(source, extra)
    if custom_pipeline is not None:
        cls = _host_class(str(custom_pipeline), custom_revision, trust_remote_code, source)
        return PinnedJob(pinned_model, pin_code(cls, str(custom_pipeline)), None, torch_dtype, device,
                         allow_pickle), cls
    model_index = _model_index(source)
    cls = _repository_class(model_index, source, trust_remote_code)
    if cls is None:
        builtin = _builtin_class(model_index.get("_class_name"), source.location)
        return PinnedJob(pinned_model, None, builtin.__name__, torch_dtype, device, allow_pickle), builtin
    return PinnedJob(pinned_model, pin_code(cls, "model_index.json"), None, torch_dtype, device, allow_pickle), cls


def _host_class(custom_pipeline: str, custom_revision: str | None, trust_remote_code: bool, source: Any) -> type:
    from .. import host

    return host.load_pipeline_class(custom_pipeline, custom_revision=custom_revision,
                                    trust_remote_code=trust_remote_code, hub_options=source.options)


def _repository_class(model_index: Mapping[str, Any], source: Any, trust_remote_code: bool) -> type | None:
    from .. import host

    return host.load_repository_pipeline_class(model_index, source, trust_remote_code=trust_remote_code)


def _builtin_class(name: Any, location: str) -> type:
    import pipeyard

    from ..names import BUILTIN_PIPELINES

    if not isinstance(name, str) or name not in BUILTIN_PIPELINES:
        raise errors.JobSpecError(
            f"{location}/model_index.json", f"_class_name {errors.clip(repr(name))} is no built-in pipeline",
            f"pass custom_pipeline=..., or use a model of {', '.join(sorted(BUILTIN_PIPELINES))}",
        )
    return getattr(pipeyard, name)


def _model_index(source: Any) -> dict[str, Any]:
    from ..fileio import read_json_file

    folder = source.fetch(["model_index.json"])
    return read_json_file(Path(folder) / "model_index.json")


def _pin_model(source: Any, extra: Mapping[str, Any]) -> PinnedModel:
    if source.commit is not None:
        return PinnedModel(source.location, source.commit, True, extra.get("endpoint"),
                           extra.get("cache_dir"), bool(extra.get("local_files_only", False)))
    folder = os.path.abspath(source.location)
    return PinnedModel(folder, folder_fingerprint(folder), False)


def folder_fingerprint(folder: str | os.PathLike[str]) -> str:
    """``sha256:<hex>`` over every file's relative path and sha256 (``.git`` and ``.cache`` skipped)."""
    root = Path(folder)
    lines = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if path.is_file() and not {".git", ".cache"} & set(parts):
            lines.append(f"{_file_sha256(path)}  {'/'.join(parts)}\n")
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pin_code(cls: type, name: str) -> PinnedCode:
    """The verified bytes of a class the host loaded, re-hashed against its provenance.

    Raises:
        PinMismatchError: the files changed between the load and this read.
    """
    from ..host import cache, provenance

    found = provenance.provenance_of(cls)
    if found is None:  # pragma: no cover - the host stamps every class it returns
        raise errors.GenerateError(f"{cls.__name__} was not loaded by pipeyard's host; it cannot be pinned")
    if found.root is None:  # an entry point: installed code, loaded by name on each node
        return PinnedCode(found.location, found.kind, found.sha256, None, cls.__name__, found.main)
    files = {rel: Path(found.root, *rel.split("/")).read_bytes() for rel in found.files}
    actual = cache.package_digest(cache.package_hashes(files))
    if actual != found.sha256:
        raise errors.PinMismatchError("pipeline code", found.root, found.sha256, actual)
    return PinnedCode(name, found.kind, found.sha256, found.commit, cls.__name__, found.main, files)


# --------------------------------------------------------------------------- on a worker


def load_pinned_pipeline(job: PinnedJob) -> Any:
    """Build the job's pipeline on this process from the pinned code and weights.

    Raises:
        PinMismatchError: the code bytes or the model folder differ from the pin.
    """
    import torch

    from .. import DiffusionPipeline

    if not job.model.is_hub:
        _check_model_folder(job.model)
    dtype = getattr(torch, job.torch_dtype) if job.torch_dtype else None
    keywords = {**job.model.hub_keywords(), "torch_dtype": dtype, "allow_pickle": job.allow_pickle}
    if job.code is None:
        pipe = DiffusionPipeline.from_pretrained(job.model.location, **keywords)
    elif job.code.kind == "ENTRY_POINT":
        pipe = DiffusionPipeline.from_pretrained(job.model.location, custom_pipeline=job.code.name, **keywords)
    else:
        pipe = _from_pinned_files(job.code, job.model.location, keywords)
    _check_loaded_code(pipe, job.code)
    return pipe.to(job.device) if job.device else pipe


def _from_pinned_files(code: PinnedCode, model: str, keywords: dict[str, Any]) -> Any:
    """Check the bytes, write them to a private folder, load them as the worker's local file."""
    from .. import DiffusionPipeline
    from ..host import cache

    actual = cache.package_digest(cache.package_hashes(code.files))
    if actual != code.sha256:
        raise errors.PinMismatchError("pipeline code", f"the bytes sent for {code.name}", code.sha256, actual)
    with tempfile.TemporaryDirectory(prefix="pipeyard-pinned-") as folder:
        for rel, data in code.files.items():
            path = Path(folder, *rel.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return DiffusionPipeline.from_pretrained(model, custom_pipeline=str(Path(folder, *code.main.split("/"))),
                                                 **keywords)


def _check_loaded_code(pipe: Any, code: PinnedCode | None) -> None:
    if code is None:
        return
    from ..host import provenance

    found = provenance.provenance_of(type(pipe))
    actual = found.sha256 if found is not None else "(no provenance)"
    if actual != code.sha256:
        raise errors.PinMismatchError("pipeline code", code.name, code.sha256, actual)


def _check_model_folder(model: PinnedModel) -> None:
    if not os.path.isdir(model.location):
        raise errors.PinMismatchError("model files", model.location, model.revision, "(no such folder on this node)")
    actual = folder_fingerprint(model.location)
    if actual != model.revision:
        raise errors.PinMismatchError("model files", model.location, model.revision, actual)
