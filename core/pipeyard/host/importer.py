"""Step 5: import a stored, verified, trusted package and return its pipeline class.

Each stored package becomes one Python package named after its digest,
``pipeyard_m<digest>``, whose ``__path__`` is its store folder; the pipeline file is its
submodule (``pipeyard_m<digest>.pipeline``). So relative imports of any depth work, two files
both called ``pipeline.py`` live side by side, and ``sys.path`` is never changed.

The modules of a stored package are found by :class:`StoreFinder` (on ``sys.meta_path``) and
run from the syntax tree that :mod:`~pipeyard.host.verify` checked, parsed from the bytes the
store hashed: no file is read again and no bytecode cache is read or written, so an edited
``.pyc`` in the store cannot run in place of a verified file. A name of the package that is not
one of its files is not found, even if such a file lies in the folder.

Entry points are installed modules and are imported under their own names.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from collections.abc import Sequence

from .. import errors
from .cache import StoredPackage
from .verify import parse_module, source_path

PACKAGE_PREFIX = "pipeyard_m"


def package_name(digest: str) -> str:
    """The importable name of a stored package."""
    return f"{PACKAGE_PREFIX}{digest}"


class StoreFinder:
    """Finds the modules of the stored packages imported in this process, and nothing else."""

    _packages: dict[str, StoredPackage] = {}
    #: package name -> where its files came from (the user's folder, a repo@commit, a URL):
    #: what tracebacks and errors name, rather than the store copy.
    _origins: dict[str, str] = {}

    @classmethod
    def find_spec(
        cls, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        top, _, rest = fullname.partition(".")
        stored = cls._packages.get(top)
        if stored is None or not rest:
            return None
        relative = rest.replace(".", "/")
        for name, is_package in ((f"{relative}.py", False), (f"{relative}/__init__.py", True)):
            if name in stored.files:
                return _spec(fullname, stored, relative, name, is_package)
        if any(name.startswith(f"{relative}/") for name in stored.files):  # a folder without __init__.py
            return _spec(fullname, stored, relative, None, True)
        raise ModuleNotFoundError(f"No module named {fullname!r}: not a file of {stored.root}", name=fullname)


class _VerifiedLoader:
    """Runs one file of a stored package from its verified syntax tree (None: an empty package)."""

    def __init__(self, stored: StoredPackage, name: str | None) -> None:
        self.stored = stored
        self.name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        if self.name is not None:
            path = str(self.stored.root.joinpath(*self.name.split("/")))
            tree = _with_diffusers_views(parse_module(self.stored.read_all()[self.name], path).tree)
            shown = display_path(self.stored, self.name)
            exec(compile(tree, shown, "exec", dont_inherit=True), module.__dict__)  # noqa: S102 - trusted, verified

    def get_source(self, fullname: str) -> str | None:
        if self.name is None:
            return None
        return self.stored.read_all()[self.name].decode("utf-8")


def _with_diffusers_views(tree: ast.Module) -> ast.Module:
    """The tree to run: its ``diffusers`` imports pointed at pipeyard's views (:mod:`pipeyard.compat`)."""
    from ..compat import modules, rewrite

    rewritten = rewrite.rewritten(tree)
    if rewritten is not tree:
        modules.install()
    return rewritten


def _spec(
    fullname: str, stored: StoredPackage, relative: str, name: str | None, is_package: bool
) -> importlib.machinery.ModuleSpec:
    origin = str(stored.root.joinpath(*name.split("/"))) if name else None
    spec = importlib.machinery.ModuleSpec(fullname, _VerifiedLoader(stored, name), origin=origin, is_package=is_package)
    spec.has_location = origin is not None
    if is_package:
        spec.submodule_search_locations = [str(stored.root.joinpath(*relative.split("/")))]
    return spec


def display_path(stored: StoredPackage, name: str) -> str:
    """The path errors and tracebacks give for file ``name`` of a package: under its origin."""
    origin = StoreFinder._origins.get(package_name(stored.digest))
    return source_path(origin, name) if origin else str(stored.root.joinpath(*name.split("/")))


_PACKAGES_LOCK = threading.Lock()


def _package_module(stored: StoredPackage, origin: str | None) -> types.ModuleType:
    """The package object of a stored package, created once per process."""
    name = package_name(stored.digest)
    if origin:
        StoreFinder._origins[name] = origin
    # The latest wins: one digest is one content, but a single file's digest does not cover its
    # name, so the same bytes stored as pipeline.py and as x.py share a package name.
    StoreFinder._packages[name] = stored
    if StoreFinder not in sys.meta_path:
        sys.meta_path.insert(0, StoreFinder)  # type: ignore[arg-type]
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


def import_stored_module(stored: StoredPackage, origin: str | None = None) -> types.ModuleType:
    """Import the pipeline file of a stored package (once per process).

    Args:
        origin: where the files came from (a folder, ``repo@commit``, a URL); errors and
            tracebacks name the files under it, not their copies in the store.
    """
    with _PACKAGES_LOCK:
        package = _package_module(stored, origin)
    module_name = f"{package.__name__}.{stored.main[:-3].replace('/', '.')}"
    # No ``sys.modules`` shortcut: a module another thread is still executing is already there,
    # half-initialized; import_module waits for it on the module's import lock.
    try:
        return importlib.import_module(module_name)
    except errors.PipeyardError:
        _forget(package.__name__)
        raise
    except Exception as exc:
        _forget(package.__name__)
        raise errors.PipelineImportError(
            display_path(stored, stored.main), f"{type(exc).__name__}: {exc}"
        ) from exc


def pipeline_class_of(module: types.ModuleType, class_name: str, path: str) -> type:
    """The verified class, checked to be a class defined in ``module`` (not imported into it).

    Whether it is a ``DiffusionPipeline`` is checked by the caller (the host knows no pipelines).
    """
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise errors.PipelineImportError(path, f"after import, the module has no class {class_name!r}")
    if cls.__module__ != module.__name__:
        raise errors.PipelineImportError(path, f"{class_name} is not defined in the module but imported into it")
    return cls


def import_entry_point(value: str, path: str) -> tuple[types.ModuleType, str]:
    """Import an entry point's module; return it and the class name it names."""
    module_name, _, attr = value.partition(":")
    try:
        module = importlib.import_module(module_name.strip())
    except Exception as exc:
        raise errors.PipelineImportError(path, f"{type(exc).__name__}: {exc}") from exc
    return module, attr.strip()
