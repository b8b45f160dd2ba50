"""A pipeline package is a closed set of files: which files belong to one, and how they are read.

A package is its pipeline file plus every module it imports relatively
(:func:`pipeyard.host.fetch.collect_package` follows the imports), all under one root: the
folder of a local file, a local folder, pipeyard's bundled ``community/`` folder, a plugin's
answer, a model folder, or a remote repo. Like an archive from a stranger (the tarfile ``data``
filter of PEP 706), it is checked file by file **before** a byte of the file is read, and each
breach raises :class:`~pipeyard.errors.UnsafePackageFileError` naming the file, the rule and
the fix:

1. a relative import reaching above the root (``from .. import x`` in a file at the root);
2. a name that is not a plain path inside the root (absolute, ``..``, ``.``);
3. a local file whose real path, symbolic links followed, lies outside the root's real path
   (a link inside the root to a file inside it is fine);
4. anything but a regular file where a module is expected: a folder, a FIFO, a socket, a
   device (told by ``stat`` before opening: opening a FIFO would block);
5. a file over :data:`MAX_PACKAGE_FILE_BYTES`.

A local file is opened at its real path with ``O_NOFOLLOW | O_NONBLOCK`` and checked again with
``fstat``, so one swapped for a link or a FIFO after the check is refused too, never followed
nor waited on.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Optional

from .. import errors
from .parse import source_path

#: Reads one package-relative file; None when the source has no such file.
Reader = Callable[[str], Optional[bytes]]

#: The largest pipeline file or sibling module a package may hold, in bytes.
MAX_PACKAGE_FILE_BYTES = 4 * 1024 * 1024

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)  # the real path's last part must not have become a link
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in after the check must not block the open
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


# --------------------------------------------------------------------------- relative imports


def import_folder(importer: str, level: int) -> PurePosixPath | None:
    """The package-relative folder a relative import of ``level`` dots starts from.

    None when it lies above the package root (``from .. import x`` in ``pipeline.py``).
    """
    folder = PurePosixPath(importer).parent
    for _ in range(level - 1):
        if folder == PurePosixPath("."):
            return None
        folder = folder.parent
    return folder


def candidate_files(importer: str, level: int, module: str, names: tuple[str, ...]) -> Iterator[str]:
    """Package-relative files a relative import may need, most likely first.

    ``importer`` is the importing file's path relative to the package root. An import reaching
    above the root yields nothing; :func:`import_above_root` is the error to raise for it.
    """
    folder = import_folder(importer, level)
    if folder is None:
        return
    base = folder.joinpath(*module.split(".")) if module else folder
    if module:
        yield f"{base}.py"
        yield f"{base}/__init__.py"
    for name in names:
        if name != "*":
            yield str(base / f"{name}.py")
            yield str(base / name / "__init__.py")


def import_above_root(path: str, level: int, module: str, line: int | None) -> errors.UnsafePackageFileError:
    """The error for a relative import of ``path`` that reaches above the package root."""
    at = f" (line {line})" if line else ""
    return errors.UnsafePackageFileError(
        path,
        f"`from {'.' * level}{module} import ...`{at} reaches above the package root",
        "A pipeline package is its folder: move the module it imports inside that folder and "
        "import it from there (`from .helpers import x`)",
    )


# --------------------------------------------------------------------------- local files


def folder_reader(root: str | os.PathLike[str]) -> Reader:
    """A reader of package-relative files under ``root`` that keeps to the rules above."""
    return lambda name: read_package_file(root, name)


def read_package_file(root: str | os.PathLike[str], name: str) -> bytes | None:
    """The bytes of package file ``name`` under ``root``; None when there is no such file.

    Raises:
        UnsafePackageFileError: ``name`` breaks a rule of the module docstring; nothing of it
            was read.
    """
    root = os.fspath(root)
    path = source_path(root, _checked_name(name, root))
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # a folder on the way it may not enter
        raise _unreadable(path, name, exc) from None
    real = os.path.realpath(path)
    if not _is_inside(real, os.path.realpath(root)):
        raise errors.UnsafePackageFileError(
            path,
            f"{name} is a symbolic link, or lies under one, that leads outside the package root {root}",
            "Copy the module into the package folder instead of linking to it",
        )
    try:
        _check_regular(path, name, os.stat(real))
    except (FileNotFoundError, NotADirectoryError):
        return None  # a dangling link inside the root: no such module
    except OSError as exc:  # a loop of links, a folder it may not enter
        raise _unreadable(path, name, exc) from None
    return _read_regular(path, real, name)


def check_size(path: str, name: str, size: int) -> None:
    """Refuse a package file over :data:`MAX_PACKAGE_FILE_BYTES` (remote files, after the download)."""
    if size > MAX_PACKAGE_FILE_BYTES:
        raise errors.UnsafePackageFileError(
            path,
            f"{name} holds more than {MAX_PACKAGE_FILE_BYTES} bytes, the most a package file may hold",
            "Keep pipeline modules small: load data (weights, tables) from the model repo instead",
        )


def _checked_name(name: str, root: str) -> str:
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or "\\" in name or "\0" in name or {".", ".."} & set(name.split("/")):
        raise errors.UnsafePackageFileError(
            root,
            f"{name!r} is not a path inside the package",
            "Name package files by their path relative to the package root, without '..'",
        )
    return name


def _is_inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # another drive
        return False


def _check_regular(path: str, name: str, info: os.stat_result) -> None:
    """Refuse a folder, a FIFO, a socket or a device, and a file over the size cap."""
    if stat.S_ISDIR(info.st_mode):
        raise errors.UnsafePackageFileError(
            path, f"{name} is a folder where a module file is expected",
            "Rename the folder, or make it a package with an __init__.py and import that",
        )
    if not stat.S_ISREG(info.st_mode):
        kind = _special_kind(info.st_mode)
        raise errors.UnsafePackageFileError(
            path, f"{name} is a {kind}, not a regular file", "Replace it with the module's source file"
        )
    check_size(path, name, info.st_size)


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _read_regular(path: str, real: str, name: str) -> bytes:
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError as exc:  # became a link (ELOOP) or vanished after the check
        raise _unreadable(path, name, exc) from None
    with open(fd, "rb") as handle:
        _check_regular(path, name, os.fstat(handle.fileno()))
        data = handle.read(MAX_PACKAGE_FILE_BYTES + 1)
    check_size(path, name, len(data))  # it grew after the check
    return data


def _unreadable(path: str, name: str, exc: OSError) -> errors.UnsafePackageFileError:
    return errors.UnsafePackageFileError(
        path, f"{name} cannot be read safely ({exc.strerror or type(exc).__name__})",
        "Check that it is a plain file inside the package, and that nothing changes it during the load",
    )
