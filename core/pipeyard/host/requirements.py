"""Is everything a pipeline file needs installed? Answered without importing anything.

With a PEP 723 block, its ``dependencies``, ``requires-python`` and ``[tool.pipeyard]
requires-core`` are checked with importlib-metadata and :mod:`packaging`. Without one, the
file's unconditional top-level imports (found with :mod:`ast`) are looked up with
``importlib.util.find_spec`` on top-level names only, which imports nothing.

diffusers' ``check_imports`` imports every module a file names before the user agreed to run
anything; here the answer never depends on executing a line of the file.
"""

from __future__ import annotations

import ast
import importlib.util
import platform
import sys
from collections.abc import Iterable, Iterator

from .. import errors
from ..compat import PROVIDED_DISTRIBUTIONS
from ..compat.rewrite import catches_import_error
from .parse import dotted_name
from .script_metadata import ScriptMetadata

#: Import names whose distribution is named differently, for the ``pip install`` line.
_DISTRIBUTION_OF = {
    "PIL": "Pillow",
    "cv2": "opencv-python",
    "sklearn": "scikit-learn",
    "yaml": "PyYAML",
    "skimage": "scikit-image",
}


# --------------------------------------------------------------------------- imports


def _is_type_checking(test: ast.expr) -> bool:
    return dotted_name(test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}


def _unconditional_imports(body: list[ast.stmt]) -> Iterator[str]:
    for node in body:
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]
        elif isinstance(node, ast.If) and not _is_type_checking(node.test):
            yield from _unconditional_imports(node.body)
            yield from _unconditional_imports(node.orelse)
        elif isinstance(node, ast.Try) and not catches_import_error(node):
            yield from _unconditional_imports(node.body)


def top_level_imports(tree: ast.Module) -> tuple[str, ...]:
    """Top-level packages imported at module level, outside optional-import guards."""
    return tuple(dict.fromkeys(_unconditional_imports(tree.body)))


def local_module_names(files: Iterable[str]) -> frozenset[str]:
    """Top-level names a package's own files provide (``helpers/x.py`` -> ``helpers``)."""
    return frozenset(name.split("/")[0].removesuffix(".py") for name in files)


def missing_imports(imports: tuple[str, ...], local_modules: frozenset[str] = frozenset()) -> list[str]:
    """Top-level import names that no installed module provides (nothing is imported)."""
    missing = []
    for name in imports:
        if name in sys.stdlib_module_names or name in local_modules or name in sys.modules:
            continue
        if name in PROVIDED_DISTRIBUTIONS:  # served by pipeyard.compat to hosted modules
            continue
        if importlib.util.find_spec(name) is None:  # top-level names: finds, never imports
            missing.append(name)
    return missing


# --------------------------------------------------------------------------- declared requirements


def _installed_version(distribution: str) -> str | None:
    import importlib_metadata

    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None


def _available_version(distribution: str) -> tuple[str | None, str]:
    """The version a hosted module gets, and how: pipeyard.compat's (diffusers), else installed."""
    from packaging.utils import canonicalize_name

    provided = PROVIDED_DISTRIBUTIONS.get(canonicalize_name(distribution))
    if provided is not None:
        return provided, "is what pipeyard's diffusers compatibility provides"
    return _installed_version(distribution), "installed"


def unmet_dependencies(requirements: tuple[str, ...], path: str) -> list[tuple[str, str]]:
    """``(requirement, what is installed)`` for each requirement not satisfied here."""
    from packaging.requirements import InvalidRequirement, Requirement

    unmet = []
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise errors.PipelineVerificationError(path, f"dependency {text!r} is not valid: {exc}") from None
        if req.marker is not None and not req.marker.evaluate():
            continue
        installed, how = _available_version(req.name)
        if installed is None:
            unmet.append((text, "not installed"))
        elif not req.specifier.contains(installed, prereleases=True):
            unmet.append((text, f"{installed} {how}"))
    return unmet


def _check_python(spec: str | None, path: str) -> str | None:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if not spec:
        return None
    try:
        ok = SpecifierSet(spec).contains(platform.python_version(), prereleases=True)
    except InvalidSpecifier:
        raise errors.PipelineVerificationError(path, f"requires-python {spec!r} is not valid") from None
    return None if ok else f"it requires Python {spec}, this is Python {platform.python_version()}"


def check_requirements(
    metadata: ScriptMetadata | None,
    imports: tuple[str, ...],
    path: str,
    local_modules: frozenset[str] = frozenset(),
) -> None:
    """Raise one :class:`~pipeyard.errors.RequirementsError` listing every unmet requirement.

    Args:
        metadata: the file's PEP 723 block; None to look its ``imports`` up instead.
        local_modules: names the package's own files provide (see :func:`local_module_names`).
    """
    if metadata is None:
        names = missing_imports(imports, local_modules)
        unmet = [(name, "not installed; imported by the file, which declares no dependencies") for name in names]
        reqs = [_DISTRIBUTION_OF.get(name, name) for name in names]
        note = ""
    else:
        core = (f"pipeyard{metadata.requires_core}",) if metadata.requires_core else ()
        requires = (*metadata.dependencies, *core)
        unmet = unmet_dependencies(requires, path)
        reqs = [req for req, _ in unmet]
        note = _check_python(metadata.requires_python, path) or ""
    if unmet or note:
        command = "pip install " + " ".join(f'"{r}"' for r in reqs) if reqs else ""
        raise errors.RequirementsError(path, unmet, command, note)
