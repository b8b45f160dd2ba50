"""A pipeline file's PEP 723 ``# /// script`` block and its ``[tool.pipeyard]`` table.

Read from the text with a regular expression and :mod:`tomllib`; nothing is executed. The block
is optional for the host (without it, the file's imports are looked up instead) and required
for community and registry pipelines (:mod:`pipeyard.lint`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

from .. import errors

#: PEP 723: ``# /// TYPE`` then lines of ``#`` or ``# ...`` then ``# ///``.
_SCRIPT_BLOCK = re.compile(
    r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)[ \t]*$\s(?P<content>(^#(| .*)$\s)+)^# ///[ \t]*$"
)


@dataclass(frozen=True)
class ScriptMetadata:
    """What a pipeline file declares in its PEP 723 block."""

    dependencies: tuple[str, ...] = ()
    requires_python: str | None = None
    requires_core: str | None = None
    summary: str | None = None
    tags: tuple[str, ...] = ()


def script_metadata(text: str, path: str) -> ScriptMetadata | None:
    """The PEP 723 ``script`` block of a file, or None when it has none.

    Raises:
        PipelineVerificationError: several blocks, invalid TOML, or fields of the wrong type.
            A plain block (as ``uv add --script`` writes it, without ``[tool.pipeyard]``) is
            fine here; ``requires-core`` is required of community files by ``pipeyard verify``.
    """
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
    tool = _table(data.get("tool", {}), "[tool]", path).get("pipeyard", {})
    tool = _table(tool, "[tool.pipeyard]", path)
    core = _optional_string(tool.get("requires-core"), "[tool.pipeyard] requires-core", path)
    deps = _strings(data.get("dependencies", []), "dependencies", path)
    tags = _strings(tool.get("tags", []), "[tool.pipeyard] tags", path)
    python = _optional_string(data.get("requires-python"), "requires-python", path)
    summary = _optional_string(tool.get("summary"), "[tool.pipeyard] summary", path)
    return ScriptMetadata(deps, python, core, summary, tags)


def _table(value: object, name: str, path: str) -> dict:
    if not isinstance(value, dict):
        raise errors.PipelineVerificationError(path, f"`{name}` in its `# /// script` block must be a table")
    return value


def _strings(value: object, name: str, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise errors.PipelineVerificationError(path, f"`{name}` must be a list of strings")
    return tuple(value)


def _optional_string(value: object, name: str, path: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise errors.PipelineVerificationError(path, f"`{name}` must be a string")
    return value
