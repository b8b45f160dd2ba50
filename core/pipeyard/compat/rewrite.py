"""A hosted module's diffusers imports: checked against :mod:`.layout`, then pointed at the views.

Both work on the syntax tree the host verified, so what is checked is what runs:

* :func:`unsupported_imports` lists every diffusers name a module imports (or reaches as an
  attribute of an imported ``diffusers`` module) that pipeyard does not provide; imports inside
  ``try: ... except ImportError`` are optional and not listed;
* :func:`rewritten` returns a copy of the tree whose ``diffusers`` imports name
  ``pipeyard.compat.diffusers`` instead, so the module gets pipeyard's objects while
  ``sys.modules`` and any real diffusers stay untouched; reads of ``.text_model`` go through
  :func:`.attributes.text_model_of` (transformers 5's ``CLIPTextModel`` has none).
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterator

from . import VIEW_ROOT
from .layout import MODULES, packages

_PACKAGES = packages()
_BLOCK_FIELDS = ("body", "handlers", "cases", "orelse", "finalbody")
_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def _is_diffusers(module: str | None) -> bool:
    return module is not None and (module == "diffusers" or module.startswith("diffusers."))


def catches_import_error(node: ast.Try) -> bool:
    """True for ``try: ... except ImportError`` (or a base of it): the imports it guards are optional."""
    for handler in node.handlers:
        if handler.type is None:
            return True
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(getattr(t, "id", getattr(t, "attr", None)) in _IMPORT_ERRORS for t in types):
            return True
    return False


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement at any depth, with whether an ``except ImportError`` guards it."""
    pending: list[tuple[ast.AST, bool]] = [(node, False) for node in reversed(tree.body)]
    while pending:
        node, guarded = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, guarded
        inner_guarded = guarded or (isinstance(node, ast.Try) and catches_import_error(node))
        for field in reversed(_BLOCK_FIELDS):
            block = getattr(node, field, ())
            # a try's own body is guarded by its handlers; its handlers and else are not
            flag = inner_guarded if field == "body" else guarded
            pending.extend((child, flag) for child in reversed(block))


def has_diffusers_imports(tree: ast.Module) -> bool:
    """Whether any import of the module names diffusers."""
    for node, _ in _imports(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _is_diffusers(node.module):
            return True
        if isinstance(node, ast.Import) and any(_is_diffusers(a.name) for a in node.names):
            return True
    return False


def _provides(path: str, name: str) -> bool:
    return name in MODULES.get(path, ()) or f"{path}.{name}" in _PACKAGES


def unsupported_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """``(line, "diffusers.x.Name")`` for every diffusers name used that pipeyard does not provide."""
    missing: list[tuple[int, str]] = []
    aliases: dict[str, str] = {}  # local name -> the diffusers module path it is bound to
    for node, guarded in _imports(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _is_diffusers(node.module):
            path = node.module or ""
            if path not in _PACKAGES:
                missing += [] if guarded else [(node.lineno, path)]
                continue
            missing += [
                (node.lineno, f"{path}.{a.name}")
                for a in node.names
                if a.name != "*" and not _provides(path, a.name) and not guarded
            ]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not _is_diffusers(alias.name):
                    continue
                if alias.name not in _PACKAGES:
                    missing += [] if guarded else [(node.lineno, alias.name)]
                elif alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    aliases["diffusers"] = "diffusers"
    if aliases:
        missing += _unsupported_attributes(tree, aliases)
    return sorted(set(missing))


def _unsupported_attributes(tree: ast.Module, aliases: dict[str, str]) -> list[tuple[int, str]]:
    """``diffusers.Foo`` / ``diffusers.models.Bar`` reached through a bound module name."""
    missing = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain: list[str] = []
        root: ast.expr = node
        while isinstance(root, ast.Attribute):
            chain.append(root.attr)
            root = root.value
        if not isinstance(root, ast.Name) or root.id not in aliases:
            continue
        path = aliases[root.id]
        for attr in reversed(chain):
            if f"{path}.{attr}" in _PACKAGES:
                path = f"{path}.{attr}"
                continue
            if attr not in MODULES.get(path, ()) and not (path == "diffusers" and attr == "__version__"):
                missing.append((node.lineno, f"{path}.{attr}"))
            break
    return missing


#: ``<expr>.text_model`` reads become ``<this module>.text_model_of(<expr>)`` (see .attributes)
_ATTRIBUTE_HELPERS = {"text_model": ("pipeyard.compat.attributes", "text_model_of")}


class _PointAtViews(ast.NodeTransformer):
    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        helper = _ATTRIBUTE_HELPERS.get(node.attr)
        if helper is None or not isinstance(node.ctx, ast.Load):
            return node
        module, function = helper
        # __import__(module, fromlist=(function,)).function(<expr>): no name added to the module
        loader = ast.Call(
            func=ast.Name(id="__import__", ctx=ast.Load()),
            args=[ast.Constant(module)],
            keywords=[ast.keyword(arg="fromlist", value=ast.Tuple(elts=[ast.Constant(function)], ctx=ast.Load()))],
        )
        call = ast.Call(func=ast.Attribute(value=loader, attr=function, ctx=ast.Load()), args=[node.value], keywords=[])
        return ast.copy_location(call, node)


    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.ImportFrom:
        if node.level == 0 and _is_diffusers(node.module):
            node.module = VIEW_ROOT + (node.module or "")[len("diffusers"):]
        return node

    def visit_Import(self, node: ast.Import) -> ast.Import:
        for alias in node.names:
            if not _is_diffusers(alias.name):
                continue
            if alias.asname:  # import diffusers.x as y: y is that module
                alias.name = VIEW_ROOT + alias.name[len("diffusers"):]
            else:  # import diffusers[.x.y] binds `diffusers`; its children load on access
                alias.name, alias.asname = VIEW_ROOT, "diffusers"
        return node


def rewritten(tree: ast.Module) -> ast.Module:
    """``tree`` itself when it imports no diffusers, else a copy whose diffusers imports name the
    views (the verified tree is shared: it is never changed)."""
    if not has_diffusers_imports(tree):
        return tree
    return ast.fix_missing_locations(_PointAtViews().visit(copy.deepcopy(tree)))
