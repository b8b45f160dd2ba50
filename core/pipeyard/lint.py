"""The contributor's lint: exactly the host's checks on a pipeline file, then what a community file needs.

:func:`lint_pipeline_file` runs, without executing a line of the file:

1. the checks the host runs before loading it, by calling the host's own functions: the
   package is collected as the host collects a local folder (:func:`pipeyard.host.fetch.collect_package`
   with the closed-set :func:`~pipeyard.host.fetch.folder_reader`: every module it imports
   relatively, at any depth, each a regular file inside the folder), then
   :func:`pipeyard.host.verify.verify_package` (UTF-8, syntax of every file, exactly one
   ``DiffusionPipeline`` subclass, the PEP 723 block and ``[tool.pipeyard]``) and
   :func:`pipeyard.host.verify.check_requirements` (requirements installed here);
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import errors
from .host import fetch, verify

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
    module, info, findings = _host_findings(file)
    if module is None or info is None:
        return findings
    findings += _metadata_findings(file, module, info)
    findings += _docstring_findings(file, module.tree)
    if check_tests:
        findings += _test_findings(file, Path(tests_dir) if tests_dir else default_tests_dir(file))
    return findings


def error_findings(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that are errors: a check fails when there is one (warnings do not fail)."""
    return [finding for finding in findings if finding.severity == ERROR]


# --------------------------------------------------------------------------- 1. host checks


def package_files(file: Path) -> dict[str, bytes]:
    """The package of ``file`` as the host reads a local folder: the file and every module it
    imports relatively, at any depth, each a regular file inside ``file``'s folder.

    Raises:
        UnsafePackageFileError: a link leading out of the folder, an import reaching above it,
            a special or oversized file; nothing of it was read.
    """
    root = str(file.parent)
    return fetch.collect_package(file.name, fetch.folder_reader(root), origin=root)


def _host_findings(file: Path) -> tuple[verify.ParsedModule | None, verify.PipelineFileInfo | None, list[Finding]]:
    """The host's checks (:func:`package_files`, ``verify_package``, ``check_requirements``).

    Returns the pipeline file's parsed module (None when it does not parse), what
    ``verify_package`` learnt (None when it failed), and the findings.
    """
    root, main = str(file.parent), file.name
    files: Mapping[str, bytes] = {}
    try:
        files = package_files(file)
        info = verify.verify_package(files, main, root)
    except errors.PipelineVerificationError as exc:
        module = _parsed_main(files, main, root)
        return module, None, _verification_findings(file, module, exc)
    module = _parsed_main(files, main, root)
    try:
        verify.check_requirements(info, str(file), verify.local_module_names(files))
    except errors.RequirementsError as exc:
        listed = "; ".join(f"{req} ({found})" for req, found in exc.unmet)
        fix = f"; install with: {exc.install_command}" if exc.install_command else ""
        return module, info, [Finding(str(file), _script_line(module), ERROR, f"unmet requirements: {listed}{fix}")]
    except errors.PipelineVerificationError as exc:  # a dependency or requires-python that is not valid
        return module, info, [Finding(str(file), _script_line(module), ERROR, exc.reason)]
    return module, info, []


def _parsed_main(files: Mapping[str, bytes], main: str, root: str) -> verify.ParsedModule | None:
    """The pipeline file as ``verify_package`` parsed it (memoized), None when it was not read or does not parse."""
    if main not in files:
        return None
    try:
        return verify.parse_module(files[main], verify.source_path(root, main))
    except errors.PipelineVerificationError:
        return None


def _verification_findings(
    file: Path, module: verify.ParsedModule | None, exc: errors.PipelineVerificationError
) -> list[Finding]:
    path = exc.path
    if isinstance(exc, errors.PipelineSyntaxError):
        detail = f": {exc.detail}" if exc.detail else f" at column {exc.column}" if exc.column else ""
        return [Finding(path, exc.line or 1, ERROR, f"syntax error{detail}")]
    if isinstance(exc, errors.UnsafePackageFileError):
        return [Finding(path, 1, ERROR, exc.reason)]
    script_error = _script_block_error(file, module)
    if isinstance(exc, errors.PipelineClassError) and exc.found:
        found = [Finding(path, line, ERROR, f"{name} is one of {len(exc.found)} DiffusionPipeline subclasses; "
                         "a pipeline file defines exactly one") for name, line in exc.found]
        return found + script_error
    if isinstance(exc, errors.PipelineClassError):
        return [Finding(path, 1, ERROR, exc.reason), *script_error]
    if script_error and script_error[0].message == exc.reason:
        return script_error  # the PEP 723 block is what failed: point at it
    return [Finding(path, 1, ERROR, exc.reason)]


def _script_block_error(file: Path, module: verify.ParsedModule | None) -> list[Finding]:
    """The PEP 723 problem too, when the class check stopped verify_package before it."""
    if module is None:
        return []
    try:
        verify.script_metadata(module.text, str(file))
    except errors.PipelineVerificationError as exc:
        return [Finding(str(file), _script_line(module), ERROR, exc.reason)]
    return []


def _script_line(module: verify.ParsedModule | None) -> int:
    """The line of ``# /// script`` in the pipeline file (1 when there is none)."""
    for number, line in enumerate(module.text.splitlines() if module else (), 1):
        if line.rstrip() == "# /// script":
            return number
    return 1


# --------------------------------------------------------------------------- 2. metadata


def _metadata_findings(file: Path, module: verify.ParsedModule, info: verify.PipelineFileInfo) -> list[Finding]:
    path = str(file)
    if info.metadata is None:
        return [Finding(path, 1, ERROR, "no PEP 723 `# /// script` block: community and registry pipelines "
                        "declare dependencies and `[tool.pipeyard] requires-core` in one (see docs/contributing.md)")]
    line = _script_line(module)
    found = []
    if info.metadata.requires_core is None:
        found.append(Finding(path, line, ERROR, "its `# /// script` block needs `[tool.pipeyard]` with "
                             "`requires-core = \">=X.Y\"` (the pipeyard versions it works with)"))
    if not info.metadata.summary:
        found.append(Finding(path, line, WARNING, "`[tool.pipeyard]` has no `summary`; the registry falls back "
                             "to the docstring's first line"))
    if not info.metadata.tags:
        found.append(Finding(path, line, WARNING, "`[tool.pipeyard]` has no `tags`; `pipeyard search` finds "
                             "pipelines by them"))
    return found


# --------------------------------------------------------------------------- 3. docstring


def _docstring_findings(file: Path, tree: ast.Module) -> list[Finding]:
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
