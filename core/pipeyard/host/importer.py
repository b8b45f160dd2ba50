"""Step 5: import a stored, verified, trusted package and return its pipeline class.

Each stored package becomes one Python package named after its digest,
``pipeyard_m<digest>``, whose ``__path__`` is its store folder; the pipeline file is its
submodule (``pipeyard_m<digest>.pipeline``). So relative imports of any depth work, two files
both called ``pipeline.py`` live side by side, and ``sys.path`` is never changed: the package
object alone tells Python's path finder where its submodules are.

Entry points are installed modules and are imported under their own names.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types

from .. import errors
from .cache import StoredPackage

PACKAGE_PREFIX = "pipeyard_m"


def package_name(digest: str) -> str:
    """The importable name of a stored package."""
    return f"{PACKAGE_PREFIX}{digest}"


def _package_module(stored: StoredPackage) -> types.ModuleType:
    """The package object of a stored package, created once per process."""
    name = package_name(stored.digest)
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(stored.root)]
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    return module


def _forget(prefix: str) -> None:
    """Drop a half-imported package and its submodules so a retry starts clean."""
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


def import_stored_module(stored: StoredPackage) -> types.ModuleType:
    """Import the pipeline file of a stored package (once per process)."""
    package = _package_module(stored)
    module_name = f"{package.__name__}.{stored.main[:-3].replace('/', '.')}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    try:
        return importlib.import_module(module_name)
    except errors.PipeyardError:
        _forget(package.__name__)
        raise
    except Exception as exc:
        _forget(package.__name__)
        raise errors.PipelineImportError(
            str(stored.main_path), f"{type(exc).__name__}: {exc}"
        ) from exc


def pipeline_class_of(module: types.ModuleType, class_name: str, path: str) -> type:
    """The verified class, checked to be a ``DiffusionPipeline`` subclass defined in ``module``."""
    from ..pipelines.base import DiffusionPipeline  # lazily: the host itself never needs torch

    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise errors.PipelineImportError(path, f"after import, the module has no class {class_name!r}")
    if cls.__module__ != module.__name__:
        raise errors.PipelineImportError(path, f"{class_name} is not defined in the module but imported into it")
    if not issubclass(cls, DiffusionPipeline):
        raise errors.PipelineImportError(
            path, f"{class_name} is not a subclass of pipeyard.DiffusionPipeline after import"
        )
    return cls


def import_entry_point(value: str, path: str) -> tuple[types.ModuleType, str]:
    """Import an entry point's module; return it and the class name it names."""
    module_name, _, attr = value.partition(":")
    try:
        module = importlib.import_module(module_name.strip())
    except Exception as exc:
        raise errors.PipelineImportError(path, f"{type(exc).__name__}: {exc}") from exc
    return module, attr.strip()
