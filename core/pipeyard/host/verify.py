"""Static checks of a pipeline package: nothing here imports or executes it.

:func:`verify_package` answers, from the source text alone, the questions the host asks before
the trust decision, each in its own module:

1. Does every file parse, as UTF-8? (:mod:`~pipeyard.host.parse`)
2. Does the pipeline file define exactly one ``DiffusionPipeline`` subclass?
   (:mod:`~pipeyard.host.classes`)
3. What does its PEP 723 block declare? (:mod:`~pipeyard.host.script_metadata`)

and :func:`check_requirements` the last one, once the code is trusted:

4. Is everything it needs installed? (:mod:`~pipeyard.host.requirements`)

Which files form the package, and how they are read, is :mod:`~pipeyard.host.boundary`'s
business: by the time files reach this module they are a closed set of regular files. The names
other modules import from here (``parse_module``, ``source_path``, ``candidate_files``,
``ScriptMetadata``, ...) are those modules' own, re-exported.

Example:
    >>> info = verify_package({"pipeline.py": data}, "pipeline.py", "/repo")  # doctest: +SKIP
    >>> info.class_name, info.line                                           # doctest: +SKIP
    ('MyPipeline', 4)
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .. import errors
from . import requirements
from .boundary import candidate_files
from .classes import find_pipeline_class, pipeline_classes, sibling_pipeline_classes
from .parse import (
    ParsedModule,
    RelativeImport,
    decode_source,
    parse_module,
    parse_source,
    relative_imports,
    source_path,
)
from .requirements import local_module_names, missing_imports, top_level_imports, unmet_dependencies
from .script_metadata import ScriptMetadata, script_metadata

__all__ = [
    "ParsedModule",
    "PipelineFileInfo",
    "RelativeImport",
    "ScriptMetadata",
    "candidate_files",
    "check_requirements",
    "decode_source",
    "find_pipeline_class",
    "local_module_names",
    "missing_imports",
    "parse_module",
    "parse_source",
    "pipeline_classes",
    "relative_imports",
    "script_metadata",
    "source_path",
    "top_level_imports",
    "unmet_dependencies",
    "verify_component_package",
    "verify_package",
]


@dataclass(frozen=True)
class PipelineFileInfo:
    """The verified facts of one pipeline file.

    Attributes:
        class_name: the one ``DiffusionPipeline`` subclass it defines.
        line: the line of its ``class`` statement.
        metadata: its PEP 723 block, or None when it has none.
        imports: top-level packages it imports unconditionally (used when metadata is None).
        docstring: the module docstring, if any.
    """

    class_name: str
    line: int
    metadata: ScriptMetadata | None
    imports: tuple[str, ...] = ()
    docstring: str | None = None


def parse_package(files: Mapping[str, bytes], main: str, root: str) -> dict[str, ParsedModule]:
    """Every file of a package parsed; only ``main`` (the file the caller named) is quoted in errors.

    Raises:
        PipelineEncodingError, PipelineSyntaxError.
    """
    order = [main, *(name for name in files if name != main)]  # the named file's errors first
    return {name: parse_module(files[name], source_path(root, name), quote=name == main) for name in order}


def verify_package(files: Mapping[str, bytes], main: str, root: str) -> PipelineFileInfo:
    """Decode, parse and check a pipeline file and its sibling modules; return what was learnt.

    Args:
        files: package-relative path -> content, ``main`` among them.
        main: the pipeline file, e.g. ``pipeline.py``.
        root: the folder holding the files, so messages name a path the user can open.

    Raises:
        PipelineEncodingError, PipelineSyntaxError, PipelineClassError, PipelineVerificationError.
    """
    modules = parse_package(files, main, root)
    tree, text, path = modules[main].tree, modules[main].text, source_path(root, main)
    check_diffusers_imports(modules, main, root)
    name, line = find_pipeline_class(tree, path, sibling_pipeline_classes(main, modules))
    return PipelineFileInfo(
        class_name=name,
        line=line,
        metadata=script_metadata(text, path),
        imports=top_level_imports(tree),
        docstring=ast.get_docstring(tree),
    )


def verify_component_package(files: Mapping[str, bytes], main: str, root: str, class_name: str) -> PipelineFileInfo:
    """The checks of :func:`verify_package` for a repository's component module (``[module, Class]``).

    A component module defines a model or other component class, not a pipeline: the check is
    that ``main`` defines ``class_name`` at its top level (a class only imported into it does
    not count, as for pipelines).

    Raises:
        PipelineEncodingError, PipelineSyntaxError, DiffusersCompatibilityError, and
        PipelineVerificationError when the class is not defined there.
    """
    modules = parse_package(files, main, root)
    tree, text, path = modules[main].tree, modules[main].text, source_path(root, main)
    check_diffusers_imports(modules, main, root)
    defined = [(node.name, node.lineno) for node in tree.body if isinstance(node, ast.ClassDef)]
    line = next((lineno for name, lineno in defined if name == class_name), None)
    if line is None:
        listed = ", ".join(f"{name} (line {lineno})" for name, lineno in defined) or "none"
        raise errors.PipelineVerificationError(
            path, f"model_index.json names class {class_name!r} from this module, but it defines no "
            f"top-level class of that name (classes it defines: {listed})",
        )
    return PipelineFileInfo(class_name, line, script_metadata(text, path), top_level_imports(tree), ast.get_docstring(tree))


def check_diffusers_imports(modules: Mapping[str, ParsedModule], main: str, root: str) -> None:
    """Refuse a package whose files import diffusers names pipeyard does not provide.

    Raises:
        DiffusersCompatibilityError: naming every such name, with its file and line.
    """
    from ..compat.rewrite import unsupported_imports

    missing = [
        (name, line, what)
        for name in (main, *sorted(n for n in modules if n != main))
        for line, what in unsupported_imports(modules[name].tree)
    ]
    if missing:
        raise errors.DiffusersCompatibilityError(source_path(root, main), missing)


def check_requirements(info: PipelineFileInfo, path: str, local_modules: Iterable[str] = frozenset()) -> None:
    """Raise one :class:`~pipeyard.errors.RequirementsError` listing every unmet requirement.

    Args:
        info: what :func:`verify_package` learnt of the pipeline file at ``path``.
        local_modules: top-level names the package's own files provide.
    """
    requirements.check_requirements(info.metadata, info.imports, path, frozenset(local_modules))
