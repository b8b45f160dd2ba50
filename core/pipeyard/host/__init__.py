"""The custom-pipeline host: a name in, exactly one verified, trusted, imported class out.

One step per module, in the order they run::

    resolve.py      name + revision       -> Source           (no network)
    fetch.py        Source                -> files as bytes    (Hub via hub.py, GitHub raw URLs)
    verify.py       files                 -> class name, requirements   (ast only, nothing runs)
    gate.py         source + digest       -> allowed, or UntrustedCodeError (and, before fetch,
                                             refused when no content could be allowed)
    trust_store.py  the digests the user trusts
    cache.py        allowed files         -> stored package    (content-addressed, locked, atomic)
    importer.py     stored package        -> module -> the class

Three entries, one per origin of the name: :func:`load_pipeline_class` for a ``custom_pipeline``
the caller passed, :func:`load_repository_pipeline_class` for the pipeline class a repository's
model_index.json names, :func:`load_component_class` for a component class it names from one of
its own modules (``"unet": ["my_unet", "MyUNet"]``). All run the same steps; only the first can
name a local path (which the gate allows without a flag). ``import pipeyard.host`` imports
neither torch nor any model code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .. import errors
from ..hub import HubOptions
from . import cache, fetch, gate, importer, provenance, resolve, verify
from .resolve import Source, SourceKind

__all__ = [
    "Source", "SourceKind", "load_component_class", "load_pipeline_class", "load_repository_pipeline_class",
    "local_package_digest", "resolution_record_key",
]

# digest (``digest:Class`` for a component module) -> verified facts; content-addressed, so
# valid for the life of the process.
_VERIFIED: dict[str, verify.PipelineFileInfo] = {}
# (digest, installed environment) pairs whose requirements were met.
_REQUIREMENTS_MET: set[tuple[str, object]] = set()


def load_pipeline_class(
    custom_pipeline: str | os.PathLike[str],
    *,
    custom_revision: str | None = None,
    trust_remote_code: bool = False,
    hub_options: HubOptions | None = None,
    refresh: bool = False,
) -> type:
    """Resolve, fetch, verify, trust-check and import the custom pipeline the caller named.

    Args:
        custom_pipeline: a local ``.py`` file, a local folder with ``pipeline.py``, an entry
            point name (group ``pipeyard.pipelines``), a bundled community name, another
            community name (read from diffusers' mirror, :mod:`pipeyard.host.mirror`), or a
            Hub repo id (see :mod:`pipeyard.host.resolve` for the order).
        custom_revision: branch, tag or commit: of the Hub repo (default ``main``), or of
            pipeyard's GitHub ``community/`` folder for a community name (default: the
            bundled copy, no network); for a name pipeyard does not bundle, a diffusers
            release number or ``main`` picks the mirror's folder instead.
        trust_remote_code: allow code that is neither bundled, local, installed nor in the
            trust store (see :mod:`pipeyard.host.gate`).
        hub_options: how Hub sources are reached (token, cache_dir, local_files_only,
            proxies, endpoint); its ``revision`` is not used: ``custom_revision`` says which
            revision of a Hub pipeline.
        refresh: ignore the resolution record and ask the Hub / GitHub again.

    Returns:
        The one class the file defines (its caller checks that it is a ``DiffusionPipeline``).

    Raises:
        PipelineNotFoundError, InvalidPipelineNameError, PipelineVerificationError (and its
        leaves), UntrustedCodeError, RequirementsError, PipelineImportError, PipeyardHomeError,
        and the Hub errors of :mod:`pipeyard.errors` (OfflineError when offline without a record).

    Example:
        >>> cls = load_pipeline_class("one_step_unet")  # doctest: +SKIP
        >>> cls.__name__  # doctest: +SKIP
        'UnetSchedulerOneForwardPipeline'
    """
    source = resolve.resolve_source(custom_pipeline, custom_revision=custom_revision)
    options = hub_options or HubOptions()
    return _load(source, None, options, trust_remote_code=trust_remote_code, refresh=refresh)


def load_repository_pipeline_class(
    model_index: Mapping[str, Any],
    repository: Any,
    *,
    trust_remote_code: bool = False,
    hub_options: HubOptions | None = None,
    refresh: bool = False,
) -> type | None:
    """The class a repository's model_index.json names as code, or None for a built-in name.

    What the repository may name is decided by :func:`pipeyard.host.resolve.repository_source`:
    a module of itself (needs trust, like any remote code, even in a local folder) or an
    installed entry point by its registered name. Nothing it says counts as named by the caller.

    Args:
        model_index: the repository's parsed model_index.json.
        repository: the :class:`pipeyard.hub.FileSource` it was opened as (preferred: modules
            then come from the same commit as the weights), a local folder, or a Hub repo id.
        trust_remote_code, refresh: as for :func:`load_pipeline_class`.
        hub_options: how the Hub is reached; default: the options ``repository`` was opened
            with (a module embedded in it comes from its commit, whatever the revision says).

    Raises:
        What :func:`load_pipeline_class` raises.
    """
    location = os.fspath(getattr(repository, "location", repository))
    source = resolve.repository_source(model_index, location, getattr(repository, "commit", None))
    if source is None:
        return None
    options = hub_options or getattr(repository, "options", None) or HubOptions()
    return _load(source, repository, options, trust_remote_code=trust_remote_code, refresh=refresh)


def load_component_class(
    component: str,
    entry: tuple[str, str],
    repository: Any,
    *,
    trust_remote_code: bool = False,
    refresh: bool = False,
) -> type | None:
    """The class a ``[module, ClassName]`` component entry names from the repository's own files.

    The module is ``<component>/<module>.py`` (where diffusers keeps it) or ``<module>.py`` at
    the repository root (:func:`pipeyard.host.resolve.component_module_files`), read from the
    same commit as the weights, verified to define the class, then trust-gated, stored and
    imported like any remote code (a local folder included: the repository named it, not the
    caller). Its diffusers imports get pipeyard's classes (:mod:`pipeyard.compat`).

    Args:
        component: the component's name (``unet``), for the file's place and for messages.
        entry: the model_index.json pair.
        repository: the :class:`pipeyard.hub.FileSource` the pipeline is loaded from.

    Returns:
        The class, or None when the repository holds no such module.

    Raises:
        UntrustedCodeError naming the component and the file, PipelineVerificationError (and
        its leaves), RequirementsError, PipelineImportError, OfflineError.
    """
    location = os.fspath(getattr(repository, "location", repository))
    source = resolve.component_source(component, entry, location, repository.commit, repository.has)
    if source is None:
        return None
    options = getattr(repository, "options", None) or HubOptions()
    return _load(source, repository, options, trust_remote_code=trust_remote_code, refresh=refresh)


def _load(source: Source, repository: Any, options: HubOptions, *, trust_remote_code: bool, refresh: bool) -> type:
    """The steps both entries share: fetch, verify, trust, store, import."""
    gate.refuse_before_fetch(source)
    if source.kind is SourceKind.ENTRY_POINT:
        return _load_entry_point(source)
    package, commit, record_key, origin = _candidate(source, repository, options, refresh)
    info = _verified(package, source)
    _check_expected_class(source, info, str(package.main_path))
    _require_trust(source, package, commit, trust_remote_code)
    package = _kept(source, package, commit, record_key)
    _check_requirements(package, info)
    module = importer.import_stored_module(package, origin)
    cls = importer.pipeline_class_of(module, info.class_name, importer.display_path(package, package.main))
    return provenance.stamp(cls, provenance.Provenance(
        source.kind.name, source.describe(), source.location, source.revision, commit,
        package.digest, str(package.root), package.main, tuple(package.files),
    ))


def local_package_digest(path: str | os.PathLike[str]) -> str:
    """The digest the trust gate is asked about when the local pipeline file ``path`` loads.

    That is the digest of its whole package: the file and every sibling it imports relatively,
    read by the same closed-set rules as a load (for a file without siblings, its sha256).
    What ``pipeyard trust add FILE`` trusts. Nothing runs.

    Raises:
        LocalPathError: ``path`` names no file.
        UnsafePackageFileError: a sibling breaks the closed-set rules (a link out, a FIFO...).
    """
    text = os.fspath(path)
    if not os.path.isfile(text):
        raise errors.LocalPathError(text, "pipeline file to trust")
    folder, name = os.path.split(os.path.abspath(text))
    files = fetch.collect_package(name, fetch.folder_reader(folder), origin=folder)
    return cache.memory_package(files, name, folder).digest


def _candidate(
    source: Source, repository: Any, options: HubOptions, refresh: bool
) -> tuple[cache.StoredPackage, str | None, str | None, str]:
    """The source's package: stored (a warm load) or in memory; its commit, record key, and
    origin (the folder, ``repo@commit`` or URL its files came from, for messages).

    A package in memory is not in the module store yet: it enters only once verified and
    allowed (:func:`_kept`), so nothing refused there looks loadable.
    """
    record_key = resolution_record_key(source, options)
    if record_key is not None and not refresh:
        record = cache.read_record(record_key)
        stored = _recorded_package(record.digest, options) if record is not None else None
        if stored is not None:
            return stored, record.commit, record_key, record.origin or str(stored.root)  # type: ignore[union-attr]
    if record_key is not None and options.offline:
        raise errors.OfflineError(source.describe(), f"{options.offline_reason}, it was never loaded before,")
    if source.kind.is_repository_module and hasattr(repository, "fetch"):
        fetched = fetch.fetch_from_file_source(repository, source.filename)
    else:
        fetched = fetch.fetch_package(source, options)
    root = fetched.origin or source.location
    return cache.memory_package(fetched.files, fetched.main, root), fetched.commit, record_key, root


def _recorded_package(digest: str, options: HubOptions) -> cache.StoredPackage | None:
    """The package a record names; a damaged copy is dropped online (fetched again: None) and
    refused offline (PipelineVerificationError); never imported either way."""
    try:
        return cache.load_package(digest)
    except errors.PipelineVerificationError:
        if options.offline:
            raise
        cache.discard_package(digest)
        return None


def resolution_record_key(source: Source, options: HubOptions | None = None) -> str | None:
    """The key of a remote source's resolution record; None for sources read from disk."""
    options = options or HubOptions()
    if source.kind is SourceKind.GITHUB:
        return source.record_key(fetch.community_url(source.revision or "", source.filename))
    if source.kind in (SourceKind.HUB, SourceKind.MIRROR) or (
        source.kind.is_repository_module and not os.path.isdir(source.location)
    ):
        return source.record_key(options.hub_endpoint() or "huggingface_hub default")
    return None


def _verified(package: cache.StoredPackage, source: Source) -> verify.PipelineFileInfo:
    """The facts verification learnt: of a pipeline file, or of a component module (by class)."""
    key = package.digest if source.kind is not SourceKind.COMPONENT else f"{package.digest}:{source.class_name}"
    info = _VERIFIED.get(key)
    if info is None:
        if source.kind is SourceKind.COMPONENT:
            assert source.class_name is not None
            info = verify.verify_component_package(package.read_all(), package.main, str(package.root), source.class_name)
        else:
            info = verify.verify_package(package.read_all(), package.main, str(package.root))
        _VERIFIED[key] = info
    return info


def _require_trust(source: Source, package: cache.StoredPackage, commit: str | None, trust_remote_code: bool) -> None:
    """The gate; a refused package is copied to ``review/`` so the message names a file to read."""
    if gate.trust_reason(source, package.digest, trust_remote_code=trust_remote_code) is not None:
        return
    if package.in_store or not source.kind.is_remote or os.path.isdir(source.location):
        path = package.main_path  # a stored copy, or a file on this machine already
    else:  # fetched: keep a copy to read, outside the module store
        path = cache.store_for_review(package.read_all(), package.main)
    gate.require_trust(source, package.digest, commit=commit, path=str(path), trust_remote_code=trust_remote_code)


def _kept(
    source: Source, package: cache.StoredPackage, commit: str | None, record_key: str | None
) -> cache.StoredPackage:
    """An allowed package in the module store (bundled code is imported where it is installed)."""
    if source.kind is SourceKind.BUNDLED or package.in_store:
        return package
    stored = cache.store_package(package.read_all(), package.main)
    if record_key is not None:
        cache.write_record(record_key, cache.ResolutionRecord(commit, stored.digest, str(package.root)))
    return stored


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
    verify.check_requirements(info, str(stored.main_path), verify.local_module_names(stored.files))
    _REQUIREMENTS_MET.add(key)


def _load_entry_point(source: Source) -> type:
    """An installed module: verified from its file, then imported under its own name."""
    fetched = fetch.fetch_package(source)
    path = os.path.join(fetched.origin, fetched.main)
    info = verify.verify_package(fetched.files, fetched.main, fetched.origin)
    _check_expected_class(source, info, path)
    digest = cache.sha256(fetched.files[fetched.main])
    gate.require_trust(source, digest, commit=None, path=path, trust_remote_code=False)
    verify.check_requirements(info, path)
    module, _ = importer.import_entry_point(source.location, path)
    cls = importer.pipeline_class_of(module, info.class_name, path)
    return provenance.stamp(cls, provenance.Provenance(
        source.kind.name, source.describe(), source.filename, None, None, digest, None, fetched.main, (),
    ))
