"""Check each Hub file against what the Hub said about it, before anyone reads it.

huggingface_hub names a cached file's blob by its ETag: the sha256 of an LFS file (weights),
the git blob sha1 of a small one (configs, code). It never checks the bytes against that name,
so a body cut or padded by the network, a lying server, or a bit flipped on disk later would
be loaded as is. :func:`check_hub_file` hashes the blob and compares:

- a 64-hex blob name is a sha256; a 40-hex one a git blob sha1 (``sha1("blob <size>\\0" +
  bytes)``); any other name (a server that gives no content hash) is not checked;
- a file found under another commit's snapshot than the one asked for (a lying
  ``X-Repo-Commit``) is refused too.

A mismatch removes the damaged blob and its link and raises
:class:`~pipeyard.errors.HubDownloadError`; online, :func:`pipeyard.hub.download_file` then
downloads the file once more (and raises if that copy is wrong too). Offline the error stays:
nothing is loaded from a file that does not match.

Cost: hashing runs once per blob, at ~1-2 GB/s (a 3.4 GB SD 1.5 UNet: about two seconds).
A verified blob gets a stamp (size, mtime, inode) in ``PIPEYARD_HOME/hub-verified/``; a later
load whose ``stat`` matches the stamp skips the hash, so a warm load costs one ``stat`` and one
small read per file. A file rewritten or truncated through the file system changes its size or
mtime and is hashed again; damage that bypasses it (bit rot on the medium) keeps the stamp, so
``PIPEYARD_VERIFY_HUB_FILES=always`` hashes on every load instead. Stamps are a cache: a
read-only ``PIPEYARD_HOME`` only means hashing every time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path, PurePosixPath

from . import constants, errors

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 8 * 2**20


def check_hub_file(repo_id: str, filename: str, path: Path, commit: str | None) -> None:
    """Refuse ``path`` (a Hub cache snapshot link) unless its commit and bytes are the promised ones.

    Raises:
        HubDownloadError: another commit, or bytes that do not hash to the blob's name.
    """
    depth = len(PurePosixPath(filename).parts)
    snapshot = path.parents[depth - 1].name
    if commit and _GIT_SHA1.match(commit) and snapshot != commit:
        _remove(path)
        raise errors.HubDownloadError(
            repo_id, filename, f"the Hub answered it from commit {snapshot} when commit {commit} was asked for"
        )
    blob = Path(os.path.realpath(path))
    expected = blob.name
    if not (_SHA256.match(expected) or _GIT_SHA1.match(expected)):
        return
    try:
        status = blob.stat()
    except OSError as exc:
        raise errors.HubDownloadError(repo_id, filename, f"its cached copy cannot be read ({exc.strerror})") from None
    stamp = f"{status.st_size} {status.st_mtime_ns} {status.st_ino}"
    if not constants.verify_hub_files_always() and _read_stamp(expected) == stamp:
        return
    actual = _digest(blob, len(expected), status.st_size)
    if actual != expected:
        kind = "sha256" if len(expected) == 64 else "git blob sha1"
        _remove(path, blob)
        raise errors.HubDownloadError(
            repo_id, filename, f"its {kind} is {actual}, but the Hub's ETag promised {expected}"
        )
    _write_stamp(expected, stamp)


def _digest(blob: Path, length: int, size: int) -> str:
    if length == 64:
        hasher = hashlib.sha256()
    else:
        hasher = hashlib.sha1(usedforsecurity=False)
        hasher.update(b"blob %d\0" % size)
    try:
        with open(blob, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    return hasher.hexdigest()


def _remove(*paths: Path) -> None:
    import shutil

    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)  # a blob replaced by a folder
            continue
        with contextlib.suppress(OSError):
            os.unlink(path)


def _stamp_path(name: str) -> Path:
    return constants.pipeyard_home() / "hub-verified" / name


def _read_stamp(name: str) -> str | None:
    try:
        return _stamp_path(name).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None


def _write_stamp(name: str, stamp: str) -> None:
    from .fileio import write_bytes_atomic

    with contextlib.suppress(OSError):  # a cache: without it, the next load hashes again
        write_bytes_atomic(_stamp_path(name), stamp.encode("ascii"))
