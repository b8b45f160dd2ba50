"""Writing files whole, and reading JSON that may come from a stranger.

Writes: every file pipeyard writes (configs, weights, the module cache, the trust store, Hub
refs) goes to a unique temp file in the target's own folder (``tempfile.mkstemp``), which is
then moved over the target with ``os.replace``. A reader sees the old file or the new one,
never half of one; a failed write removes its temp file and leaves the target as it was.

Reads: ``config.json``, ``scheduler_config.json``, ``model_index.json``, shard indexes and
safetensors headers come from a repository, data from a stranger. :func:`read_json_file`
bounds the file's size (:data:`MAX_JSON_BYTES`) and its nesting depth (:data:`MAX_JSON_DEPTH`)
*before* :mod:`json` parses it (100,000 ``[`` would otherwise end in a ``RecursionError``),
wants an object at the top, and refuses a key given twice (two readers of one file could
otherwise each take a different value). Every refusal is a
:class:`~pipeyard.errors.ConfigFileError` naming the file, what is wrong and the limit.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import itertools
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import errors

PathLike = str | os.PathLike[str]

#: The largest JSON file read (4 MiB): a diffusers config is a few KiB, a shard index of a
#: model with thousands of tensors a few hundred KiB.
MAX_JSON_BYTES = 4 * 2**20

#: The deepest nesting of arrays and objects accepted; diffusers' files nest 3 or 4 levels.
MAX_JSON_DEPTH = 64

# For the nesting check: a string once escapes are gone, anything but a bracket, a bracket's step.
_STRING = re.compile(r'"[^"]*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_replace(path: PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; once the block succeeds it replaces ``path``.

    Missing parent folders are created. If the block raises, the temp file is removed and
    ``path`` is untouched. Use it for writers that want a file name (``torch.save``,
    safetensors' ``save_file``); :func:`write_bytes_atomic` covers plain bytes.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def write_errors(target: PathLike) -> Iterator[None]:
    """Turn a failed write (``OSError``, safetensors' I/O error) into :class:`~pipeyard.errors.SaveError`."""
    try:
        yield
    except errors.PipeyardError:
        raise
    except Exception as exc:
        if isinstance(exc, OSError):
            reason, path = exc.strerror or str(exc), str(exc.filename or target)
        elif type(exc).__name__ == "SafetensorError" and "I/O error" in str(exc):
            reason, path = str(exc).split("I/O error:", 1)[1].strip(), str(target)
        else:
            raise
        raise errors.SaveError(path, reason) from None


def write_bytes_atomic(path: PathLike, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the new one, never half.

    Missing parent folders are created.
    """
    with atomic_replace(path) as tmp, open(tmp, "wb") as handle:
        handle.write(payload)


def write_json_atomic(path: PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON (UTF-8, final newline) to ``path``, atomically."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def exchange_folders(staging: PathLike, target: PathLike) -> bool:
    """Swap two existing folders in one step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the system or file system cannot (then nothing moved).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # an old C library
        return False
    at_fdcwd, rename_exchange = -100, 2
    source, dest = os.fsencode(os.path.abspath(staging)), os.fsencode(os.path.abspath(target))
    if renameat2(at_fdcwd, source, at_fdcwd, dest, rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(target))


def replace_folder(staging: PathLike, target: PathLike) -> None:
    """Put the folder ``staging`` at ``target``, so a reader sees the old folder or the new, whole.

    ``target`` missing: one rename. ``target`` a folder: swapped in one step where the system
    allows (:func:`exchange_folders`), else two renames through ``.<name>.old-<pid>`` (a crash
    between them leaves that backup, which :func:`restore_interrupted_folder` puts back). The
    old content ends at ``staging``, for the caller to remove.

    Raises:
        NotADirectoryError: ``target`` exists and is not a folder.
    """
    staging, target = Path(staging), Path(target)
    if not target.exists() and not target.is_symlink():
        os.replace(staging, target)
        return
    if target.is_symlink() or not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder", str(target))
    if exchange_folders(staging, target):
        return
    backup = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, backup)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(backup, target)
        raise
    os.replace(backup, staging)


def restore_interrupted_folder(target: PathLike) -> None:
    """Finish a :func:`replace_folder` whose process died between its renames.

    Cut before the new folder was renamed in, the target is missing: its backup
    (``.<name>.old-<pid>``) is put back. Cut after, the backup is left over: it is removed.
    Backups of living processes are left alone.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return
    prefix = f".{target.name}.old-"
    dead = [
        p for p in target.parent.glob(f"{glob.escape(prefix)}*")
        if p.name[len(prefix):].isdigit() and not _process_alive(int(p.name[len(prefix):]))
    ]
    if dead and not target.exists():
        newest = max(dead, key=lambda p: p.stat().st_mtime)
        os.replace(newest, target)
        dead.remove(newest)
    remove_stale_staging(target.parent, prefix)


def remove_stale_staging(folder: PathLike, prefix: str) -> None:
    """Remove the folders ``<prefix><pid>-*`` in ``folder`` whose writing process has died.

    Writers stage in such folders (a save, a module-store package); ``kill -9`` leaves them.
    """
    import shutil

    folder = Path(folder)
    if not folder.is_dir():
        return
    for staging in folder.glob(f"{glob.escape(prefix)}*"):
        pid = staging.name[len(prefix):].split("-", 1)[0]  # <pid>-<random>, or <pid> alone
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- reading


def read_json_file(path: PathLike, *, max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """Read the JSON object in ``path``, refusing what a config file from a stranger should not be.

    Raises:
        ConfigFileError: the file is larger than ``max_bytes``, not UTF-8, not JSON (with line
            and column), nested deeper than :data:`MAX_JSON_DEPTH`, not an object at the top,
            or gives a key twice.
        FileNotFoundError: there is no such file.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise errors.ConfigFileError(path, _too_large(size, max_bytes))
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew after the size was taken
        raise errors.ConfigFileError(path, _too_large(len(data), max_bytes))
    return parse_json_object(data, path)


def parse_json_object(data: bytes, origin: PathLike) -> dict[str, Any]:
    """Parse UTF-8 JSON ``data`` read from ``origin`` (named in errors) into a dict.

    The caller bounds the size; the nesting depth is checked here before :mod:`json` runs.

    Raises:
        ConfigFileError: see :func:`read_json_file`.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.ConfigFileError(origin, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if _nesting_exceeds(text, MAX_JSON_DEPTH):
        raise errors.ConfigFileError(
            origin, f"arrays and objects nest deeper than {MAX_JSON_DEPTH} levels (the limit for config files)"
        )
    try:
        value = json.loads(text, object_pairs_hook=_object_without_repeated_keys)
    except json.JSONDecodeError as exc:
        raise errors.ConfigFileError(origin, exc.msg, exc.lineno, exc.colno) from None
    except _RepeatedKeyError as exc:
        raise errors.ConfigFileError(
            origin, f"key {errors.clip(exc.key)!r} appears twice in one object, so readers may disagree on its value"
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more digits than Python converts
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise errors.ConfigFileError(origin, errors.clip(first_line)) from None
    if not isinstance(value, dict):
        raise errors.ConfigFileError(origin, f"expected a JSON object, found a {type(value).__name__}")
    return value


def _too_large(size: int, limit: int) -> str:
    return (
        f"it is {size:,} bytes, more than the {limit:,} bytes pipeyard reads from a config or index "
        f"file; is it the right file?"
    )


def _nesting_exceeds(text: str, limit: int) -> bool:
    """True when arrays and objects in ``text`` nest deeper than ``limit`` (strings skipped).

    Linear whatever the text holds, and mostly in C: escaped backslashes and quotes are dropped
    (so a string holds no quote), then strings, then everything but brackets; the depth is the
    largest running sum of +1 per opening and -1 per closing bracket.
    """
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", unescaped))
    if len(brackets) <= limit:
        return False
    return max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets))) > limit


class _RepeatedKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKeyError(key)
            seen.add(key)
    return value
