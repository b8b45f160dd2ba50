"""The contributor's lint: the host's checks on a pipeline file, plus what a community file needs.

:func:`lint_pipeline_file` runs, without executing a line of the file:

1. the checks the host runs before loading it (:mod:`pipeyard.host.verify`: UTF-8, syntax,
   exactly one ``DiffusionPipeline`` subclass, the PEP 723 block and ``[tool.pipeyard]``,
   requirements installed here);
2. a PEP 723 block is present (the host tolerates its absence; the registry does not), with
   ``summary`` and ``tags`` (warnings when missing);
3. a module docstring with a usage example: a ``::`` block, ``>>>`` lines or a fenced block
   that passes ``custom_pipeline=``;
4. a test exists for it (see :func:`find_tests` for how one is found).

Each problem is a :class:`Finding` with the file and line, so editors can jump to it.
``pipeyard verify`` prints them; ``pipeyard registry check`` runs them on every community file.

Example:
    >>> from pipeyard.lint import lint_pipeline_file           # doctest: +SKIP
    >>> [str(f) for f in lint_pipeline_file("community/one_step_unet.py")]   # doctest: +SKIP
    []
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from . import errors
from .host import verify

ERROR = "error"
WARNING = "warning"

#: A usage example in a docstring: an indented ``::`` block, doctest lines or a fenced block.
_EXAMPLE_MARKER = re.compile(r"::\s*\n|^\s*>>> |^\s*```", re.MULTILINE)


@dataclass(frozen=True)
class Finding:
    """One problem of a pipeline file, printed as ``path:line: severity: message``."""

    path: str
    line: int
    severity: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity}: {self.message}"


def lint_pipeline_file(
    path: str | Path, tests_dir: str | Path | None = None, *, check_tests: bool = True
) -> list[Finding]:
    """Every finding for the pipeline file ``path`` (empty when it passes).

    Args:
        path: the ``.py`` file.
        tests_dir: where its test should be; default: ``tests/`` next to the ``community/``
            folder holding the file, else ``tests/`` next to the file.
        check_tests: False to skip check 4 (e.g. for a file about to be hosted on the Hub).

    Raises:
        LocalPathError: ``path`` is not a file.
    """
    file = Path(path)
    if not file.is_file():
        raise errors.LocalPathError(str(file), "pipeline file")
    info, findings = _host_findings(file)
    if info is None:
        return findings
    text = file.read_text(encoding="utf-8")
    findings += _metadata_findings(file, text, info)
    findings += _docstring_findings(file, text)
    if check_tests:
        findings += _test_findings(file, Path(tests_dir) if tests_dir else default_tests_dir(file))
    return findings


def has_errors(findings: list[Finding]) -> bool:
    """True when any finding is an error (warnings do not fail)."""
    return any(f.severity == ERROR for f in findings)


# --------------------------------------------------------------------------- 1. host checks


def package_files(file: Path) -> dict[str, bytes]:
    """The file and the sibling modules it imports relatively, as the host would fetch them."""
    files = {file.name: file.read_bytes()}
    try:
        tree = ast.parse(files[file.name])
    except (SyntaxError, ValueError):
        return files  # verify_package reports it with its line
    for level, module, names in verify.relative_imports(tree):
        for candidate in verify.candidate_files(file.name, level, module, names):
            target = file.parent.joinpath(*candidate.split("/"))
            if target.is_file():
                files[candidate] = target.read_bytes()
    return files


def _host_findings(file: Path) -> tuple[verify.PipelineFileInfo | None, list[Finding]]:
    """Run :func:`~pipeyard.host.verify.verify_package` and the requirements check."""
    files = package_files(file)
    try:
        info = verify.verify_package(files, file.name, str(file.parent))
    except errors.PipelineVerificationError as exc:
        return None, _verification_findings(file, exc)
    local = frozenset(name.split("/")[0].removesuffix(".py") for name in files)
    try:
        verify.check_requirements(info, str(file), local)
    except errors.RequirementsError as exc:
        listed = "; ".join(f"{req} ({found})" for req, found in exc.unmet)
        fix = f"; install with: {exc.install_command}" if exc.install_command else ""
        return info, [Finding(str(file), _script_line(file), ERROR, f"unmet requirements: {listed}{fix}")]
    return info, []


def _verification_findings(file: Path, exc: errors.PipelineVerificationError) -> list[Finding]:
    path = exc.path
    if isinstance(exc, errors.PipelineSyntaxError):
        return [Finding(path, exc.line or 1, ERROR, f"syntax error: {exc.detail}")]
    if isinstance(exc, errors.PipelineClassError) and exc.found:
        found = [Finding(path, line, ERROR, f"{name} is one of {len(exc.found)} DiffusionPipeline subclasses; "
                         "a pipeline file defines exactly one") for name, line in exc.found]
        return found + _script_block_error(file)
    if isinstance(exc, errors.PipelineClassError):
        return [Finding(path, 1, ERROR, exc.reason), *_script_block_error(file)]
    line = _script_line(file) if "script" in exc.reason or "dependenc" in exc.reason else 1
    return [Finding(path, line, ERROR, exc.reason)]


def _script_block_error(file: Path) -> list[Finding]:
    """The PEP 723 problem too, when the class check stopped verify_package before it."""
    try:
        verify.script_metadata(file.read_text(encoding="utf-8"), str(file))
    except errors.PipelineVerificationError as exc:
        return [Finding(str(file), _script_line(file), ERROR, exc.reason)]
    return []


def _script_line(file: Path) -> int:
    """The line of ``# /// script`` (1 when there is none)."""
    for number, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if line.rstrip() == "# /// script":
            return number
    return 1


# --------------------------------------------------------------------------- 2. metadata


def _metadata_findings(file: Path, text: str, info: verify.PipelineFileInfo) -> list[Finding]:
    path = str(file)
    if info.metadata is None:
        return [Finding(path, 1, ERROR, "no PEP 723 `# /// script` block: community and registry pipelines "
                        "declare dependencies and `[tool.pipeyard] requires-core` in one (see docs/contributing.md)")]
    line = _script_line(file)
    found = []
    if not info.metadata.summary:
        found.append(Finding(path, line, WARNING, "`[tool.pipeyard]` has no `summary`; the registry falls back "
                             "to the docstring's first line"))
    if not info.metadata.tags:
        found.append(Finding(path, line, WARNING, "`[tool.pipeyard]` has no `tags`; `pipeyard search` finds "
                             "pipelines by them"))
    return found


# --------------------------------------------------------------------------- 3. docstring


def _docstring_findings(file: Path, text: str) -> list[Finding]:
    tree = ast.parse(text)
    docstring = ast.get_docstring(tree)
    if not docstring:
        return [Finding(str(file), 1, ERROR, "no module docstring: say what the pipeline does and show how "
                        "to load it with from_pretrained(..., custom_pipeline=...)")]
    if _EXAMPLE_MARKER.search(docstring) and "custom_pipeline" in docstring:
        return []
    return [Finding(str(file), tree.body[0].lineno, ERROR, "the module docstring has no usage example: "
                    "add an indented `::` block (or `>>>` lines) calling from_pretrained(..., "
                    f"custom_pipeline={file.stem!r})")]


# --------------------------------------------------------------------------- 4. tests


def default_tests_dir(file: Path) -> Path:
    """``tests/`` beside the ``community/`` folder holding ``file``, else beside ``file``."""
    folder = file.resolve().parent
    return folder.parent / "tests" if folder.name == "community" else folder / "tests"


def find_tests(name: str, tests_dir: str | Path) -> list[Path]:
    """Test files for the community pipeline ``name`` under ``tests_dir``.

    A test is found, in this order, at ``tests/community/test_<name>.py``, at
    ``tests/test_community_<name>.py``, or in any ``tests/**/test_*.py`` that loads it by
    name (``custom_pipeline="<name>"``) or names its file (``community/<name>.py``).
    """
    root = Path(tests_dir)
    named = [root / "community" / f"test_{name}.py", root / f"test_community_{name}.py"]
    found = [path for path in named if path.is_file()]
    mention = re.compile(rf"""custom_pipeline\s*=\s*["']{re.escape(name)}["']|community/{re.escape(name)}\.py""")
    for path in sorted(root.rglob("test_*.py")) if root.is_dir() else []:
        if path not in found and mention.search(path.read_text(encoding="utf-8", errors="replace")):
            found.append(path)
    return found


def _test_findings(file: Path, tests_dir: Path) -> list[Finding]:
    if find_tests(file.stem, tests_dir):
        return []
    name = file.stem
    return [Finding(str(file), 1, ERROR, f"no test found for {name!r} in {tests_dir}: add "
                    f"tests/community/test_{name}.py (`pipeyard new` writes one), tests/test_community_{name}.py, "
                    f"or a test that loads custom_pipeline={name!r}")]
