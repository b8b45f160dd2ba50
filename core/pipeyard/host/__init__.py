"""The custom-pipeline host: a name in, exactly one verified, trusted, imported class out.

One step per module, in the order they run::

    resolve.py   name + revision      -> Source          (no network)
    fetch.py     Source               -> files as bytes   (Hub via hub.py, GitHub raw URLs)
    cache.py     files                -> stored package   (content-addressed, locked, atomic)
    verify.py    stored package       -> class name, requirements   (ast only, nothing runs)
    trust.py     source + digest      -> allowed, or UntrustedCodeError (and, before fetch,
                                         refused when no content could be allowed)
    importer.py  stored package       -> module -> the class

:func:`load_pipeline_class` is the single entry point; ``DiffusionPipeline.from_pretrained``
calls it. ``import pipeyard.host`` imports neither torch nor any model code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .. import errors
from ..hub import HubOptions
from . import cache, fetch, importer, provenance, resolve, trust, verify
from .resolve import Source, SourceKind

__all__ = ["Source", "SourceKind", "load_pipeline_class"]

# digest -> verified facts; content-addressed, so valid for the life of the process.
_VERIFIED: dict[str, verify.PipelineFileInfo] = {}
# (digest, installed environment) pairs whose requirements were met.
_REQUIREMENTS_MET: set[tuple[str, object]] = set()


def load_pipeline_class(
    custom_pipeline: str | os.PathLike[str] | None = None,
    *,
    custom_revision: str | None = None,
    trust_remote_code: bool = False,
    pretrained: Any = None,
    embedded_class: Sequence[str] | None = None,
    hub_options: HubOptions | None = None,
    refresh: bool = False,
) -> type:
    """Resolve, fetch, verify, trust-check and import a custom pipeline; return its class.

    Args:
        custom_pipeline: a local ``.py`` file, a local folder with ``pipeline.py``, an entry
            point name (group ``pipeyard.pipelines``), a bundled community name, or a Hub repo
            id. None to use ``embedded_class``.
        custom_revision: branch, tag or commit: of the Hub repo (default ``main``), or of
            pipeyard's GitHub ``community/`` folder for a community name (default: the
            bundled copy, no network).
        trust_remote_code: allow code that is neither bundled, local, installed nor in the
            trust store (see :mod:`pipeyard.host.trust`).
        pretrained: the model repo being loaded: the :class:`pipeyard.hub.FileSource` it was
            opened as (preferred: same commit), a local folder, or a Hub repo id. Only used
            with ``embedded_class``.
        embedded_class: model_index.json's ``_class_name`` when it is a
            ``[module_file, ClassName]`` pair: that module of ``pretrained`` is loaded.
        hub_options: how Hub sources are reached (token, cache_dir, local_files_only,
            proxies, endpoint); its ``revision`` is not used: ``custom_revision`` says which
            revision of a Hub pipeline, and a repo-embedded module comes from ``pretrained``'s.
        refresh: ignore the resolution record and ask the Hub / GitHub again.

    Returns:
        The one ``DiffusionPipeline`` subclass the file defines.

    Raises:
        PipelineNotFoundError, InvalidPipelineNameError, PipelineVerificationError (and its
        leaves), UntrustedCodeError, RequirementsError, PipelineImportError, and the Hub
        errors of :mod:`pipeyard.errors` (OfflineError when offline without a record).

    Example:
        >>> cls = load_pipeline_class("one_step_unet")  # doctest: +SKIP
        >>> cls.__name__  # doctest: +SKIP
        'UnetSchedulerOneForwardPipeline'
    """
    source = _source_for(custom_pipeline, custom_revision, pretrained, embedded_class)
    trust.refuse_before_fetch(source)
    options = hub_options or HubOptions()
    if source.kind is SourceKind.ENTRY_POINT:
        return _load_entry_point(source)
    stored, commit = _stored_package(source, pretrained, options, refresh)
    info = _verified(stored)
    _check_expected_class(source, info, str(stored.main_path))
    trust.require_trust(
        source, stored.digest, commit=commit, path=str(stored.main_path), trust_remote_code=trust_remote_code
    )
    _check_requirements(stored, info)
    module = importer.import_stored_module(stored)
    cls = importer.pipeline_class_of(module, info.class_name, str(stored.main_path))
    return provenance.stamp(cls, provenance.Provenance(
        source.kind.name, source.describe(), source.location, source.revision, commit,
        stored.digest, str(stored.root), stored.main, tuple(stored.files),
    ))


def _source_for(
    custom_pipeline: Any, custom_revision: str | None, pretrained: Any, embedded_class: Sequence[str] | None
) -> Source:
    if custom_pipeline is not None:
        return resolve.resolve_source(custom_pipeline, custom_revision=custom_revision)
    if embedded_class is None or pretrained is None:
        raise errors.PipelineNotFoundError(
            "None", ["no custom_pipeline was given and model_index.json names no [module, Class] pair"]
        )
    if len(embedded_class) != 2:
        raise errors.InvalidPipelineNameError(
            str(embedded_class), "expected [module_file, ClassName]", "_class_name"
        )
    location = getattr(pretrained, "location", pretrained)
    revision = getattr(pretrained, "commit", None)
    return resolve.embedded_source(os.fspath(location), (embedded_class[0], embedded_class[1]), revision)


def _stored_package(
    source: Source, pretrained: Any, options: HubOptions, refresh: bool
) -> tuple[cache.StoredPackage, str | None]:
    """The source's files in the module store, and the commit they come from."""
    if source.kind is SourceKind.EMBEDDED and hasattr(pretrained, "fetch"):
        fetched = fetch.fetch_from_file_source(pretrained, source.filename)
    elif _uses_record(source):
        return _stored_remote(source, options, refresh)
    else:
        fetched = fetch.fetch_package(source, options)
    return cache.store_package(fetched.files, fetched.main), fetched.commit


def _uses_record(source: Source) -> bool:
    if source.kind is SourceKind.EMBEDDED:
        return not os.path.isdir(source.location)
    return source.kind in (SourceKind.HUB, SourceKind.GITHUB)


def _stored_remote(
    source: Source, options: HubOptions, refresh: bool
) -> tuple[cache.StoredPackage, str | None]:
    """A Hub / GitHub package: from its resolution record when there is one, else fetched."""
    key = source.record_key()
    record = None if refresh else cache.read_record(key)
    if record is not None:
        stored = cache.load_package(record.digest)
        if stored is not None:
            return stored, record.commit
    if options.offline:
        raise errors.OfflineError(source.describe(), f"{options.offline_reason}, it was never loaded before,")
    fetched = fetch.fetch_package(source, options)
    stored = cache.store_package(fetched.files, fetched.main)
    cache.write_record(key, cache.ResolutionRecord(fetched.commit, stored.digest, fetched.origin))
    return stored, fetched.commit


def _verified(stored: cache.StoredPackage) -> verify.PipelineFileInfo:
    info = _VERIFIED.get(stored.digest)
    if info is None:
        info = verify.verify_package(stored.read_all(), stored.main, str(stored.root))
        _VERIFIED[stored.digest] = info
    return info


def _check_expected_class(source: Source, info: verify.PipelineFileInfo, path: str) -> None:
    if source.class_name and source.class_name != info.class_name:
        raise errors.PipelineVerificationError(
            path, f"{source.describe()} names class {source.class_name!r}, but the file defines "
            f"{info.class_name!r} (line {info.line})"
        )


def _check_requirements(stored: cache.StoredPackage, info: verify.PipelineFileInfo) -> None:
    """Requirements of a stored package, memoized until a distribution is (un)installed."""
    key = (stored.digest, resolve.installed_environment_key())
    if key in _REQUIREMENTS_MET:
        return
    local = frozenset(name.split("/")[0].removesuffix(".py") for name in stored.files)
    verify.check_requirements(info, str(stored.main_path), local)
    _REQUIREMENTS_MET.add(key)


def _load_entry_point(source: Source) -> type:
    """An installed module: verified from its file, then imported under its own name."""
    fetched = fetch.fetch_package(source)
    path = os.path.join(fetched.origin, fetched.main)
    info = verify.verify_package(fetched.files, fetched.main, fetched.origin)
    _check_expected_class(source, info, path)
    digest = cache.sha256(fetched.files[fetched.main])
    trust.require_trust(source, digest, commit=None, path=path, trust_remote_code=False)
    verify.check_requirements(info, path)
    module, _ = importer.import_entry_point(source.location, path)
    cls = importer.pipeline_class_of(module, info.class_name, path)
    return provenance.stamp(cls, provenance.Provenance(
        source.kind.name, source.describe(), source.filename, None, None, digest, None, fetched.main, (),
    ))
