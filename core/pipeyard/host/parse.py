"""Decode and parse a package file's bytes, without executing anything.

A pipeline file is UTF-8 text (an optional UTF-8 byte-order mark is skipped, as Python does);
it is parsed with :func:`ast.parse` only. The syntax tree and the file's relative imports are
memoized on the bytes and the path, so the fetch (which follows relative imports), the
verification and the import of a package parse each file once.

A failure names the file, the line and the column. Only the file the caller named is quoted,
one line cut to :data:`MAX_QUOTED_CHARS` around the column, with control characters escaped: a
stranger's sibling module, or a 400 KB line, is never echoed into an error message.
"""

from __future__ import annotations

import ast
import codecs
import functools
import os
from dataclasses import dataclass

from .. import errors

#: The longest excerpt of a source line an error message quotes.
MAX_QUOTED_CHARS = 120

#: A relative import: ``(level, module, names)``; ``from ..a import b`` is ``(2, "a", ("b",))``.
RelativeImport = tuple[int, str, tuple[str, ...]]

#: The fields through which a statement holds other statements, in source order
#: (``handlers`` and ``cases`` hold except clauses and match cases, whose ``body`` does).
_BLOCK_FIELDS = ("body", "handlers", "cases", "orelse", "finalbody")


@dataclass(frozen=True)
class ParsedModule:
    """One module's text, syntax tree and relative imports; shared, so never mutate ``tree``."""

    text: str
    tree: ast.Module
    relative_imports: tuple[RelativeImport, ...]


def source_path(root: str, name: str) -> str:
    """The path messages give for package file ``name`` under ``root`` (a folder, a URL, a repo)."""
    return os.path.join(root, *name.split("/"))


# --------------------------------------------------------------------------- decoding


def decode_source(data: bytes, path: str) -> str:
    """The file's text, without a leading byte-order mark.

    Raises:
        PipelineEncodingError: not UTF-8; the position counts the bytes of the file as stored.
    """
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.PipelineEncodingError(path, bom + exc.start, exc.reason) from None


# --------------------------------------------------------------------------- parsing


def parse_module(data: bytes, path: str, *, quote: bool = True) -> ParsedModule:
    """Decode, parse and list the relative imports of a module's bytes.

    Memoized on the bytes and the path, so parser warnings name the file. A failure is not
    memoized.

    Args:
        quote: False for a file the caller did not name (a sibling module): its error then
            names the line and column only.

    Raises:
        PipelineEncodingError, PipelineSyntaxError (a NUL byte too), naming ``path``.
    """
    try:
        return _parse_bytes(data, path)
    except (UnicodeDecodeError, SyntaxError, ValueError):  # ValueError: a NUL byte (Python 3.11)
        parse_source(decode_source(data, path), path, quote=quote)  # raises the error naming the path
        raise


@functools.lru_cache(maxsize=32)
def _parse_bytes(data: bytes, path: str) -> ParsedModule:
    text = decode_source(data, path)
    tree = ast.parse(text, filename=path)
    return ParsedModule(text, tree, tuple(relative_imports(tree)))


def parse_source(text: str, path: str, *, quote: bool = True) -> ast.Module:
    """Parse without executing.

    Raises:
        PipelineSyntaxError: with the file, line and column, and the line itself (cut) when
            ``quote``.
    """
    if "\0" in text:  # ast.parse says so without a position on Python 3.11
        before = text[: text.index("\0")]
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        _raise_syntax_error(text, path, line, column, "the file contains a NUL byte", quote)
    try:
        return ast.parse(text, filename=path)
    except SyntaxError as exc:
        _raise_syntax_error(text, path, exc.lineno, exc.offset, exc.msg, quote)
        raise  # unreachable: _raise_syntax_error always raises


def _raise_syntax_error(
    text: str, path: str, line: int | None, column: int | None, detail: str, quote: bool
) -> None:
    if not quote:
        raise errors.PipelineSyntaxError(path, line, "", "", column) from None
    lines = text.splitlines()
    source_line = lines[line - 1] if line and 0 < line <= len(lines) else ""
    excerpt = quoted_excerpt(source_line, column)
    raise errors.PipelineSyntaxError(path, line, excerpt, quoted_excerpt(detail, None), column) from None


def quoted_excerpt(text: str, column: int | None = None, limit: int = MAX_QUOTED_CHARS) -> str:
    """At most ``limit`` characters of ``text`` around ``column`` (1-based), control characters escaped.

    Example:
        >>> quoted_excerpt("x = 1\\x1b[2J")
        'x = 1\\\\x1b[2J'
    """
    text = text.rstrip("\r\n")
    if len(text) > limit:
        centre = (column or 1) - 1
        start = max(0, min(centre - limit // 2, len(text) - limit))
        text = ("…" if start else "") + text[start : start + limit] + ("…" if start + limit < len(text) else "")
    return "".join(char if char.isprintable() or char == "\t" else repr(char)[1:-1] for char in text)


# --------------------------------------------------------------------------- syntax tree helpers


def relative_imports(tree: ast.Module) -> list[RelativeImport]:
    """``(level, module, names)`` of every relative import anywhere in the file, in file order.

    An import is a statement and no expression holds a statement, so only statement blocks are
    visited, not every node as :func:`ast.walk` would (a tenth of the nodes, in a large file).
    """
    return [(node.level, node.module or "", tuple(a.name for a in node.names)) for node in _relative_import_nodes(tree)]


def relative_import_line(tree: ast.Module, level: int, module: str) -> int | None:
    """The line of the first ``from <level dots><module> import ...``, for messages."""
    for node in _relative_import_nodes(tree):
        if node.level == level and (node.module or "") == module:
            return node.lineno
    return None


def _relative_import_nodes(tree: ast.Module) -> list[ast.ImportFrom]:
    found = []
    pending: list[ast.AST] = list(reversed(tree.body))
    while pending:
        node = pending.pop()
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append(node)
        inner = [child for field in _BLOCK_FIELDS for child in getattr(node, field, ())]
        pending.extend(reversed(inner))
    return found


def dotted_name(node: ast.expr) -> str | None:
    """``Name`` -> ``Name``; ``pipeyard.DiffusionPipeline`` -> the dotted text; else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = dotted_name(node.value)
        return f"{owner}.{node.attr}" if owner else None
    if isinstance(node, ast.Subscript):  # Generic[...]-style bases
        return dotted_name(node.value)
    return None
