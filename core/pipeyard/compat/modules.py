"""The views: ``pipeyard.compat.diffusers[.x.y]`` modules serving pipeyard's objects under
diffusers' names, created on import by :class:`ViewFinder` from :mod:`.layout`.

A view resolves a name on first access (importing the pipeyard module that defines it), so
``from diffusers import DiffusionPipeline`` in a hosted file costs what importing pipeyard's
pipeline base costs, nothing more. A view holds no logic and no state of its own.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Sequence
from typing import Any

from . import DIFFUSERS_VERSION, VIEW_ROOT
from .layout import MODULES, TARGETS, packages

_PACKAGES = packages()
_lock = threading.Lock()


def diffusers_path(view_name: str) -> str:
    """``pipeyard.compat.diffusers.models`` -> ``diffusers.models``."""
    return "diffusers" + view_name[len(VIEW_ROOT):]


def view_name(path: str) -> str:
    """``diffusers.models`` -> ``pipeyard.compat.diffusers.models``."""
    return VIEW_ROOT + path[len("diffusers"):]


def _resolve(target: str) -> Any:
    module, _, attribute = target.partition(":")
    value = importlib.import_module(module)
    return getattr(value, attribute) if attribute else value


class DiffusersView(types.ModuleType):
    """One diffusers module path, as pipeyard's objects (see the module docstring)."""

    def __getattr__(self, name: str) -> Any:
        path = diffusers_path(self.__name__)
        if name in MODULES.get(path, ()):
            value = _resolve(TARGETS[name])
        elif f"{path}.{name}" in _PACKAGES:
            value = importlib.import_module(f"{self.__name__}.{name}")
        else:
            raise AttributeError(
                f"pipeyard does not provide {path}.{name}: its diffusers compatibility covers the "
                f"Stable Diffusion 1.x/2.x and UNet2DModel families (see docs/compatibility.md)"
            )
        setattr(self, name, value)
        return value

    def __dir__(self) -> list[str]:
        path = diffusers_path(self.__name__)
        children = [p.rpartition(".")[2] for p in _PACKAGES if p.rpartition(".")[0] == path]
        return sorted({*MODULES.get(path, ()), *children, *self.__dict__})


class _ViewLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return DiffusersView(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        path = diffusers_path(module.__name__)
        module.__all__ = list(MODULES.get(path, ()))
        module.__path__ = []  # a package: child views are found by ViewFinder
        if path == "diffusers":
            module.__version__ = DIFFUSERS_VERSION


class ViewFinder(importlib.abc.MetaPathFinder):
    """Finds ``pipeyard.compat.diffusers[.x.y]`` for the paths of :mod:`.layout`, nothing else."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != VIEW_ROOT and not fullname.startswith(VIEW_ROOT + "."):
            return None
        if diffusers_path(fullname) not in _PACKAGES:
            return None  # ModuleNotFoundError: pipeyard has no such diffusers module
        return importlib.machinery.ModuleSpec(fullname, _ViewLoader(), is_package=True)


_FINDER = ViewFinder()


def install() -> None:
    """Put :class:`ViewFinder` on ``sys.meta_path`` (once); the host calls it before a hosted
    module with diffusers imports runs."""
    with _lock:
        if _FINDER not in sys.meta_path:
            sys.meta_path.append(_FINDER)
