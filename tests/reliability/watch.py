"""Watch what a call writes: every file opened for writing, made, moved, linked or removed.

An audit hook (PEP 578) sees each such operation of this process, whoever makes it (pipeyard,
huggingface_hub, safetensors' Python side, the CLI); :class:`WriteWatch` keeps the paths that
lie outside the allowed roots. Audit hooks cannot be removed, so one hook is installed once and
reports to the watch that is active, if any.

    with WriteWatch([home, hub_cache]) as watch:
        call_the_entry_point()
    assert watch.outside == []
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
#: Audit events that change the file system: (index of the path made or changed, index of its
#: dir_fd argument or None). A link's target and a rename's source are not written.
_PATH_EVENTS = {
    "os.mkdir": (0, 2), "os.remove": (0, 1), "os.rmdir": (0, 1), "os.rename": (1, 3), "os.symlink": (1, 2),
    "os.link": (1, 3), "os.truncate": (0, None), "os.chmod": (0, 2), "os.chown": (0, 3), "os.utime": (0, 3),
    "shutil.copyfile": (1, None), "shutil.copytree": (1, None), "shutil.move": (1, None), "shutil.rmtree": (0, 1),
}

_active: list[WriteWatch] = []
_lock = threading.Lock()
_installed = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _active:
        return
    if event == "open":
        path, mode, flags = (list(args) + [None, None, None])[:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writes:
            _active[-1].saw(event, path)
    elif event in _PATH_EVENTS:
        index, fd_index = _PATH_EVENTS[event]
        if index < len(args):
            dir_fd = args[fd_index] if fd_index is not None and fd_index < len(args) else None
            _active[-1].saw(event, args[index], dir_fd)


class WriteWatch:
    """Collects writes outside ``allowed`` roots while it is entered."""

    def __init__(self, allowed: Iterable[str | os.PathLike[str]]) -> None:
        self.allowed = [os.path.realpath(os.fspath(p)) for p in allowed]
        self.outside: list[str] = []

    def saw(self, event: str, path: Any, dir_fd: Any = None) -> None:
        if isinstance(path, int) or path is None:  # a descriptor: its open was seen already
            return
        try:
            text = os.fsdecode(path)
        except TypeError:
            return
        if isinstance(dir_fd, int) and dir_fd >= 0 and not os.path.isabs(text):
            text = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), text)
        # The folder that holds the entry decides (a link being made or removed is not followed).
        parent, name = os.path.split(os.path.abspath(text))
        real = os.path.join(os.path.realpath(parent), name)
        if real == os.devnull or any(real == root or real.startswith(root + os.sep) for root in self.allowed):
            return
        self.outside.append(f"{event} {real}")

    def __enter__(self) -> WriteWatch:
        global _installed
        with _lock:
            if not _installed:
                sys.addaudithook(_hook)
                _installed = True
            _active.append(self)
            # Imports made inside would write __pycache__ files of installed code: not ours to count.
            self._bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _active.remove(self)
            sys.dont_write_bytecode = self._bytecode


def allowed_roots(*extra: str | os.PathLike[str]) -> list[Path]:
    """PIPEYARD_HOME and the Hub cache of the running test, plus ``extra`` (a given cache_dir)."""
    roots = [Path(os.environ["PIPEYARD_HOME"]), Path(os.environ["HF_HOME"])]
    return [*roots, *map(Path, extra)]
