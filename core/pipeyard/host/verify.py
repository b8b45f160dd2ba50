"""Static checks of a pipeline file: nothing here imports or executes it.

Three questions are answered from the source text alone, with :mod:`ast`, :mod:`tomllib`,
importlib-metadata and :mod:`packaging`:

1. Does it parse, as UTF-8? (:func:`parse_source`)
2. Does it define exactly one ``DiffusionPipeline`` subclass? (:func:`find_pipeline_class`) A
   class counts when one of its bases is pipeyard's ``DiffusionPipeline`` (or another pipeyard
   ``*Pipeline``), a class defined earlier in the file that counts, or a pipeline class of a
   sibling module imported relatively. Imported classes never count themselves, so
   ``from pipeyard import DDPMPipeline`` alone defines nothing.
3. Is everything it needs installed? (:func:`check_requirements`) From its PEP 723 block when
   it has one; otherwise from its top-level imports, found with ``ast`` and looked up with
   ``importlib.util.find_spec`` on top-level names only, which imports nothing.

diffusers' ``check_imports`` imports every module a file names before the user agreed to run
anything; here the answer never depends on executing a line of the file.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import platform
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from .. import errors

#: Module paths whose ``*Pipeline`` names are pipeyard pipeline classes.
_PIPEYARD_MODULE = re.compile(r"^pipeyard(\.pipelines(\.[A-Za-z_]\w*)*)?$")

#: PEP 723: ``# /// TYPE`` then lines of ``#`` or ``# ...`` then ``# ///``.
_SCRIPT_BLOCK = re.compile(
    r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)[ \t]*$\s(?P<content>(^#(| .*)$\s)+)^# ///[ \t]*$"
)

#: Import names whose distribution is named differently, for the ``pip install`` line.
_DISTRIBUTION_OF = {
    "PIL": "Pillow",
    "cv2": "opencv-python",
    "sklearn": "scikit-learn",
    "yaml": "PyYAML",
    "skimage": "scikit-image",
}


@dataclass(frozen=True)
class ScriptMetadata:
    """What a pipeline file declares in its PEP 723 block."""

    dependencies: tuple[str, ...] = ()
    requires_python: str | None = None
    requires_core: str | None = None
    summary: str | None = None
    tags: tuple[str, ...] = ()


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


# --------------------------------------------------------------------------- parsing


def decode_source(data: bytes, path: str) -> str:
    """The file's text, or :class:`~pipeyard.errors.PipelineEncodingError` if not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.PipelineEncodingError(path, exc.start, exc.reason) from None


def parse_source(text: str, path: str) -> ast.Module:
    """Parse without executing; a syntax error names the file, line and source line."""
    try:
        return ast.parse(text, filename=path)
    except SyntaxError as exc:
        lines = text.splitlines()
        line = exc.lineno
        source_line = exc.text or (lines[line - 1] if line and 0 < line <= len(lines) else "")
        raise errors.PipelineSyntaxError(path, line, source_line.rstrip("\n"), exc.msg) from None


#: A relative import: ``(level, module, names)``; ``from ..a import b`` is ``(2, "a", ("b",))``.
RelativeImport = tuple[int, str, tuple[str, ...]]


@dataclass(frozen=True)
class ParsedModule:
    """One module's text, syntax tree and relative imports; shared, so never mutate ``tree``."""

    text: str
    tree: ast.Module
    relative_imports: tuple[RelativeImport, ...]


def source_path(root: str, name: str) -> str:
    """The path messages give for package file ``name`` under ``root`` (a folder, a URL, a repo)."""
    return os.path.join(root, *name.split("/"))


def parse_module(data: bytes, path: str) -> ParsedModule:
    """Decode, parse and list the relative imports of a module's bytes.

    Memoized on the bytes and the path, so the fetch (which follows relative imports), the
    verification and the import of a package parse each file once, and parser warnings name
    the file. A failure is not memoized: it raises
    :class:`~pipeyard.errors.PipelineEncodingError` or ``PipelineSyntaxError`` naming ``path``.
    """
    try:
        return _parse_bytes(data, path)
    except (UnicodeDecodeError, SyntaxError):
        parse_source(decode_source(data, path), path)  # raises the error that names the path
        raise


@functools.lru_cache(maxsize=32)
def _parse_bytes(data: bytes, path: str) -> ParsedModule:
    text = data.decode("utf-8")
    tree = ast.parse(text, filename=path)
    return ParsedModule(text, tree, tuple(relative_imports(tree)))


# --------------------------------------------------------------------------- pipeline classes


def _base_name(node: ast.expr) -> str | None:
    """``Name`` -> ``Name``; ``pipeyard.DiffusionPipeline`` -> the dotted text; else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = _base_name(node.value)
        return f"{owner}.{node.attr}" if owner else None
    if isinstance(node, ast.Subscript):  # Generic[...]-style bases
        return _base_name(node.value)
    return None


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
        if {_base_name(base) for base in node.bases} & known:
            known.add(node.name)
            found.append((node.name, node.lineno))
    return found


def find_pipeline_class(
    tree: ast.Module, path: str, sibling_classes: Mapping[str, frozenset[str]] | None = None
) -> tuple[str, int]:
    """The one pipeline class of a file, or :class:`~pipeyard.errors.PipelineClassError`."""
    found = pipeline_classes(tree, sibling_classes)
    if len(found) != 1:
        raise errors.PipelineClassError(path, found)
    return found[0]


# --------------------------------------------------------------------------- imports


#: The fields through which a statement holds other statements, in source order
#: (``handlers`` and ``cases`` hold except clauses and match cases, whose ``body`` does).
_BLOCK_FIELDS = ("body", "handlers", "cases", "orelse", "finalbody")


def relative_imports(tree: ast.Module) -> list[RelativeImport]:
    """``(level, module, names)`` of every relative import anywhere in the file, in file order.

    An import is a statement and no expression holds a statement, so only statement blocks are
    visited, not every node as :func:`ast.walk` would (a tenth of the nodes, in a large file).
    """
    found = []
    pending = list(reversed(tree.body))
    while pending:
        node = pending.pop()
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.level, node.module or "", tuple(a.name for a in node.names)))
        inner = [child for field in _BLOCK_FIELDS for child in getattr(node, field, ())]
        pending.extend(reversed(inner))
    return found


def candidate_files(importer: str, level: int, module: str, names: tuple[str, ...]) -> Iterator[str]:
    """Package-relative files a relative import may need, most likely first.

    ``importer`` is the importing file's path relative to the package root. A path that would
    leave the package root is skipped (it cannot be part of the fetched package).
    """
    folder = PurePosixPath(importer).parent
    for _ in range(level - 1):
        if folder == PurePosixPath("."):
            return
        folder = folder.parent
    base = folder.joinpath(*module.split(".")) if module else folder
    if module:
        yield f"{base}.py"
        yield f"{base}/__init__.py"
    for name in names:
        if name != "*":
            yield str(base / f"{name}.py")
            yield str(base / name / "__init__.py")


def _guarded_by_import_error(node: ast.Try) -> bool:
    """True for ``try: ... except ImportError`` (or a base of it) around optional imports."""
    catching = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
    for handler in node.handlers:
        if handler.type is None:
            return True
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if {_base_name(t) for t in types} & catching:
            return True
    return False


def _is_type_checking(test: ast.expr) -> bool:
    return _base_name(test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}


def _unconditional_imports(body: list[ast.stmt]) -> Iterator[str]:
    for node in body:
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]
        elif isinstance(node, ast.If) and not _is_type_checking(node.test):
            yield from _unconditional_imports(node.body)
            yield from _unconditional_imports(node.orelse)
        elif isinstance(node, ast.Try) and not _guarded_by_import_error(node):
            yield from _unconditional_imports(node.body)


def top_level_imports(tree: ast.Module) -> tuple[str, ...]:
    """Top-level packages imported at module level, outside optional-import guards."""
    return tuple(dict.fromkeys(_unconditional_imports(tree.body)))


# --------------------------------------------------------------------------- PEP 723


def script_metadata(text: str, path: str) -> ScriptMetadata | None:
    """The PEP 723 ``script`` block of a file, or None when it has none."""
    blocks = [m for m in _SCRIPT_BLOCK.finditer(text) if m.group("type") == "script"]
    if not blocks:
        return None
    if len(blocks) > 1:
        raise errors.PipelineVerificationError(path, "it has more than one `# /// script` block")
    lines = blocks[0].group("content").splitlines(keepends=True)
    content = "".join(line[2:] if line.startswith("# ") else line[1:] for line in lines)
    try:
        data = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        reason = f"its `# /// script` block is not valid TOML: {exc}"
        raise errors.PipelineVerificationError(path, reason) from None
    tool = data.get("tool", {}).get("pipeyard", {})
    core = tool.get("requires-core")
    if not isinstance(core, str):
        raise errors.PipelineVerificationError(
            path, "its `# /// script` block needs `[tool.pipeyard]` with `requires-core = \">=X.Y\"`"
        )
    deps = data.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise errors.PipelineVerificationError(path, "`dependencies` must be a list of strings")
    tags = tuple(str(tag) for tag in tool.get("tags", ()))
    return ScriptMetadata(tuple(deps), data.get("requires-python"), core, tool.get("summary"), tags)


# --------------------------------------------------------------------------- whole file


def _sibling_pipeline_classes(main: str, modules: Mapping[str, ParsedModule]) -> dict[str, frozenset[str]]:
    """Relative module spec of ``main`` (``.base``) -> pipeline classes that sibling defines."""
    found: dict[str, frozenset[str]] = {}
    for level, module, _ in modules[main].relative_imports:
        for candidate in candidate_files(main, level, module, ()):
            if candidate in modules:
                classes = frozenset(name for name, _ in pipeline_classes(modules[candidate].tree))
                found["." * level + module] = classes
                break
    return found


def verify_package(files: Mapping[str, bytes], main: str, root: str) -> PipelineFileInfo:
    """Decode, parse and check a pipeline file and its sibling modules; return what was learnt.

    Args:
        files: package-relative path -> content, ``main`` among them.
        main: the pipeline file, e.g. ``pipeline.py``.
        root: the folder holding the files, so messages name a path the user can open.

    Raises:
        PipelineEncodingError, PipelineSyntaxError, PipelineClassError, PipelineVerificationError.
    """
    paths = {name: source_path(root, name) for name in files}
    modules = {name: parse_module(data, paths[name]) for name, data in files.items()}
    tree, text, path = modules[main].tree, modules[main].text, paths[main]
    name, line = find_pipeline_class(tree, path, _sibling_pipeline_classes(main, modules))
    return PipelineFileInfo(
        class_name=name,
        line=line,
        metadata=script_metadata(text, path),
        imports=top_level_imports(tree),
        docstring=ast.get_docstring(tree),
    )


# --------------------------------------------------------------------------- requirements


def _installed_version(distribution: str) -> str | None:
    import importlib_metadata

    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None


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
        installed = _installed_version(req.name)
        if installed is None:
            unmet.append((text, "not installed"))
        elif not req.specifier.contains(installed, prereleases=True):
            unmet.append((text, f"{installed} installed"))
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


def missing_imports(imports: tuple[str, ...], local_modules: frozenset[str] = frozenset()) -> list[str]:
    """Top-level import names that no installed module provides (nothing is imported)."""
    missing = []
    for name in imports:
        if name in sys.stdlib_module_names or name in local_modules or name in sys.modules:
            continue
        if importlib.util.find_spec(name) is None:  # top-level names: finds, never imports
            missing.append(name)
    return missing


def check_requirements(info: PipelineFileInfo, path: str, local_modules: frozenset[str] = frozenset()) -> None:
    """Raise one :class:`~pipeyard.errors.RequirementsError` listing every unmet requirement."""
    if info.metadata is None:
        names = missing_imports(info.imports, local_modules)
        unmet = [(name, "not installed; imported by the file, which declares no dependencies") for name in names]
        reqs = [_DISTRIBUTION_OF.get(name, name) for name in names]
        note = ""
    else:
        requires = (*info.metadata.dependencies, f"pipeyard{info.metadata.requires_core}")
        unmet = unmet_dependencies(requires, path)
        reqs = [req for req, _ in unmet]
        note = _check_python(info.metadata.requires_python, path) or ""
    if unmet or note:
        command = "pip install " + " ".join(f'"{r}"' for r in reqs) if reqs else ""
        raise errors.RequirementsError(path, unmet, command, note)
