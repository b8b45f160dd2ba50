"""Which classes of a pipeline file are ``DiffusionPipeline`` subclasses, from its syntax tree.

A class counts when one of its bases is pipeyard's ``DiffusionPipeline`` (or another pipeyard
``*Pipeline``), a class defined earlier in the file that counts, or a pipeline class of a
sibling module imported relatively. Imported classes never count themselves, so
``from pipeyard import DDPMPipeline`` alone defines nothing. A pipeline file defines exactly one.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping

from .. import errors
from .boundary import candidate_files
from .parse import ParsedModule, dotted_name

#: Module paths whose ``*Pipeline`` names are pipeyard pipeline classes: pipeyard's own, and
#: diffusers' (a hosted module's diffusers imports are pipeyard's classes, see pipeyard.compat).
_PIPEYARD_MODULE = re.compile(r"^(pipeyard(\.pipelines(\.[A-Za-z_]\w*)*)?|diffusers(\.[A-Za-z_]\w*)*)$")


def _is_pipeyard_pipeline_name(name: str) -> bool:
    return name == "DiffusionPipeline" or name.endswith("Pipeline")


def _imported_pipeline_bases(tree: ast.Module, sibling_classes: Mapping[str, frozenset[str]]) -> set[str]:
    """Local names bound at module level to pipeline classes defined elsewhere.

    Args:
        sibling_classes: relative module spec (``.base``) -> pipeline classes it defines.
    """
    bases: set[str] = set()
    pipeyard_modules: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and _PIPEYARD_MODULE.match(module):
                bases.update(a.asname or a.name for a in node.names if _is_pipeyard_pipeline_name(a.name))
            elif node.level > 0:
                known = sibling_classes.get("." * node.level + module, frozenset())
                bases.update(a.asname or a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _PIPEYARD_MODULE.match(alias.name):
                    pipeyard_modules.add(alias.asname or alias.name)
    for module in pipeyard_modules:  # `import pipeyard` then `pipeyard.DiffusionPipeline`
        bases.add(f"{module}.DiffusionPipeline")
    return bases


def pipeline_classes(
    tree: ast.Module, sibling_classes: Mapping[str, frozenset[str]] | None = None
) -> list[tuple[str, int]]:
    """Every top-level class deriving from ``DiffusionPipeline``, with its line, in file order.

    Classes are visited in order, so a class counts when a base is an imported pipeline class
    or a class defined above it that counts.
    """
    known = _imported_pipeline_bases(tree, sibling_classes or {})
    found: list[tuple[str, int]] = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        if {dotted_name(base) for base in node.bases} & known:
            known.add(node.name)
            found.append((node.name, node.lineno))
    return found


def sibling_pipeline_classes(main: str, modules: Mapping[str, ParsedModule]) -> dict[str, frozenset[str]]:
    """Relative module spec of ``main`` (``.base``) -> pipeline classes that sibling defines."""
    found: dict[str, frozenset[str]] = {}
    for level, module, _ in modules[main].relative_imports:
        for candidate in candidate_files(main, level, module, ()):
            if candidate in modules:
                classes = frozenset(name for name, _ in pipeline_classes(modules[candidate].tree))
                found["." * level + module] = classes
                break
    return found


def find_pipeline_class(
    tree: ast.Module, path: str, sibling_classes: Mapping[str, frozenset[str]] | None = None
) -> tuple[str, int]:
    """The one pipeline class of a file, or :class:`~pipeyard.errors.PipelineClassError`."""
    found = pipeline_classes(tree, sibling_classes)
    if len(found) != 1:
        raise errors.PipelineClassError(path, found)
    return found[0]
