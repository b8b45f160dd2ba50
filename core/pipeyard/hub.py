"""The one module that talks to huggingface_hub: listings, downloads, offline mode, errors.

Everything that reads model files goes through a :class:`FileSource`: a local folder or a Hub
repository pinned to one commit, with the list of files it holds. Callers pick the files they
need from ``source.files`` and ask ``source.fetch(names)`` for a local folder holding them, so
only those files are downloaded and a local folder is used in place.

How the Hub is reached is one frozen value, :class:`HubOptions` (revision, token, cache folder,
``local_files_only``, proxies, endpoint), made once from ``from_pretrained``'s keywords and
carried by the source to every request of the load: model weights, configs, custom pipelines.

Offline mode (``PIPEYARD_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``, read at call time) and
``local_files_only=True`` answer from the local Hub cache alone. Every request carries the
timeout from ``PIPEYARD_TIMEOUT``. huggingface_hub's errors are translated into pipeyard's
(:mod:`pipeyard.errors`), which name the repo, the revision and the fix. Repo ids and
subfolders are checked before any request.

The Hub cache is huggingface_hub's own, read and written only through its public API: a branch
or tag is resolved to a commit once per load (``HfApi.resolve_revision``, which also records
the branch in the cache so a later offline load finds it), and every file of that load is
downloaded by that commit, so one load never mixes two commits.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from . import constants, errors
from .hub_options import HubOptions, PathLike, ProxiesArg, as_options, check_repo_id, check_subfolder

__all__ = [
    "FileSource", "HubOptions", "ProxiesArg", "RepoListing", "check_repo_id", "check_subfolder",
    "dataset_folder_files", "download_dataset_file", "download_file", "looks_like_local_path", "open_source",
    "repo_listing", "resolve_file",
]

logger = logging.getLogger(__name__)

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


# ---------------------------------------------------------------------- names


def looks_like_local_path(value: PathLike) -> bool:
    """True for values that can only mean a path: existing, absolute, ``./``, ``~`` or a backslash."""
    text = os.fspath(value)
    if isinstance(value, os.PathLike) or os.path.exists(text):
        return True
    return text.startswith(("/", "./", "../", "~", ".\\")) or "\\" in text


# ---------------------------------------------------------------------- sources


@dataclass(frozen=True)
class FileSource:
    """A local folder, or a Hub repo at one commit, and the files it holds.

    Attributes:
        location: the folder path or repo id, as the user gave it (for messages).
        commit: the resolved commit sha for a Hub repo, None for a local folder.
        files: every file, as a POSIX path relative to the root.
        root: the local folder, or the Hub cache snapshot folder when offline.
        complete: False when ``files`` lists only what an offline cache holds, so a file
            missing from it may still exist in the repository.
        options: how the load reaches the Hub (its revision is the one asked for; files are
            fetched at ``commit``). Also carried for a local folder: a custom pipeline from
            the Hub uses it.
    """

    location: str
    commit: str | None
    files: tuple[str, ...]
    root: Path | None = None
    complete: bool = True
    options: HubOptions = field(default_factory=HubOptions, repr=False, compare=False)

    def missing(self, what: str, error: Exception) -> Exception:
        """The error to raise when ``what`` is not in ``files``: ``error``, or OfflineError
        when the listing is only an offline cache's."""
        if self.complete:
            return error
        return errors.OfflineError(f"{what} of {self.location!r}", self.options.offline_reason)

    @property
    def is_local(self) -> bool:
        return self.commit is None

    def has(self, name: str) -> bool:
        return name in self._file_set

    @functools.cached_property
    def _file_set(self) -> frozenset[str]:
        return frozenset(self.files)

    def under(self, subfolder: str | None) -> list[str]:
        """Names of the files directly inside ``subfolder`` (relative to it)."""
        subfolder = check_subfolder(subfolder)
        prefix = f"{subfolder}/" if subfolder else ""
        return [f[len(prefix):] for f in self.files if f.startswith(prefix) and "/" not in f[len(prefix):]]

    def fetch(self, names: Iterable[str]) -> Path:
        """Make ``names`` available locally; return the root folder that holds them.

        Raises:
            EntryNotFoundError: a name is not in this source.
        """
        names = sorted(set(names))
        for name in names:
            if name not in self._file_set:
                raise self.missing(repr(name), errors.EntryNotFoundError(self.location, name, self.commit))
        if self.root is not None:  # a local folder, or a Hub snapshot already complete on disk
            _check_closed(self.root, names)
            if self.commit is not None:  # a Hub cache snapshot (offline): each file against its ETag
                from .hub_integrity import check_hub_file

                for name in names:
                    check_hub_file(self.location, name, self.root.joinpath(*name.split("/")), self.commit)
            return self.root
        assert self.commit is not None
        return _download_files(self.location, names, self.options.at(self.commit))


def open_source(
    path_or_repo_id: PathLike,
    options: HubOptions | None = None,
    *,
    argument: str = "pretrained_model_name_or_path",
    **option_fields: Any,
) -> FileSource:
    """A :class:`FileSource` for a local folder or a Hub repo id (listing made once, here).

    Args:
        options: how to reach the Hub; or give its fields as keywords
            (``open_source("owner/name", revision="v1")``).
        argument: the caller's name for ``path_or_repo_id``, for messages.

    Raises:
        LocalPathError: a value that looks like a path but names no folder.
        InvalidRepoIdError: neither a folder nor a valid repo id (before any request).
        RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError, OfflineError: Hub failures.
    """
    options = as_options(options, option_fields)
    text = os.fspath(path_or_repo_id)
    if os.path.isdir(text):
        return FileSource(text, None, _walk(Path(text)), Path(text), options=options)
    if looks_like_local_path(path_or_repo_id):
        raise errors.LocalPathError(text)
    check_repo_id(text, argument)
    if options.offline:
        commit, root = _cached_snapshot(text, options)
        return FileSource(text, commit, _walk(root), root, complete=False, options=options)
    commit, files = _remote_listing(text, options)
    return FileSource(text, commit, files, None, options=options)


def resolve_file(
    path_or_repo_id: PathLike,
    filename: str,
    *,
    subfolder: str | None = None,
    options: HubOptions | None = None,
    argument: str = "pretrained_model_name_or_path",
) -> Path:
    """The local path of one file in a folder or Hub repo, downloading it if needed.

    Raises:
        EntryNotFoundError: the folder or repo has no such file.
        LocalPathError: a path-like value naming no folder.
        InvalidRepoIdError, InvalidSubfolderError: before any request.
    """
    options = options or HubOptions()
    subfolder = check_subfolder(subfolder)
    relative = str(PurePosixPath(subfolder, filename)) if subfolder else filename
    text = os.fspath(path_or_repo_id)
    if os.path.isdir(text):
        path = Path(text, relative)
        if not path.is_file():
            raise errors.EntryNotFoundError(text, relative)
        _check_closed(Path(text), [relative])
        return path
    if looks_like_local_path(path_or_repo_id):
        raise errors.LocalPathError(text)
    check_repo_id(text, argument)
    return download_file(text, relative, options)


# ---- used by the host ----


@dataclass(frozen=True)
class RepoListing:
    """A Hub repo resolved to one commit, with its files."""

    repo_id: str
    commit: str
    files: tuple[str, ...]


def repo_listing(repo_id: str, options: HubOptions, *, argument: str = "custom_pipeline") -> RepoListing:
    """Resolve ``options.revision`` (default ``main``) of ``repo_id`` to a commit and list its files.

    Offline (or ``local_files_only``) the answer comes from the local Hub cache.
    """
    source = open_source(repo_id, options, argument=argument)
    assert source.commit is not None
    return RepoListing(repo_id, source.commit, source.files)


def download_file(repo_id: str, filename: str, options: HubOptions) -> Path:
    """Download one file of a Hub repo at ``options.revision`` (or find it in the cache); its local path.

    The file is checked against the ETag the Hub named it by, and against the commit asked
    for (:mod:`pipeyard.hub_integrity`).

    Raises:
        HubDownloadError: it arrived (or lies in the cache) other than the Hub described it.
        HubCacheError: the Hub cache cannot be written.
    """
    from .hub_integrity import check_hub_file

    path = _hf_download(repo_id, filename, options)
    try:
        check_hub_file(repo_id, filename, path, options.revision)
    except errors.HubDownloadError:
        if options.offline:
            raise
        path = _hf_download(repo_id, filename, options)  # the damaged copy is gone: once more
        check_hub_file(repo_id, filename, path, options.revision)
    return path


def _hf_download(repo_id: str, filename: str, options: HubOptions) -> Path:
    from huggingface_hub import hf_hub_download

    with _hub_call(repo_id, options, filename), _download_errors(repo_id, filename, options):
        path = hf_hub_download(
            repo_id,
            filename,
            revision=options.revision,
            cache_dir=options.hub_cache_dir(),
            local_files_only=options.offline,
            token=options.token,
            endpoint=options.hub_endpoint(),
            etag_timeout=constants.network_timeout(),
        )
    return _checked_download(repo_id, filename, options.revision, Path(path))


def _checked_download(repo_id: str, filename: str, revision: str | None, path: Path) -> Path:
    """The path huggingface_hub returned, once it is known not to lead out of the repository.

    huggingface_hub hands back a snapshot entry already on disk without looking at it: the
    entry must not lead out of the repository's cache folder (a link planted in
    ``snapshots/``). Whether it holds the bytes of the commit asked for is
    :func:`pipeyard.hub_integrity.check_hub_file`'s question (a damaged or foreign copy there is
    removed and fetched again online, which a link out of the cache never is).

    Raises:
        OutsideRepositoryError: the entry is a link out of the repository's cache folder.
    """
    snapshot = path.parents[len(PurePosixPath(filename).parts) - 1]
    boundary = os.path.dirname(os.path.dirname(os.path.realpath(snapshot)))  # models--a--b/
    if os.path.commonpath([os.path.realpath(path), boundary]) != boundary:
        raise errors.OutsideRepositoryError(str(snapshot), filename, "it is a link that leads outside the folder")
    return path


def download_dataset_file(repo_id: str, filename: str, options: HubOptions) -> tuple[str, Path]:
    """One file of a Hub *dataset* repo at ``options.revision`` (default ``main``): its commit and path.

    A branch is first resolved to its commit with one metadata request made without
    huggingface_hub's retries (a Hub that is not reached fails after ``PIPEYARD_TIMEOUT``, not
    after a minute of backoff); the file is then read by commit, so a caller reading more files
    of the dataset asks at that same commit. Used for diffusers' community mirror
    (:mod:`pipeyard.host.mirror`).
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    revision = options.revision or "main"
    with _hub_call(repo_id, options, filename):
        if not options.offline and not _COMMIT.match(revision):
            url = hf_hub_url(repo_id, filename, repo_type="dataset", revision=revision, endpoint=options.hub_endpoint())
            metadata = get_hf_file_metadata(url, token=options.token, timeout=constants.network_timeout())
            revision = metadata.commit_hash or revision
        path = Path(hf_hub_download(
            repo_id,
            filename,
            repo_type="dataset",
            revision=revision,
            cache_dir=options.hub_cache_dir(),
            local_files_only=options.offline,
            token=options.token,
            endpoint=options.hub_endpoint(),
            etag_timeout=constants.network_timeout(),
        ))
    snapshot = path.parents[len(PurePosixPath(filename).parts) - 1]  # .../snapshots/<commit>
    return snapshot.name, path


def dataset_folder_files(repo_id: str, folder: str, options: HubOptions) -> list[str]:
    """The files directly in ``folder`` of a Hub dataset at ``options.revision`` (default ``main``).

    One listing request (paginated by the Hub for very large folders); used by
    ``pipeyard list --all --online`` for diffusers' community mirror.
    """
    from huggingface_hub import HfApi

    if options.offline:
        raise errors.OfflineError(f"the file list of {repo_id!r} {folder}/", options.offline_reason)
    api = HfApi(endpoint=options.hub_endpoint(), token=options.token)
    with _hub_call(repo_id, options):
        entries = api.list_repo_tree(repo_id, path_in_repo=folder, repo_type="dataset", revision=options.revision or "main")
        return sorted(PurePosixPath(e.path).name for e in entries if type(e).__name__ == "RepoFile")


@contextlib.contextmanager
def _download_errors(repo_id: str, filename: str, options: HubOptions) -> Iterator[None]:
    """huggingface_hub's plain ``OSError``: a size check that failed, or the cache's disk."""
    try:
        yield
    except errors.PipeyardError:
        raise
    except OSError as exc:
        if type(exc) is OSError and exc.errno is None:  # "Consistency check failed: file should be of size"
            raise errors.HubDownloadError(repo_id, filename, _first_line(exc)) from None
        if exc.errno in _DISK_ERRNOS:
            raise errors.HubCacheError(str(exc.filename or options.hub_cache_dir()), exc.strerror or str(exc)) from None
        raise  # huggingface_hub's own errors: _translated_hub_errors names them


_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


# ---------------------------------------------------------------------- internals


def _check_closed(root: Path, names: Iterable[str]) -> None:
    """Refuse names of a local folder that resolve outside it, or that are not regular files.

    The folder of a Hub cache snapshot (``models--a--b/snapshots/<commit>``) is a set of links
    into its repository's ``blobs/``: there the repository's cache folder is the boundary.

    Raises:
        OutsideRepositoryError: before anything of the file is read.
    """
    import stat

    real_root = os.path.realpath(root)
    boundary = os.path.dirname(os.path.dirname(real_root)) if root.parent.name == "snapshots" else real_root
    for name in names:
        real = os.path.realpath(root.joinpath(*name.split("/")))
        if os.path.commonpath([real, boundary]) != boundary:
            raise errors.OutsideRepositoryError(str(root), name, "it is a link that leads outside the folder")
        try:
            mode = os.stat(real).st_mode
        except OSError as exc:
            raise errors.OutsideRepositoryError(str(root), name, exc.strerror or "it cannot be read") from None
        if not stat.S_ISREG(mode):
            raise errors.OutsideRepositoryError(str(root), name, "it is not a regular file")


def _walk(root: Path) -> tuple[str, ...]:
    return tuple(sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()))


def _cached_snapshot(repo_id: str, options: HubOptions) -> tuple[str, Path]:
    """The commit and snapshot folder the Hub cache holds for ``options.revision``, without any request.

    Raises:
        OfflineError: the revision was never downloaded into this cache.
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError

    api = HfApi(endpoint=options.hub_endpoint(), token=options.token)
    with _hub_call(repo_id, options):
        commit = api.resolve_revision(
            repo_id, revision=options.revision, cache_dir=options.hub_cache_dir(), local_files_only=True
        ).resolved
        try:
            folder = snapshot_download(
                repo_id, revision=commit, cache_dir=options.hub_cache_dir(), local_files_only=True
            )
        except IncompleteSnapshotError as exc:  # a load fetches only the files it needs: partial is normal
            folder = exc.snapshot_path
    return commit, Path(folder)


def _remote_listing(repo_id: str, options: HubOptions) -> tuple[str, tuple[str, ...]]:
    """Resolve the revision to its commit (recorded in the Hub cache) and list the files there."""
    api = _listing_api(options)
    with _hub_call(repo_id, options):
        try:
            # Always name the revision: the Hub API pins it into the URL, and mirrors only serve that form.
            commit = api.resolve_revision(
                repo_id, revision=options.revision or "main", cache_dir=options.hub_cache_dir(), token=options.token
            ).resolved
        except Exception:
            if api.failure is None:
                raise
        # resolve_revision falls back on the cache when the Hub fails; online, that is an error.
        if api.failure is not None:
            raise api.failure
        info = api.answer
        if info is None or info.sha != commit:  # a commit sha resolves without a request
            info = api.model_info(repo_id, revision=commit, timeout=constants.network_timeout())
    if not info.sha:
        raise errors.HubError(f"the Hub did not say which commit {repo_id!r}@{options.revision or 'main'} is")
    return info.sha, tuple(sorted(s.rfilename for s in (info.siblings or ())))


def _listing_api(options: HubOptions) -> Any:
    """An ``HfApi`` whose ``repo_info`` carries pipeyard's timeout and keeps its answer.

    ``resolve_revision`` asks ``repo_info`` for the commit and drops the rest; keeping the
    answer saves a second request for the file list, at the very same commit.
    """
    return _listing_api_class()(endpoint=options.hub_endpoint(), token=options.token)


@functools.lru_cache(maxsize=1)
def _listing_api_class() -> type:
    from huggingface_hub import HfApi

    class ListingApi(HfApi):
        answer: Any = None
        failure: BaseException | None = None

        def repo_info(self, repo_id: str, *args: Any, **kwargs: Any) -> Any:
            kwargs["timeout"] = constants.network_timeout()
            try:
                self.answer = super().repo_info(repo_id, *args, **kwargs)
            except Exception as exc:
                self.failure = exc
                raise
            return self.answer

    return ListingApi


def _download_files(repo_id: str, names: list[str], options: HubOptions) -> Path:
    """Download ``names`` of ``repo_id`` at ``options.revision`` (a commit) into the Hub cache;
    return the snapshot root.

    The file list is already known (from the listing), so each file is fetched directly by
    commit — no second listing request — a few at a time.
    """
    from concurrent.futures import ThreadPoolExecutor

    if not names:
        raise ValueError("nothing to download")
    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        paths = list(pool.map(lambda name: download_file(repo_id, name, options), names))
    first, name = paths[0], names[0]
    return first.parents[len(PurePosixPath(name).parts) - 1]


@contextlib.contextmanager
def _hub_call(repo_id: str, options: HubOptions, filename: str | None = None) -> Iterator[None]:
    """Requests made inside go through ``options.proxies`` and give up, retries included, after
    ``PIPEYARD_TIMEOUT`` seconds without progress (:mod:`pipeyard.hub_deadline`); errors come
    out as pipeyard's."""
    from . import hub_deadline
    from .hub_client import install_client, proxied

    install_client()
    with _translated_hub_errors(repo_id, options, filename), proxied(options.proxies), hub_deadline.deadline():
        yield


@contextlib.contextmanager
def _translated_hub_errors(repo_id: str, options: HubOptions, filename: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into pipeyard's, which say what to change."""
    from huggingface_hub import errors as hf

    revision = options.revision
    what = f"{filename!r} of {repo_id!r}" if filename else f"{repo_id!r} at revision {revision or 'main'!r}"
    try:
        yield
    except _gave_up() as exc:
        if exc.status is None:
            raise errors.OfflineError(what, f"the Hub was not reached ({exc})") from None
        raise errors.HubError(f"Hub request for {what} failed: {exc}") from None
    except hf.GatedRepoError:
        raise errors.GatedRepoError(repo_id) from None
    except hf.RepositoryNotFoundError as exc:
        raise errors.RepositoryNotFoundError(repo_id, _first_line(exc)) from None
    except hf.RevisionNotFoundError:
        raise errors.RevisionNotFoundError(repo_id, revision or "main") from None
    except (hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled, hf.RevisionResolutionError) as exc:
        # LocalEntryNotFoundError derives from EntryNotFoundError: it must be caught first.
        reason = options.offline_reason if options.offline else f"the Hub was not reached ({_first_line(exc)})"
        raise errors.OfflineError(what, reason) from exc
    except hf.EntryNotFoundError:
        raise errors.EntryNotFoundError(repo_id, filename or "?", revision) from None
    except hf.HfHubHTTPError as exc:
        raise errors.HubError(f"Hub request for {repo_id!r} failed: {_first_line(exc)}") from exc
    except hf.HFValidationError as exc:  # checked before any request; kept as a safety net
        raise errors.InvalidRepoIdError(repo_id, "repo id", _first_line(exc)) from None
    except _transport_errors() as exc:
        # Timeouts after PIPEYARD_TIMEOUT, refused connections, a proxy that fails.
        broke = type(exc).__name__ in ("ReadError", "WriteError", "RemoteProtocolError")
        via = {"ProxyError": "the proxy failed"}.get(type(exc).__name__) or (
            "the connection broke mid-answer" if broke else "the Hub was not reached"
        )
        raise errors.OfflineError(what, f"{via} ({type(exc).__name__}: {exc})") from exc


def _gave_up() -> type[BaseException]:
    from .hub_deadline import GaveUp

    return GaveUp


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The exception types of a request that got no HTTP answer (imported only when one is raised)."""
    import httpx2  # huggingface_hub's HTTP client

    return (httpx2.TransportError, ConnectionError, TimeoutError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
