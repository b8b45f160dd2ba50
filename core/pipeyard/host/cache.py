"""Step 3: the content-addressed module store and the resolution records.

Layout under ``PIPEYARD_HOME`` (read at call time)::

    modules/
      <digest>/                 one pipeline package, named by its content
        pipeline.py             the pipeline file, under its own name
        helpers/util.py         sibling modules it imports relatively, same relative paths
        MANIFEST.json           {"main": ..., "files": {path: sha256}}; written last
    review/
      <digest>/                 a package the trust gate refused, same layout: a copy for the
                                user to read before trusting it; never imported from here
    records/
      <sha256 of key>.json      source + revision -> commit + digest (Hub, GitHub)
    locks/
      <digest>.lock             one file lock (filelock) per package being written

The digest of a single-file package is the file's sha256 (what ``sha256sum`` prints); with
siblings it is the sha256 of the manifest lines ``<sha256>  <path>``, sorted. Because the
folder name is the content, two different ``pipeline.py`` files never collide (diffusers
#3761), and an edited file is a new package. A package whose manifest exists is complete:
files are written to a temporary name then ``os.replace``-d, the manifest last, under a lock,
so concurrent processes filling an empty cache all succeed; a package is written in a staging
folder (``modules/.staging-<pid>-*``) renamed into place at the end, so a process killed while
writing never leaves a ``<digest>/`` folder without its manifest. On read every file is re-hashed
against the manifest, so a file edited inside the cache is refused rather than run; the bytes
hashed (:attr:`StoredPackage.contents`) are the ones verified and imported, never read again.

Only packages that passed verification and the trust gate enter ``modules/`` (a refused one
goes to ``review/``, one failing verification nowhere), so the store never holds code that
looks loadable but was never allowed. Bundled pipelines are not copied at all: they are
imported from the installed ``community/`` folder's verified bytes, so a read-only
``PIPEYARD_HOME`` still loads them (and every package already stored). Any other failure to
use ``PIPEYARD_HOME`` is a :class:`~pipeyard.errors.PipeyardHomeError` naming the path.

A resolution record lets a warm load of a remote pipeline make no network request at all, and
lets offline mode (diffusers #7946, #5300) work: it maps ``(source, revision)`` to the commit
and digest seen when it was first fetched.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import constants, errors
from ..fileio import read_json_file

if TYPE_CHECKING:
    from filelock import FileLock

MANIFEST_NAME = "MANIFEST.json"
#: Packages are written in ``.staging-<pid>-*`` beside their folder, then renamed into place.
STAGING_PREFIX = "staging-"


@dataclass(frozen=True)
class StoredPackage:
    """A complete package in the module store.

    Attributes:
        digest: its content digest (the folder name).
        root: the folder.
        main: package-relative path of the pipeline file.
        files: package-relative path -> sha256 of every file.
        contents: path -> the bytes that were hashed against ``files`` when this package was
            stored or loaded with ``check``; verifying and importing those bytes, not a new
            read, means what runs is what was hashed. None when it was not checked.
    """

    digest: str
    root: Path
    main: str
    files: Mapping[str, str]
    contents: Mapping[str, bytes] | None = field(default=None, compare=False, repr=False)

    @property
    def main_path(self) -> Path:
        return self.root.joinpath(*self.main.split("/"))

    @property
    def in_store(self) -> bool:
        """True when the files lie in the module store (not only in memory, or bundled)."""
        return self.root == modules_dir() / self.digest

    def read_all(self) -> Mapping[str, bytes]:
        """Every file's bytes: the hashed ``contents``, else read from the store."""
        if self.contents is not None:
            return self.contents
        return {name: self.root.joinpath(*name.split("/")).read_bytes() for name in self.files}


@dataclass(frozen=True)
class ResolutionRecord:
    """What a remote source at a revision resolved to, the first time it was fetched."""

    commit: str | None
    digest: str
    origin: str


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package_digest(hashes: Mapping[str, str]) -> str:
    """The digest of a package from its files' sha256 (see the module docstring)."""
    if len(hashes) == 1:
        return next(iter(hashes.values()))
    manifest = "".join(f"{hashes[name]}  {name}\n" for name in sorted(hashes))
    return sha256(manifest.encode())


def modules_dir() -> Path:
    return constants.pipeyard_home() / "modules"


def review_dir() -> Path:
    return constants.pipeyard_home() / "review"


@contextmanager
def home_errors(path: Path, action: str) -> Iterator[None]:
    """Turn an ``OSError`` on a file under ``PIPEYARD_HOME`` into :class:`~pipeyard.errors.PipeyardHomeError`."""
    try:
        yield
    except errors.PipeyardError:
        raise
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise errors.PipeyardHomeError(str(exc.filename or path), action, reason) from None


def atomic_write(path: Path, data: bytes, *, what: str = "write under PIPEYARD_HOME") -> None:
    """Create the folder, then write through a unique temp file and ``os.replace``."""
    from ..fileio import write_bytes_atomic

    with home_errors(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)


def _lock_timeout() -> float:
    return max(60.0, constants.network_timeout())


def _package_lock(digest: str) -> FileLock:
    """``locks/<digest>.lock``, held exclusively while the package is written."""
    from filelock import FileLock

    locks = constants.pipeyard_home() / "locks"
    with home_errors(locks, "create the lock folder"):
        locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{digest}.lock"), timeout=_lock_timeout())


def package_hashes(files: Mapping[str, bytes]) -> dict[str, str]:
    return {name: sha256(data) for name, data in files.items()}


def memory_package(files: Mapping[str, bytes], main: str, root: str | os.PathLike[str]) -> StoredPackage:
    """A package imported from bytes already in hand (bundled code), its files left where they are."""
    hashes = package_hashes(files)
    return StoredPackage(package_digest(hashes), Path(root), main, hashes, dict(files))


def store_package(files: Mapping[str, bytes], main: str) -> StoredPackage:
    """Put a verified, allowed package in the store (once per digest); return where it lies.

    Raises:
        PipeyardHomeError: the store cannot be written.
    """
    hashes = package_hashes(files)
    digest = package_digest(hashes)
    stored = load_package(digest)  # re-hashed: what gets imported is what was verified
    if stored is not None:
        return stored
    _write_package(modules_dir() / digest, digest, files, main, hashes, "store a pipeline package")
    return StoredPackage(digest, modules_dir() / digest, main, hashes, dict(files))


def store_for_review(files: Mapping[str, bytes], main: str) -> Path:
    """Copy a refused package to ``review/<digest>/`` for the user to read; the main file's path.

    Raises:
        PipeyardHomeError: it cannot be written.
    """
    hashes = package_hashes(files)
    digest = package_digest(hashes)
    root = review_dir() / digest
    _write_package(root, digest, files, main, hashes, "keep a copy of the refused code for review")
    return root.joinpath(*main.split("/"))


def _write_package(
    root: Path, digest: str, files: Mapping[str, bytes], main: str, hashes: Mapping[str, str], action: str
) -> None:
    """Write the package in a staging folder beside ``root``, then rename it to ``root``.

    A process killed mid-write leaves only ``.staging-<pid>-*`` (removed by the next writer),
    never a ``<digest>/`` folder without its manifest.
    """
    import shutil
    import tempfile

    from ..fileio import remove_stale_staging

    with home_errors(root, action), _package_lock(digest):
        if (root / MANIFEST_NAME).is_file():  # another process finished while we waited
            return
        root.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(root.parent, f".{STAGING_PREFIX}")
        if root.exists():  # left incomplete by an older version: rewrite it
            shutil.rmtree(root)
        staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{STAGING_PREFIX}{os.getpid()}-"))
        try:
            for name, data in files.items():
                atomic_write(staging.joinpath(*name.split("/")), data, what=action)
            manifest = {"main": main, "files": dict(sorted(hashes.items()))}
            atomic_write(staging / MANIFEST_NAME, json.dumps(manifest, indent=1).encode(), what=action)
            os.rename(staging, root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def discard_package(digest: str) -> None:
    """Remove a (damaged) stored package: renamed aside in one step under its lock, then deleted.

    Raises:
        PipeyardHomeError: it cannot be removed.
    """
    import shutil

    root = modules_dir() / digest
    if not _is_digest(digest):
        return
    with home_errors(root, "remove a damaged package from the module store"), _package_lock(digest):
        if not root.exists():
            return
        aside = root.with_name(f".{STAGING_PREFIX}{os.getpid()}-discarded-{digest}")
        os.rename(root, aside)
        shutil.rmtree(aside, ignore_errors=True)


def _read_manifest(digest: str, root: Path) -> StoredPackage:
    try:
        data = read_json_file(root / MANIFEST_NAME)
        main, files = data.get("main"), data.get("files")
        valid = isinstance(main, str) and isinstance(files, dict) and main in files
    except (OSError, errors.ConfigFileError):
        valid = False
    if not valid:
        raise errors.PipelineVerificationError(
            str(root / MANIFEST_NAME), "the module store's manifest is damaged; delete this folder and load again"
        )
    return StoredPackage(digest, root, main, files)


def load_package(digest: str, *, check: bool = True) -> StoredPackage | None:
    """The stored package ``digest``, or None when it is not (completely) stored.

    With ``check``, every file is re-hashed; a mismatch raises
    :class:`~pipeyard.errors.PipelineVerificationError` (the cache was edited by hand).
    """
    if not _is_digest(digest):
        return None
    root = modules_dir() / digest
    if not (root / MANIFEST_NAME).is_file():
        return None
    stored = _read_manifest(digest, root)
    if not check:
        return stored
    try:
        contents = stored.read_all()
    except (OSError, ValueError):  # a file deleted, replaced by a folder, unreadable, a bad name
        contents = {}
    actual = {name: sha256(data) for name, data in contents.items()}
    if actual != dict(stored.files) or package_digest(actual) != digest:
        raise errors.PipelineVerificationError(
            str(root), "the cached files no longer match their digest, so nothing of them is imported; "
            "load again online (a remote pipeline is fetched anew) or delete this folder and load again"
        )
    return StoredPackage(digest, root, stored.main, stored.files, contents)


def list_packages() -> list[tuple[str, StoredPackage | None]]:
    """Every folder of the module store, by digest: its package, or None when incomplete.

    Nothing is re-hashed here; :func:`load_package` does that for one digest.
    """
    root = modules_dir()
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    return [(p.name, _manifest_or_none(p.name)) for p in folders]


def _manifest_or_none(digest: str) -> StoredPackage | None:
    try:
        return load_package(digest, check=False)
    except errors.PipelineVerificationError:
        return None


def review_digests() -> list[str]:
    """Digests of the refused packages copied to ``review/`` (never imported from there)."""
    root = review_dir()
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def clear_store() -> int:
    """Delete the module store and the resolution records; return how many packages went."""
    import shutil

    count = len(list_packages())
    for folder in (modules_dir(), review_dir(), constants.pipeyard_home() / "records"):
        shutil.rmtree(folder, ignore_errors=True)
    return count


# --------------------------------------------------------------------------- records


def _record_path(key: str) -> Path:
    return constants.pipeyard_home() / "records" / f"{sha256(key.encode())}.json"


def read_record(key: str) -> ResolutionRecord | None:
    """The resolution record stored for ``key``, or None."""
    path = _record_path(key)
    with home_errors(path, "read a resolution record"):
        try:
            data = read_json_file(path)
        except (FileNotFoundError, errors.ConfigFileError):
            return None  # never recorded, or damaged: resolve again
    if not _is_digest(data.get("digest")):
        return None
    commit, origin = data.get("commit"), data.get("origin", "")
    return ResolutionRecord(commit if isinstance(commit, str) else None, data["digest"], str(origin))


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def write_record(key: str, record: ResolutionRecord) -> None:
    """Store the resolution of ``key`` (atomic; the last writer wins, all write the same)."""
    data = {"key": key, "commit": record.commit, "digest": record.digest, "origin": record.origin}
    atomic_write(_record_path(key), json.dumps(data, indent=1).encode(), what="record where a pipeline resolved")


def list_records() -> list[tuple[tuple[str, ...], ResolutionRecord]]:
    """Every readable resolution record, with its key's fields (``Source.record_key``'s list).

    What this machine resolved before, read without any request (``pipeyard list --all``);
    damaged records are skipped, as :func:`read_record` ignores them.
    """
    root = constants.pipeyard_home() / "records"
    found = []
    for path in sorted(root.glob("*.json")) if root.is_dir() else []:
        try:
            key = json.loads(read_json_file(path).get("key", ""))
        except (OSError, ValueError, errors.ConfigFileError):
            continue
        record = read_record(json.dumps(key)) if isinstance(key, list) and len(key) == 5 else None
        if record is not None:
            found.append((tuple(str(part) for part in key), record))
    return found
