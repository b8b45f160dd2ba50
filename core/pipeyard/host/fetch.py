"""Step 2: read a :class:`~pipeyard.host.resolve.Source`'s pipeline file and its sibling modules.

A source becomes a :class:`FetchedPackage`: the bytes of the pipeline file and of every module
it imports relatively (``from .x import y``, ``from . import x``, ``from ..a.b import c``, at
any depth), all from the same place and, for remote sources, the same commit. Nothing is
executed; relative imports are found with :mod:`ast`. The package is a closed set of files
(:mod:`~pipeyard.host.boundary`): an import reaching above its root, and, in a local folder, a
link leading out of it or a file that is not a regular one, are refused before being read.

Only this module and :mod:`pipeyard.hub` touch the network. Hub files (diffusers' community
mirror, a dataset, included) go through ``hub.py``;
GitHub community files are plain HTTP GETs of a raw-file URL template, with the timeout of
``PIPEYARD_TIMEOUT``. Offline mode is checked before any request.
"""

from __future__ import annotations

import importlib.machinery
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .. import constants, errors
from ..hub import FileSource, HubOptions
from . import boundary
from .boundary import Reader, candidate_files, check_size, folder_reader, import_above_root, import_folder
from .parse import parse_module, relative_import_line, source_path
from .resolve import Source, SourceKind

__all__ = ["FetchedPackage", "Reader", "collect_package", "fetch_from_file_source", "fetch_package", "folder_reader"]

_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class FetchedPackage:
    """A pipeline file and its relatively imported siblings, as bytes.

    Attributes:
        files: package-relative path -> content; ``main`` is among them.
        main: the pipeline file's package-relative path.
        commit: the commit the files come from (Hub: always; GitHub: when a sha was asked).
        origin: where a reader can look (a folder, a URL) for messages.
    """

    files: dict[str, bytes]
    main: str
    commit: str | None = None
    origin: str = ""


# --------------------------------------------------------------------------- package walk


def _imports_of(name: str, data: bytes, origin: str) -> list[str]:
    """Candidate sibling files of one module; none when it does not parse (verify says why).

    Raises:
        UnsafePackageFileError: a relative import reaches above the package root.
    """
    path = source_path(origin, name)  # the path verify parses it under
    try:
        parsed = parse_module(data, path)
    except ValueError:  # PipelineEncodingError, PipelineSyntaxError
        return []
    candidates: list[str] = []
    for level, module, names in parsed.relative_imports:
        if import_folder(name, level) is None:
            raise import_above_root(path, level, module, relative_import_line(parsed.tree, level, module))
        candidates.extend(candidate_files(name, level, module, names))
    return candidates


def collect_package(main: str, read: Reader, main_data: bytes | None = None, *, origin: str = "") -> dict[str, bytes]:
    """The pipeline file plus every module reachable from it by relative imports.

    Each file is read once, with ``read`` (:func:`folder_reader` for a local folder, which
    refuses what is not a regular file inside it before reading it).

    Args:
        main_data: the pipeline file's bytes when the caller already read them.
        origin: where the files come from, as :class:`FetchedPackage` records it (messages).

    Raises:
        EntryNotFoundError: the pipeline file itself is missing.
        UnsafePackageFileError: a file or an import breaks the rules of
            :mod:`~pipeyard.host.boundary`.
    """
    data = main_data if main_data is not None else read(main)
    if data is None:
        raise errors.EntryNotFoundError(origin or "the pipeline source", main)
    check_size(source_path(origin, main), main, len(data))
    files = {main: data}
    queue = [main]
    while queue:
        current = queue.pop()
        for candidate in _imports_of(current, files[current], origin):
            if candidate in files:
                continue
            content = read(candidate)
            if content is not None:
                check_size(source_path(origin, candidate), candidate, len(content))  # a remote file
                files[candidate] = content
                queue.append(candidate)
    return files


# --------------------------------------------------------------------------- readers


def community_url(revision: str, name: str) -> str:
    """The raw-file URL of ``community/<name>`` at ``revision``.

    From ``PIPEYARD_COMMUNITY_URL`` (``{revision}`` and ``{name}`` fields), else derived from the
    ``Repository`` URL in pipeyard's installed metadata (``[project.urls]``).
    """
    template = constants.community_url_template() or _default_community_template()
    return template.format(revision=revision, name=name)


def _default_community_template() -> str:
    import importlib_metadata

    for entry in importlib_metadata.metadata("pipeyard").get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository" and "github.com/" in url:
            owner_repo = url.strip().split("github.com/", 1)[1].strip("/")
            return f"https://raw.githubusercontent.com/{owner_repo}/{{revision}}/community/{{name}}"
    raise errors.CustomPipelineError(
        "cannot tell where community pipelines live: set PIPEYARD_COMMUNITY_URL to a URL template "
        "with {revision} and {name} fields"
    )


def http_get(url: str, limit: int | None = None) -> bytes | None:
    """GET ``url`` with pipeyard's timeout; None on 404, an error for anything else.

    Args:
        limit: read at most this many bytes of the body (then stop: the caller refuses it).
    """
    if constants.is_offline():
        raise errors.OfflineError(url)
    try:
        with urllib.request.urlopen(url, timeout=constants.network_timeout()) as response:
            body = response.read(limit) if limit is not None else response.read()
            _check_length(url, response.headers.get("Content-Length"), body, limit)
            return body
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise errors.CustomPipelineError(f"GET {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise errors.OfflineError(url, f"the server was not reached ({reason})") from None


def _check_length(url: str, declared: str | None, body: bytes, limit: int | None) -> None:
    """Refuse a body cut short: ``read(n)`` returns what arrived before the server closed, silently.

    Raises:
        OfflineError: fewer bytes than ``Content-Length`` (and not stopped by ``limit``).
    """
    if declared is None or not declared.strip().isdigit() or (limit is not None and len(body) >= limit):
        return
    if len(body) < int(declared):
        raise errors.OfflineError(
            url, f"the server closed the connection after {len(body)} of the {int(declared)} bytes its "
            f"Content-Length announced"
        )


def github_reader(revision: str) -> Reader:
    """Read community files at ``revision`` from the raw-file URL template."""
    return lambda name: http_get(community_url(revision, name), boundary.MAX_PACKAGE_FILE_BYTES + 1)


def hub_reader(repo_id: str, files: tuple[str, ...], options: HubOptions) -> Reader:
    """Read files of a Hub repo at ``options.revision``, a commit (only those its listing holds)."""
    from .. import hub

    listed = frozenset(files)

    def read(name: str) -> bytes | None:
        if name not in listed:
            return None
        return hub.download_file(repo_id, name, options).read_bytes()

    return read


# --------------------------------------------------------------------------- sources


def locate_module_file(module: str) -> Path:
    """The file of an installed module, found without importing it or its parents."""
    path: list[str] | None = None
    spec = None
    parts = module.split(".")
    for count in range(1, len(parts) + 1):
        name = ".".join(parts[:count])
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            raise errors.PipelineImportError(module, f"no installed module {name!r}")
        path = list(spec.submodule_search_locations or [])
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise errors.PipelineImportError(module, "the entry point does not name a Python source file")
    return Path(spec.origin)


def _fetch_hub(source: Source, options: HubOptions) -> FetchedPackage:
    """A Hub pipeline at the source's revision (``custom_revision``, not the model's)."""
    from .. import hub

    argument = "custom_pipeline" if source.kind is SourceKind.HUB else "pretrained_model_name_or_path"
    listing = hub.repo_listing(source.location, options.at(source.revision or "main"), argument=argument)
    if source.filename not in listing.files:
        raise errors.EntryNotFoundError(source.location, source.filename, source.revision)
    read = hub_reader(source.location, listing.files, options.at(listing.commit))
    origin = f"{source.location}@{listing.commit}"
    files = collect_package(source.filename, read, origin=origin)
    return FetchedPackage(files, source.filename, listing.commit, origin)


def _fetch_mirror(source: Source, options: HubOptions) -> FetchedPackage:
    """``<folder>/<name>.py`` of diffusers' community mirror (a Hub dataset), at one commit.

    The package's paths are relative to the folder (``<name>.py``), so it imports like any
    single-file pipeline; siblings it imports relatively come from the same folder and commit.
    A file, folder or mirror that is not there, or a Hub that cannot be reached, ends the
    lookup: :class:`~pipeyard.errors.PipelineNotFoundError` lists every source tried.
    """
    from .. import hub

    folder, where = source.revision or "", f"diffusers' community mirror {source.location!r}"
    try:
        commit, path = hub.download_dataset_file(source.location, f"{folder}/{source.filename}", options.at("main"))
    except errors.EntryNotFoundError as exc:
        reason = (f"no file {folder}/{source.filename} (folders are v<release> and main; pick one "
                  f"with custom_revision='0.42.1' or 'main')")
        raise errors.PipelineNotFoundError(source.name, [*source.attempts, f"{where}: {reason}"]) from exc
    except errors.HubError as exc:
        raise errors.PipelineNotFoundError(source.name, [*source.attempts, f"{where}: {exc}"]) from exc
    at_commit = options.at(commit)

    def read(name: str) -> bytes | None:
        try:
            return hub.download_dataset_file(source.location, f"{folder}/{name}", at_commit)[1].read_bytes()
        except errors.EntryNotFoundError:
            return None

    origin = f"{source.location}@{commit}/{folder}"
    files = collect_package(source.filename, read, path.read_bytes(), origin=origin)
    return FetchedPackage(files, source.filename, commit, origin)


def _fetch_github(source: Source) -> FetchedPackage:
    assert source.revision is not None
    read = github_reader(source.revision)
    url = community_url(source.revision, source.filename)
    if (main := read(source.filename)) is None:
        raise errors.PipelineNotFoundError(
            source.location, [f"community pipeline {source.filename!r} at {source.revision!r}: {url} answered 404"]
        )
    files = collect_package(source.filename, read, main, origin=url)
    commit = source.revision if _FULL_SHA.match(source.revision) else None
    return FetchedPackage(files, source.filename, commit, url)


def _fetch_local(source: Source, root: str) -> FetchedPackage:
    files = collect_package(source.filename, folder_reader(root), origin=root)
    return FetchedPackage(files, source.filename, None, root)


def _fetch_entry_point(source: Source) -> FetchedPackage:
    module = source.location.partition(":")[0].strip()
    path = locate_module_file(module)
    return FetchedPackage({path.name: path.read_bytes()}, path.name, None, str(path.parent))


def fetch_package(source: Source, options: HubOptions | None = None) -> FetchedPackage:
    """Read a source's pipeline file and siblings (network only for Hub and GitHub sources).

    Args:
        options: how Hub sources are reached; its revision is replaced by the source's.

    Raises:
        EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError,
        OfflineError, PipelineNotFoundError (GitHub 404).
    """
    from .._bundled import bundled_dir

    if source.kind in (SourceKind.LOCAL_FILE, SourceKind.LOCAL_FOLDER, SourceKind.PLUGIN):
        return _fetch_local(source, source.location)
    if source.kind is SourceKind.BUNDLED:
        return _fetch_local(source, str(bundled_dir("community")))
    if source.kind is SourceKind.ENTRY_POINT:
        return _fetch_entry_point(source)
    if source.kind is SourceKind.GITHUB:
        return _fetch_github(source)
    if source.kind is SourceKind.MIRROR:
        return _fetch_mirror(source, options or HubOptions())
    if source.kind is SourceKind.EMBEDDED and os.path.isdir(source.location):
        return _fetch_local(source, source.location)
    return _fetch_hub(source, options or HubOptions())


def fetch_from_file_source(file_source: FileSource, filename: str) -> FetchedPackage:
    """Read a module embedded in a model repo already opened by :func:`pipeyard.hub.open_source`.

    The repo is the same listing, at the same commit, that the caller read model_index.json
    from, so the module cannot come from another revision than the weights. A local model
    folder is read like any local package (:func:`folder_reader`).
    """
    commit = file_source.commit
    origin = file_source.location + (f"@{commit}" if commit else "")
    if file_source.is_local and file_source.root is not None:
        files = collect_package(filename, folder_reader(file_source.root), origin=str(file_source.root))
        return FetchedPackage(files, filename, None, str(file_source.root))

    def read(name: str) -> bytes | None:
        if not file_source.has(name):
            return None
        return file_source.fetch([name]).joinpath(*name.split("/")).read_bytes()

    return FetchedPackage(collect_package(filename, read, origin=origin), filename, commit, origin)
