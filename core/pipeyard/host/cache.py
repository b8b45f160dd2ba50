"""Step 3: the content-addressed module store and the resolution records.

Layout under ``PIPEYARD_HOME`` (read at call time)::

    modules/
      <digest>/                 one pipeline package, named by its content
        pipeline.py             the pipeline file, under its own name
        helpers/util.py         sibling modules it imports relatively, same relative paths
        MANIFEST.json           {"main": ..., "files": {path: sha256}}; written last
    records/
      <sha256 of key>.json      source + revision -> commit + digest (Hub, GitHub)
    locks/
      <digest>.lock             one file lock (filelock) per package being written

The digest of a single-file package is the file's sha256 (what ``sha256sum`` prints); with
siblings it is the sha256 of the manifest lines ``<sha256>  <path>``, sorted. Because the
folder name is the content, two different ``pipeline.py`` files never collide (diffusers
#3761), and an edited file is a new package. A package whose manifest exists is complete:
files are written to a temporary name then ``os.replace``-d, the manifest last, under a lock,
so concurrent processes filling an empty cache all succeed. On read every file is re-hashed
against the manifest, so a file edited inside the cache is refused rather than run; the bytes
hashed (:attr:`StoredPackage.contents`) are the ones verified and imported, never read again.

A resolution record lets a warm load of a remote pipeline make no network request at all, and
lets offline mode (diffusers #7946, #5300) work: it maps ``(source, revision)`` to the commit
and digest seen when it was first fetched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import constants, errors
from ..fileio import write_bytes_atomic

if TYPE_CHECKING:
    from filelock import FileLock

MANIFEST_NAME = "MANIFEST.json"


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


def _lock_timeout() -> float:
    return max(60.0, constants.network_timeout())


def _package_lock(digest: str) -> FileLock:
    """``locks/<digest>.lock``, held exclusively while the package is written."""
    from filelock import FileLock

    locks = constants.pipeyard_home() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{digest}.lock"), timeout=_lock_timeout())


def store_package(files: Mapping[str, bytes], main: str) -> StoredPackage:
    """Put a package in the store (once per digest); return where it lies."""
    hashes = {name: sha256(data) for name, data in files.items()}
    digest = package_digest(hashes)
    stored = load_package(digest)  # re-hashed: what gets imported is what was verified
    if stored is not None:
        return stored
    root = modules_dir() / digest
    with _package_lock(digest):
        if not (root / MANIFEST_NAME).is_file():  # else another process finished while we waited
            for name, data in files.items():
                write_bytes_atomic(root.joinpath(*name.split("/")), data)
            manifest = {"main": main, "files": dict(sorted(hashes.items()))}
            write_bytes_atomic(root / MANIFEST_NAME, json.dumps(manifest, indent=1).encode())
    return StoredPackage(digest, root, main, hashes, dict(files))


def _read_manifest(digest: str, root: Path) -> StoredPackage:
    data = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    return StoredPackage(digest, root, data["main"], data["files"])


def load_package(digest: str, *, check: bool = True) -> StoredPackage | None:
    """The stored package ``digest``, or None when it is not (completely) stored.

    With ``check``, every file is re-hashed; a mismatch raises
    :class:`~pipeyard.errors.PipelineVerificationError` (the cache was edited by hand).
    """
    root = modules_dir() / digest
    if not (root / MANIFEST_NAME).is_file():
        return None
    stored = _read_manifest(digest, root)
    if not check:
        return stored
    contents = stored.read_all()
    actual = {name: sha256(data) for name, data in contents.items()}
    if actual != dict(stored.files) or package_digest(actual) != digest:
        raise errors.PipelineVerificationError(
            str(root), "the cached files no longer match their digest; delete this folder and load again"
        )
    return StoredPackage(digest, root, stored.main, stored.files, contents)


def list_packages() -> list[tuple[str, StoredPackage | None]]:
    """Every folder of the module store, by digest: its package, or None when incomplete.

    Nothing is re-hashed here; :func:`load_package` does that for one digest.
    """
    root = modules_dir()
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [(p.name, load_package(p.name, check=False)) for p in folders]


def clear_store() -> int:
    """Delete the module store and the resolution records; return how many packages went."""
    import shutil

    count = len(list_packages())
    for folder in (modules_dir(), constants.pipeyard_home() / "records"):
        shutil.rmtree(folder, ignore_errors=True)
    return count


# --------------------------------------------------------------------------- records


def _record_path(key: str) -> Path:
    return constants.pipeyard_home() / "records" / f"{sha256(key.encode())}.json"


def read_record(key: str) -> ResolutionRecord | None:
    """The resolution record stored for ``key``, or None."""
    try:
        data = json.loads(_record_path(key).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return ResolutionRecord(data.get("commit"), data["digest"], data.get("origin", ""))


def write_record(key: str, record: ResolutionRecord) -> None:
    """Store the resolution of ``key`` (atomic; the last writer wins, all write the same)."""
    data = {"key": key, "commit": record.commit, "digest": record.digest, "origin": record.origin}
    write_bytes_atomic(_record_path(key), json.dumps(data, indent=1).encode())
