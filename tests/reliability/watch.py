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
#: Audit events that change the file system, and which of their arguments are paths.
_PATH_EVENTS = {
    "os.mkdir": (0,), "os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1), "os.symlink": (0, 1),
    "os.link": (0, 1), "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,),
    "shutil.copyfile": (1,), "shutil.copytree": (1,), "shutil.move": (1,), "shutil.rmtree": (0,),
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
        for index in _PATH_EVENTS[event]:
            if index < len(args):
                _active[-1].saw(event, args[index])


class WriteWatch:
    """Collects writes outside ``allowed`` roots while it is entered."""

    def __init__(self, allowed: Iterable[str | os.PathLike[str]]) -> None:
        self.allowed = [os.path.realpath(os.fspath(p)) for p in allowed]
        self.outside: list[str] = []

    def saw(self, event: str, path: Any) -> None:
        if isinstance(path, int) or path is None:  # a descriptor: its open was seen already
            return
        try:
            text = os.fsdecode(path)
        except TypeError:
            return
        real = os.path.realpath(os.path.abspath(text))
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
