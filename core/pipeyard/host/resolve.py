"""Step 1: turn a ``custom_pipeline`` value into a :class:`Source`, without any network.

The value is matched against the sources below, in this order; the first that matches wins and
a value that matches none raises one :class:`~pipeyard.errors.PipelineNotFoundError` listing
every attempt:

0. ``PLUGIN``        a path answered by a plugin's ``pipeyard_resolve_pipeline`` hook
1. ``LOCAL_FILE``    an existing ``.py`` file
2. ``LOCAL_FOLDER``  an existing folder holding ``pipeline.py``
3. ``ENTRY_POINT``   a name an installed distribution registers under ``pipeyard.pipelines``
4. ``BUNDLED``       a community name shipped in ``community/`` (``GITHUB`` with a revision)
5. ``MIRROR``        any other simple name: ``<folder>/<name>.py`` of diffusers' community
                     mirror, a Hub dataset (:mod:`pipeyard.host.mirror` picks the folder:
                     ``v`` + the diffusers release compat targets, or ``custom_revision``
                     when it is a release number or ``main``; another revision means
                     pipeyard's GitHub ``community/`` folder, ``GITHUB``)
6. ``HUB``           a Hub repo id ``owner/name``, its ``pipeline.py``

Whether a Hub repo, a GitHub revision or a mirror file exists is only known when fetching
(:mod:`pipeyard.host.fetch`); a source keeps the attempts made before it matched
(:attr:`Source.attempts`), so a fetch that finds nothing lists them all.

A repository's own data is resolved apart, by :func:`repository_source`, because it is a
stranger's: a model_index.json may name only

* a module of that same repository (``_class_name: [module_file, ClassName]``): ``EMBEDDED``,
  which the trust gate treats like any remote code, even when the repository is a local folder;
* an installed entry point, by its registered name (a ``_pipeyard_source`` record of kind
  ``ENTRY_POINT``): looked up in the entry-point group, never used as a path or passed to
  plugins;
* a built-in pipeline class by name (:func:`repository_source` returns None);
* for a component entry ``[module, ClassName]`` whose library pipeyard does not load itself,
  a module of that same repository, ``<component>/<module>.py`` or ``<module>.py``
  (:func:`component_source`): ``COMPONENT``, trust-gated like ``EMBEDDED``.

Nothing a repository says is ever resolved as if the caller had named it: the local sources
(``LOCAL_FILE``, ``LOCAL_FOLDER``), which the gate allows without a flag, come only from
:func:`resolve_source` on the caller's own ``custom_pipeline`` value.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sys
from dataclasses import dataclass, field
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import constants, errors
from . import mirror

#: The file a folder or Hub repo must hold.
PIPELINE_FILENAME = "pipeline.py"

_SIMPLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
_MODULE_FILE = re.compile(r"^([A-Za-z_]\w*/)*[A-Za-z_]\w*(\.py)?$")


class SourceKind(str, enum.Enum):
    """Where pipeline code comes from; the trust gate decides by kind first."""

    LOCAL_FILE = "local file"
    LOCAL_FOLDER = "local folder"
    ENTRY_POINT = "entry point"
    BUNDLED = "bundled community pipeline"
    GITHUB = "community pipeline from GitHub"
    HUB = "Hub repo"
    EMBEDDED = "pipeline module of model repo"
    PLUGIN = "pipeline resolved by a plugin"
    MIRROR = "community pipeline from diffusers' mirror"
    COMPONENT = "component module of model repo"

    @property
    def is_remote(self) -> bool:
        """True for sources that may be read over the network (Hub, GitHub, a model repo).

        A plugin's answer is a local file, read like one.
        """
        return self in (
            SourceKind.GITHUB, SourceKind.HUB, SourceKind.EMBEDDED, SourceKind.MIRROR, SourceKind.COMPONENT
        )

    @property
    def is_repository_module(self) -> bool:
        """A module a model repository's own model_index.json names (never the caller)."""
        return self in (SourceKind.EMBEDDED, SourceKind.COMPONENT)


@dataclass(frozen=True)
class Source:
    """A resolved place holding one pipeline file.

    Attributes:
        kind: which of the sources matched.
        location: a folder path, an entry point value, a community name, a repo id (the
            mirror's dataset repo id for ``MIRROR``).
        filename: the pipeline file, relative to ``location`` (``pipeline.py``, ``x.py``;
            for ``MIRROR``, ``<name>.py`` inside the folder ``revision``).
        revision: the revision asked for (Hub/GitHub/embedded from a Hub repo; the mirror's
            folder, ``v0.42.1`` or ``main``), else None.
        class_name: the class to take, when the source says (entry point, model_index).
        component: the pipeline component whose class a ``COMPONENT`` module defines.
        attempts: what resolution tried before this source matched (for a fetch that then
            finds nothing); not part of the source's identity.
    """

    kind: SourceKind
    location: str
    filename: str
    revision: str | None = None
    class_name: str | None = None
    component: str | None = None
    attempts: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def name(self) -> str:
        """The community name of a ``MIRROR`` source (its file without ``.py``)."""
        return self.filename[:-3] if self.filename.endswith(".py") else self.filename

    def describe(self) -> str:
        """A short human description for messages, e.g. ``Hub repo 'a/b' at 'main'``."""
        at = f" at {self.revision!r}" if self.revision else ""
        if self.kind in (SourceKind.LOCAL_FILE, SourceKind.LOCAL_FOLDER):
            return f"{self.kind.value} {os.path.join(self.location, self.filename)!r}"
        if self.kind is SourceKind.EMBEDDED:
            return f"{self.kind.value} {self.location!r} ({self.filename}){at}"
        if self.kind is SourceKind.COMPONENT:
            return f"module {self.filename!r} of component {self.component!r} of model repo {self.location!r}{at}"
        if self.kind is SourceKind.MIRROR:
            where = f"{self.revision}/{self.filename}"
            return f"community pipeline {self.name!r} from diffusers' mirror {self.location!r} ({where})"
        return f"{self.kind.value} {self.location!r}{at}"

    def record_key(self, server: str) -> str:
        """The key of this source's resolution record (remote sources only).

        ``server`` is where it is asked (the Hub endpoint, the community URL): the same name on
        another server (a mirror, a test Hub) is another resolution.
        """
        return json.dumps([self.kind.name, self.location, self.filename, self.revision or "", server])


# --------------------------------------------------------------------------- validation


def validate_revision(revision: str | None) -> None:
    """Refuse revisions that could be used as a path (separators other than ``/``, ``..``)."""
    if revision is None:
        return
    if not revision or revision != revision.strip() or "\\" in revision or "\x00" in revision:
        raise errors.InvalidPipelineNameError(revision, "not a branch, tag or commit", "custom_revision")
    if ".." in revision or revision.startswith("/") or os.path.isabs(revision):
        raise errors.InvalidPipelineNameError(
            revision, "must not contain '..' or start with '/'", "custom_revision"
        )


def _validate_name(name: str) -> None:
    if ".." in name.split("/") or ".." in name:
        raise errors.InvalidPipelineNameError(name, "'..' is not allowed in a pipeline name")
    if "\x00" in name or "\\" in name:
        raise errors.InvalidPipelineNameError(name, "contains a NUL byte or a backslash")


def _looks_like_path(value: str) -> bool:
    """Values that can only mean a local path (so no registry or Hub lookup is tried)."""
    return (
        value.startswith(("/", "./", "../", "~", ".\\"))
        or os.path.isabs(value)
        or value.endswith(".py")
        or value.count("/") > 1
    )


# --------------------------------------------------------------------------- lookups


def installed_environment_key() -> tuple[tuple[str, int], ...]:
    """Changes whenever a distribution may have been installed or removed on ``sys.path``.

    Installing or removing a distribution adds or removes a ``*.dist-info`` folder, which
    changes its parent folder's mtime; so answers derived from installed metadata can be
    memoized on this key (a full metadata scan costs ~10 ms, this a few stat calls).
    """
    key = []
    for entry in sys.path:
        try:
            key.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            key.append((entry, -1))
    return tuple(key)


@lru_cache(maxsize=8)
def _entry_points(environment: tuple[tuple[str, int], ...]) -> dict[str, str]:
    import importlib_metadata

    found: dict[str, str] = {}
    for entry_point in importlib_metadata.entry_points(group=constants.PIPELINE_ENTRY_POINT_GROUP):
        found.setdefault(entry_point.name, entry_point.value)
    return found


def entry_point_value(name: str) -> str | None:
    """``module:Class`` registered for ``name`` in the entry-point group, or None."""
    return _entry_points(installed_environment_key()).get(name)


@lru_cache(maxsize=4)
def _index_cached(path: str, mtime_ns: int) -> dict[str, Any]:
    from ..registry import read_index  # checked: an entry naming a path is a ConfigFileError

    return read_index(Path(path))


def bundled_index() -> dict[str, Any]:
    """The bundled ``registry/index.json`` (re-read when the file changes; ``{}`` without one)."""
    from .._bundled import bundled_dir

    path = bundled_dir("registry") / "index.json"
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    return _index_cached(str(path), stat.st_mtime_ns)


def bundled_registry() -> dict[str, Any]:
    """Name -> community entry of the bundled ``registry/index.json``."""
    return {entry["name"]: entry for entry in bundled_index().get("pipelines", [])}


def bundled_digests() -> frozenset[str]:
    """sha256 of every bundled community file (fetched copies equal to one are bundled code)."""
    return frozenset(entry["sha256"] for entry in bundled_registry().values())


# --------------------------------------------------------------------------- resolution


def _local_source(value: str, tried: list[str]) -> Source | None:
    try:
        path = Path(value).expanduser()
    except (RuntimeError, ValueError):  # '~name' of a user this machine does not have; a NUL in it
        tried.append(f"local path {value!r}: no such user's home folder")
        return None
    if path.is_file():
        if path.suffix != ".py":
            raise errors.InvalidPipelineNameError(value, "a local pipeline file must end in .py")
        real = path.resolve()  # a link named by the caller: its target's folder is the package
        return Source(SourceKind.LOCAL_FILE, str(real.parent), real.name)
    tried.append(f"local file {value!r}: no such file")
    if path.is_dir():
        if (path / PIPELINE_FILENAME).is_file():
            return Source(SourceKind.LOCAL_FOLDER, str(path.resolve()), PIPELINE_FILENAME)
        tried.append(f"local folder {value!r}: it holds no {PIPELINE_FILENAME}")
    else:
        tried.append(f"local folder {value!r}: no such folder")
    return None


def _plugin_source(value: str, revision: str | None, tried: list[str]) -> Source | None:
    """A plugin's answer (hook ``pipeyard_resolve_pipeline``), as a local file to verify and trust."""
    from .. import plugins

    answer = plugins.resolve_pipeline(value, revision)
    if answer is None:
        return None
    path = Path(os.fspath(answer)).expanduser().resolve()
    if path.is_dir():
        path = path / PIPELINE_FILENAME
    if not path.is_file() or path.suffix != ".py":
        tried.append(f"plugin answer {os.fspath(answer)!r}: not a .py file or a folder with {PIPELINE_FILENAME}")
        raise errors.PipelineNotFoundError(value, tried)
    return Source(SourceKind.PLUGIN, str(path.parent), path.name, revision)


def _named_source(name: str, revision: str | None, tried: list[str]) -> Source | None:
    if "/" not in name and _SIMPLE_NAME.match(name):
        value = entry_point_value(name)
        if value is not None:
            return Source(SourceKind.ENTRY_POINT, value, name, class_name=value.partition(":")[2] or None)
        tried.append(
            f"entry point {name!r} in group {constants.PIPELINE_ENTRY_POINT_GROUP!r}: no installed distribution registers it"
        )
        bundled = name in bundled_registry()
        repo, folder = constants.diffusers_mirror_repo(), mirror.mirror_folder(revision)
        if revision is not None and (bundled or repo is None or folder is None):
            return Source(SourceKind.GITHUB, name, f"{name}.py", revision)
        if bundled:
            return Source(SourceKind.BUNDLED, name, f"{name}.py")
        available = ", ".join(sorted(bundled_registry())) or "none"
        tried.append(f"bundled community pipeline {name!r}: not in registry/index.json (available: {available})")
        if repo is not None and folder is not None and name.isidentifier():
            return Source(SourceKind.MIRROR, repo, f"{name}.py", folder, attempts=tuple(tried))
        tried.append(
            "diffusers' community mirror: off (PIPEYARD_DIFFUSERS_MIRROR)" if repo is None
            else f"diffusers' community mirror: {name!r} is not a module name (letters, digits, '_')"
        )
    if _REPO_ID.match(name):
        return Source(SourceKind.HUB, name, PIPELINE_FILENAME, revision or "main")
    tried.append(f"Hub repo {name!r}: not a repo id of the form 'owner/name'")
    return None


#: model_index.json key holding the source record of a saved custom pipeline.
SOURCE_RECORD_KEY = "_pipeyard_source"


def _embedded_source(location: str, class_entry: Any, revision: str | None) -> Source:
    """The ``[module_file, ClassName]`` pair of a model_index.json, as a source in that repo."""
    if len(class_entry) != 2 or not all(isinstance(v, str) for v in class_entry):
        raise errors.InvalidPipelineNameError(
            str(class_entry)[:100], "expected [module_file, ClassName]", "model_index.json _class_name"
        )
    module_file, class_name = class_entry
    if not _MODULE_FILE.match(module_file) or not class_name.isidentifier():
        raise errors.InvalidPipelineNameError(
            module_file[:100], "a module file of model_index.json must be a relative module path of the "
            "repository and the class a Python name", "model_index.json _class_name",
        )
    filename = module_file if module_file.endswith(".py") else f"{module_file}.py"
    return Source(SourceKind.EMBEDDED, location, filename, revision, class_name)


def _recorded_entry_point(location: str, record: Any) -> Source | None:
    """An installed pipeline a saved model_index.json names by its entry-point name, if any."""
    if not isinstance(record, dict) or record.get("kind") != SourceKind.ENTRY_POINT.name:
        return None
    name = record.get("location")
    if not isinstance(name, str) or not _SIMPLE_NAME.match(name):
        raise errors.InvalidPipelineNameError(
            str(name)[:100], "an entry-point name is a simple name (letters, digits, '_', '-', '.'); "
            "a repository can name installed code only by its registered name",
            f"model_index.json {SOURCE_RECORD_KEY}.location",
        )
    value = entry_point_value(name)
    if value is None:
        raise errors.PipelineNotFoundError(name, [
            f"model_index.json of {location} names the installed pipeline {name!r} "
            f"({SOURCE_RECORD_KEY}), but no installed distribution registers it in entry-point group "
            f"{constants.PIPELINE_ENTRY_POINT_GROUP!r}; install the plugin that provides it, or pass "
            f"custom_pipeline=..."
        ])
    return Source(SourceKind.ENTRY_POINT, value, name, class_name=value.partition(":")[2] or None)


def repository_source(model_index: Mapping[str, Any], location: str, revision: str | None) -> Source | None:
    """The code a repository's model_index.json names, as a :class:`Source`; None for a built-in name.

    This is the only function that turns a repository's data into a source of code; see the
    module docstring for what that data may name. ``location`` is the repository (a folder or
    repo id) and ``revision`` its commit, so an embedded module comes from the same commit as
    the weights.

    Raises:
        InvalidPipelineNameError: a malformed ``[module_file, ClassName]`` pair or record.
        PipelineNotFoundError: a recorded entry point that is not installed.
    """
    class_name = model_index.get("_class_name")
    if isinstance(class_name, (list, tuple)):
        return _embedded_source(location, class_name, revision)
    return _recorded_entry_point(location, model_index.get(SOURCE_RECORD_KEY))


_COMPONENT_MODULE = re.compile(r"^[A-Za-z_]\w*$")


def component_module_files(component: str, module: str) -> tuple[str, ...]:
    """Where a repository may hold the module of a ``[module, Class]`` component entry, in order.

    ``<component>/<module>.py`` (where diffusers looks, beside the component's weights), then
    ``<module>.py`` at the repository root. None for a name that is not a plain module name.
    """
    if not _COMPONENT_MODULE.match(module) or not _COMPONENT_MODULE.match(component):
        return ()
    return (f"{component}/{module}.py", f"{module}.py")


def component_source(
    component: str, entry: tuple[str, str], location: str, revision: str | None, has: Callable[[str], bool]
) -> Source | None:
    """The repository file defining a component's class, as a :class:`Source`; None without one.

    Like :func:`repository_source`, this turns a repository's data into code: the caller must
    already have ruled out the libraries pipeyard loads itself (a repository file never
    shadows ``diffusers``, ``transformers`` or a plugin's library).

    Args:
        entry: the model_index ``[module, ClassName]`` pair.
        has: whether the repository holds a file (its listing, at the commit of the weights).

    Raises:
        InvalidPipelineNameError: a class name that is not a Python name.
    """
    module, class_name = entry
    files = component_module_files(component, module)
    found = next((name for name in files if has(name)), None)
    if found is None:
        return None
    if not class_name.isidentifier():
        raise errors.InvalidPipelineNameError(
            class_name[:100], "the class of a component module must be a Python name",
            f"model_index.json {component!r}",
        )
    return Source(SourceKind.COMPONENT, location, found, revision, class_name, component)


def resolve_source(custom_pipeline: str | os.PathLike[str], *, custom_revision: str | None = None) -> Source:
    """Match ``custom_pipeline`` against the sources, in order (see the module docstring).

    Raises:
        InvalidPipelineNameError: a name with ``..``, a bad revision, a non-``.py`` file.
        PipelineNotFoundError: nothing matched; lists what was tried, in order.
    """
    validate_revision(custom_revision)
    value = os.fspath(custom_pipeline)
    tried: list[str] = []
    source = _plugin_source(value, custom_revision, tried)
    if source is not None:
        return source
    source = _local_source(value, tried)
    if source is not None:
        return source
    if isinstance(custom_pipeline, os.PathLike) or _looks_like_path(value):
        raise errors.PipelineNotFoundError(value, tried)
    _validate_name(value)
    source = _named_source(value, custom_revision, tried)
    if source is None:
        raise errors.PipelineNotFoundError(value, tried)
    return source
