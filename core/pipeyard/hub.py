"""The one module that talks to huggingface_hub: listings, downloads, offline mode, errors.

Everything that reads model files goes through a :class:`FileSource`: a local folder or a Hub
repository pinned to one commit, with the list of files it holds. Callers pick the files they
need from ``source.files`` and ask ``source.fetch(names)`` for a local folder holding them, so
only those files are downloaded and a local folder is used in place.

Offline mode (``PIPEYARD_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``, read at call time) and
``local_files_only=True`` answer from the local Hub cache alone. Every request carries the
timeout from ``PIPEYARD_TIMEOUT``. huggingface_hub's errors are translated into pipeyard's
(:mod:`pipeyard.errors`), which name the repo, the revision and the fix.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from . import constants, errors

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def looks_like_local_path(value: PathLike) -> bool:
    """True for values that can only mean a path: existing, absolute, ``./``, ``~`` or a backslash."""
    text = os.fspath(value)
    if isinstance(value, os.PathLike) or os.path.exists(text):
        return True
    return text.startswith(("/", "./", "../", "~", ".\\")) or "\\" in text or text.count("/") > 1


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
    """

    location: str
    commit: str | None
    files: tuple[str, ...]
    root: Path | None = None
    complete: bool = True
    _options: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    def missing(self, what: str, error: Exception) -> Exception:
        """The error to raise when ``what`` is not in ``files``: ``error``, or OfflineError
        when the listing is only an offline cache's."""
        if self.complete:
            return error
        reason = "offline mode is on" if constants.is_offline() else "local_files_only=True"
        return errors.OfflineError(f"{what} of {self.location!r}", reason)

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
        prefix = f"{subfolder.strip('/')}/" if subfolder else ""
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
            return self.root
        assert self.commit is not None
        return _download_files(self.location, names, self.commit, **self._options)  # type: ignore[arg-type]


def open_source(
    path_or_repo_id: PathLike,
    *,
    revision: str | None = None,
    cache_dir: PathLike | None = None,
    local_files_only: bool = False,
    token: str | None = None,
) -> FileSource:
    """A :class:`FileSource` for a local folder or a Hub repo id (listing made once, here).

    Raises:
        LocalPathError: a value that looks like a path but names no folder.
        RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError, OfflineError: Hub failures.
    """
    text = os.fspath(path_or_repo_id)
    if os.path.isdir(text):
        root = Path(text)
        files = tuple(sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()))
        return FileSource(text, None, files, root)
    if looks_like_local_path(path_or_repo_id):
        raise errors.LocalPathError(text)
    options = {"cache_dir": cache_dir, "local_files_only": local_files_only, "token": token}
    if local_files_only or constants.is_offline():
        root = _cached_snapshot(text, revision or "main", cache_dir)
        files = tuple(sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()))
        return FileSource(text, root.name, files, root, complete=False, _options=options)
    commit, files = _remote_listing(text, revision, token)
    _remember_ref(text, revision or "main", commit, cache_dir)
    return FileSource(text, commit, files, None, _options=options)


def resolve_file(
    path_or_repo_id: PathLike,
    filename: str,
    *,
    subfolder: str | None = None,
    revision: str | None = None,
    cache_dir: PathLike | None = None,
    local_files_only: bool = False,
    token: str | None = None,
) -> Path:
    """The local path of one file in a folder or Hub repo, downloading it if needed.

    Raises:
        EntryNotFoundError: the folder or repo has no such file.
        LocalPathError: a path-like value naming no folder.
    """
    relative = str(PurePosixPath(subfolder, filename)) if subfolder else filename
    text = os.fspath(path_or_repo_id)
    if os.path.isdir(text):
        path = Path(text, relative)
        if not path.is_file():
            raise errors.EntryNotFoundError(text, relative)
        return path
    if looks_like_local_path(path_or_repo_id):
        raise errors.LocalPathError(text)
    return download_file(
        text, relative, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
    )


# ---- used by the host ----


@dataclass(frozen=True)
class RepoListing:
    """A Hub repo resolved to one commit, with its files."""

    repo_id: str
    commit: str
    files: tuple[str, ...]


def repo_listing(
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: PathLike | None = None,
    local_files_only: bool = False,
) -> RepoListing:
    """Resolve ``revision`` (default ``main``) of ``repo_id`` to a commit and list its files.

    Offline (or ``local_files_only``) the answer comes from the local Hub cache.
    """
    source = open_source(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    assert source.commit is not None
    return RepoListing(repo_id, source.commit, source.files)


def download_file(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: PathLike | None = None,
    local_files_only: bool = False,
) -> Path:
    """Download one file of a Hub repo (or find it in the cache) and return its local path."""
    from huggingface_hub import hf_hub_download

    offline = local_files_only or constants.is_offline()
    with _translated_hub_errors(repo_id, revision, filename):
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=_cache_dir(cache_dir),
            local_files_only=offline,
            token=token,
            endpoint=constants.hub_endpoint(),
            etag_timeout=constants.network_timeout(),
        )
    return Path(path)


# ---------------------------------------------------------------------- internals


def _remember_ref(repo_id: str, revision: str, commit: str, cache_dir: PathLike | None) -> None:
    """Record ``revision -> commit`` in the Hub cache (``refs/<revision>``), as huggingface_hub does.

    Files are downloaded by commit sha so that one load never mixes two commits; the Hub
    cache only records a branch's commit when it resolves the branch itself. Writing the ref
    here lets a later offline load of ``revision`` find the snapshot (diffusers #7946, #5300).
    """
    if revision == commit or "/" in revision and not revision.startswith("refs/pr/"):
        return
    from .fileio import write_bytes_atomic

    ref = Path(_cache_dir(cache_dir), f"models--{repo_id.replace('/', '--')}", "refs", revision)
    try:
        if ref.is_file() and ref.read_text().strip() == commit:
            return
        ref.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(ref, commit.encode())
    except OSError as exc:  # a read-only cache still works online
        logger.debug("could not record %s@%s -> %s: %s", repo_id, revision, commit, exc)


def _cached_snapshot(repo_id: str, revision: str, cache_dir: PathLike | None) -> Path:
    """The Hub cache's snapshot folder of ``repo_id`` at ``revision``, without any request.

    Raises:
        OfflineError: the revision was never downloaded into this cache.
    """
    repo_folder = Path(_cache_dir(cache_dir), f"models--{repo_id.replace('/', '--')}")
    commit = revision
    ref = repo_folder / "refs" / revision
    if ref.is_file():
        commit = ref.read_text().strip()
    snapshot = repo_folder / "snapshots" / commit
    if not snapshot.is_dir():
        reason = "offline mode is on" if constants.is_offline() else "local_files_only=True"
        raise errors.OfflineError(f"{repo_id!r} at revision {revision!r}", reason)
    return snapshot


def _cache_dir(cache_dir: PathLike | None) -> str:
    return os.fspath(cache_dir) if cache_dir is not None else os.fspath(constants.hub_cache_dir())


def _remote_listing(repo_id: str, revision: str | None, token: str | None) -> tuple[str, tuple[str, ...]]:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=constants.hub_endpoint(), token=token)
    with _translated_hub_errors(repo_id, revision):
        # Always name the revision: the Hub API pins it into the URL, and mirrors only serve that form.
        info = api.model_info(repo_id, revision=revision or "main", timeout=constants.network_timeout())
    files = tuple(sorted(s.rfilename for s in (info.siblings or ())))
    if not info.sha:
        raise errors.HubError(f"the Hub did not say which commit {repo_id!r}@{revision or 'main'} is")
    return info.sha, files


def _download_files(
    repo_id: str,
    names: list[str],
    commit: str,
    *,
    cache_dir: PathLike | None = None,
    local_files_only: bool = False,
    token: str | None = None,
) -> Path:
    """Download ``names`` of ``repo_id`` at ``commit`` into the Hub cache; return the snapshot root.

    The file list is already known (from the listing), so each file is fetched directly by
    commit — no second listing request — a few at a time.
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(name: str) -> Path:
        return download_file(repo_id, name, revision=commit, token=token, cache_dir=cache_dir,
                             local_files_only=local_files_only)

    if not names:
        raise ValueError("nothing to download")
    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        paths = list(pool.map(one, names))
    first, name = paths[0], names[0]
    return first.parents[len(PurePosixPath(name).parts) - 1]


@contextlib.contextmanager
def _translated_hub_errors(repo_id: str, revision: str | None, filename: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into pipeyard's, which say what to change."""
    from huggingface_hub import errors as hf

    try:
        yield
    except hf.GatedRepoError:
        raise errors.GatedRepoError(repo_id) from None
    except hf.RepositoryNotFoundError as exc:
        raise errors.RepositoryNotFoundError(repo_id, _first_line(exc)) from None
    except hf.RevisionNotFoundError:
        raise errors.RevisionNotFoundError(repo_id, revision or "main") from None
    except (hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled) as exc:
        # LocalEntryNotFoundError derives from EntryNotFoundError: it must be caught first.
        what = f"{filename!r} of {repo_id!r}" if filename else f"{repo_id!r}"
        reason = "offline mode is on" if constants.is_offline() else f"the Hub was not reached ({_first_line(exc)})"
        raise errors.OfflineError(what, reason) from exc
    except hf.EntryNotFoundError:
        raise errors.EntryNotFoundError(repo_id, filename or "?", revision) from None
    except hf.HfHubHTTPError as exc:
        raise errors.HubError(f"Hub request for {repo_id!r} failed: {_first_line(exc)}") from exc
    except Exception as exc:
        # Transport failures (timeouts after PIPEYARD_TIMEOUT, refused connections) come from
        # the HTTP client huggingface_hub uses, whose classes we do not import by name.
        if not _is_transport_error(exc):
            raise
        what = f"{filename!r} of {repo_id!r}" if filename else f"{repo_id!r}"
        raise errors.OfflineError(what, f"the Hub was not reached ({type(exc).__name__}: {exc})") from exc


def _is_transport_error(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return "TransportError" in names or isinstance(exc, (ConnectionError, TimeoutError))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
