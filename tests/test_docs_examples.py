"""Every ```python and ```bash / ```console example of README.md and docs/*.md runs as written.

One test per page. A page's blocks run in order, in a fresh temporary folder with a fresh
``PIPEYARD_HOME`` and Hugging Face cache, offline (``PIPEYARD_OFFLINE=1``, ``HF_HUB_OFFLINE=1``):
its Python blocks share one namespace, its shell blocks the same folder and environment, so a
block may build on the ones above it. ```text, ```json, ```toml... blocks are not run.

The working folder is a copy of this checkout's ``community/``, ``registry/``, ``tests/``,
``scripts/`` and ``bench/`` with a ``.venv/bin/python`` (the running interpreter), so the
contributor's commands (``pipeyard new``, ``registry build``) work on the copy.

The line right before a block may say what it needs (comma-separated)::

    <!-- needs: network -->   run offline; it must raise OfflineError (or another library's
                              OSError saying offline); a shell block is only parsed (bash -n)
    <!-- needs: gpu -->       run where CUDA is available; elsewhere it must fail naming CUDA
    <!-- needs: ray -->       run where Ray can start; skipped (with the reason) elsewhere

A Python block after a ``needs: network`` one may use the names that one would have defined:
its NameError is expected offline. A failure names the page, the block's first line and what
went wrong; Python tracebacks show the page's own line numbers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGUAGES = {"python": "python", "py": "python", "bash": "shell", "sh": "shell", "shell": "shell",
                 "console": "console"}
NEEDS = {"network", "gpu", "ray"}
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)\s*$")
_NEEDS = re.compile(r"^\s*<!--\s*needs:\s*(?P<needs>[\w\s,-]+?)\s*-->\s*$")
SHELL_TIMEOUT_S = 120


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    language: str  # "python", "shell" or "console"
    code: str
    needs: frozenset[str]

    @property
    def where(self) -> str:
        return f"{shown(self.page)}:{self.line} ({self.language} block)"


def shown(page: Path) -> str:
    """``page`` relative to the checkout when it is in it."""
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def page_blocks(page: Path) -> list[Block]:
    """The runnable blocks of ``page``, in order; raises ValueError on an unknown ``needs``."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == opening["fence"]), len(lines))
        indent = len(opening["indent"])
        body = "\n".join(line[indent:] for line in lines[i + 1:end])
        language = RUN_LANGUAGES.get(opening["lang"].lower())
        if language:
            blocks.append(Block(page, i + 1, language, body + "\n", _needs_before(page, lines, i)))
        i = end + 1
    return blocks


def _needs_before(page: Path, lines: list[str], fence: int) -> frozenset[str]:
    marker = _NEEDS.match(lines[fence - 1]) if fence else None
    if not marker:
        return frozenset()
    needs = frozenset(n.strip() for n in marker["needs"].split(",") if n.strip())
    if needs - NEEDS:
        raise ValueError(f"{shown(page)}:{fence}: unknown needs {sorted(needs - NEEDS)}; "
                         f"use {', '.join(sorted(NEEDS))}")
    return needs


def console_commands(code: str) -> str:
    """The commands of a console transcript: ``$ `` lines (``\\`` continuations kept); output dropped."""
    commands, continued = [], False
    for line in code.splitlines():
        if line.startswith("$ ") or continued:
            command = line[2:] if line.startswith("$ ") and not continued else line
            commands.append(command)
            continued = command.rstrip().endswith("\\")
    return "\n".join(commands) + "\n"


# --------------------------------------------------------------------------- environment


#: What a page's working folder holds, copied from this checkout: a contributor's checkout
#: after ``make test`` (``.venv/bin/python`` and ``.venv/bin/pipeyard`` are the running ones).
CHECKOUT_FOLDERS = ("community", "registry", "tests", "scripts", "bench")


def contributor_checkout(work: Path) -> None:
    """Fill ``work`` like a source checkout, so contributor commands write into the copy."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for folder in CHECKOUT_FOLDERS:
        shutil.copytree(ROOT / folder, work / folder, ignore=ignore)
    venv_bin = work / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    for name, target in (("python", sys.executable), ("pipeyard", Path(sys.executable).parent / "pipeyard")):
        script = venv_bin / name  # a wrapper, not a link: a linked python would not find its venv
        script.write_text(f'#!/bin/sh\nexec "{target}" "$@"\n')
        script.chmod(0o755)


@pytest.fixture
def docs_env(tmp_path, monkeypatch):
    """A fresh checkout copy, home and cache, offline; the ``pipeyard`` on PATH is this checkout's."""
    work = tmp_path / "work"
    work.mkdir()
    contributor_checkout(work)
    env = {
        "PIPEYARD_HOME": str(tmp_path / "pipeyard-home"), "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_CACHE": str(tmp_path / "hf-home" / "hub"), "PIPEYARD_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1", "TQDM_DISABLE": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    import huggingface_hub.constants as hub_constants  # read once at its import: an earlier test's import

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # would otherwise keep transformers online
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the examples' tensors are tiny: a second thread
    monkeypatch.chdir(work)                     # only waits for a busy core (10x slower measured)
    core = str(ROOT / "core")
    shell_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                 "PYTHONPATH": os.pathsep.join(p for p in (core, os.environ.get("PYTHONPATH")) if p)}
    shell_env.pop("RAY_ADDRESS", None)  # a Ray block starts its own cluster, never joins a test's
    shell_env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="docs-ray-")  # short: Ray's socket paths
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield work, shell_env
    torch.set_num_threads(threads)
    shutil.rmtree(shell_env["RAY_TMPDIR"], ignore_errors=True)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _ray_unavailable() -> str | None:
    """Why a ``needs: ray`` block cannot run here (None when it can).

    Only whether Ray is installed: the block itself starts its own local cluster in a
    subprocess. Nothing here starts Ray in the test process, where a start and shutdown would
    leave Ray Data's process-wide state pointing at a dead cluster for a later test's cluster.
    """
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install 'pipeyard[ray]')"
    return None


# --------------------------------------------------------------------------- running blocks


def run_python(block: Block, namespace: dict) -> None:
    """Exec ``block`` in ``namespace``; tracebacks carry the page's path and line numbers."""
    code = compile("\n" * block.line + block.code, str(block.page), "exec")
    exec(code, namespace)  # noqa: S102 - the docs' own examples


def run_shell(block: Block, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    script = console_commands(block.code) if block.language == "console" else block.code
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=SHELL_TIMEOUT_S)


def check_block(block: Block, namespace: dict, cwd: Path, env: dict[str, str], after_offline: bool = False) -> str | None:
    """Run one block; the failure text (None when it did what its marker says).

    ``after_offline``: an earlier ``needs: network`` block of the page failed as it should, so
    a Python block may miss the names it would have defined (a NameError is then expected).
    """
    if "ray" in block.needs:
        reason = _ray_unavailable()
        if reason:
            return None  # reported as a skip by the caller
    expect_failure = ("network" in block.needs) or ("gpu" in block.needs and not _cuda_available())
    if block.language != "python":
        return check_shell(block, cwd, env, expect_failure)
    try:
        run_python(block, namespace)
    except Exception as exc:  # noqa: BLE001 - reported with its traceback
        if expect_failure and _fails_clearly(exc, block.needs):
            return None
        if after_offline and isinstance(exc, NameError):
            return None  # it builds on a block that needed the network
        return "".join(traceback.format_exception(exc)[-12:])
    if expect_failure:
        needs = ", ".join(sorted(block.needs))
        return f"marked needs: {needs}, but it ran here offline on this machine: drop or fix the marker"
    return None


def check_shell(block: Block, cwd: Path, env: dict[str, str], expect_failure: bool) -> str | None:
    """A shell block: exit 0; a ``needs: network`` one is only parsed, a ``needs: gpu`` one
    must fail naming CUDA where there is none."""
    script = console_commands(block.code) if block.language == "console" else block.code
    if "network" in block.needs:  # only parsed: a shell command would really try the network
        done = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
        return None if done.returncode == 0 else f"does not parse as bash:\n{done.stderr}"
    try:
        done = run_shell(block, cwd, env)
    except subprocess.TimeoutExpired:
        return f"still running after {SHELL_TIMEOUT_S} s; examples must be quick (few steps, small sizes)"
    output = f"exit status {done.returncode}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    if not expect_failure:
        return output if done.returncode else None
    if done.returncode and "cuda" in (done.stdout + done.stderr).lower():
        return None
    return f"marked needs: gpu, but did not fail naming CUDA on this machine without one:\n{output}"


def _fails_clearly(exc: BaseException, needs: frozenset[str]) -> bool:
    """An offline error for network blocks (OfflineError, or an OSError saying offline); an
    error naming CUDA for gpu blocks."""
    from pipeyard import errors

    if "network" in needs and isinstance(exc, errors.OfflineError):
        return True
    if "network" in needs and isinstance(exc, OSError) and "offline" in str(exc).lower():
        return True  # another library's offline error (transformers, huggingface_hub)
    return "gpu" in needs and "cuda" in str(exc).lower()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_example_of_the_page_runs(page, docs_env):
    cwd, env = docs_env
    blocks = page_blocks(page)
    if not blocks:
        pytest.skip(f"{shown(page)} has no python or shell blocks")
    namespace: dict = {"__name__": "__docs__"}
    failures, skipped, after_offline = [], [], False
    for block in blocks:
        if "ray" in block.needs and _ray_unavailable():
            skipped.append(f"{block.where}: {_ray_unavailable()}")
            continue
        problem = check_block(block, namespace, cwd, env, after_offline)
        after_offline = after_offline or ("network" in block.needs and block.language == "python")
        if problem:
            first = block.code.strip().splitlines()[0] if block.code.strip() else ""
            failures.append(f"{block.where} failed (first line: {first!r}):\n{problem}")
            break  # later blocks of the page build on this one
    assert not failures, "\n\n".join(failures)
    if skipped:
        pytest.skip("; ".join(skipped))


# --------------------------------------------------------------------------- the harness itself


def test_blocks_are_found_with_their_line_language_and_needs(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# t\n\n```python\nx = 1\n```\n\n<!-- needs: network, gpu -->\n```console\n$ pipeyard list\n"
                    "one_step_unet ...\n```\n\n```text\nnot run\n```\n  ```bash\n  echo hi\n  ```\n")
    blocks = page_blocks(page)
    assert [(b.line, b.language, b.needs) for b in blocks] == [
        (3, "python", frozenset()), (8, "console", frozenset({"network", "gpu"})), (16, "shell", frozenset())]
    assert blocks[2].code == "echo hi\n"
    assert console_commands(blocks[1].code) == "pipeyard list\n"


def test_an_unknown_needs_marker_is_refused_with_its_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- needs: internet -->\n```python\nx = 1\n```\n")
    with pytest.raises(ValueError, match=r"page.md:1: unknown needs \['internet'\]; use gpu, network, ray"):
        page_blocks(page)


def test_a_failing_block_is_reported_with_page_and_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("intro\n\n```python\nx = 1\ny = undefined_name\n```\n")
    block = Block(page, 3, "python", "x = 1\ny = undefined_name\n", frozenset())
    problem = check_block(block, {}, tmp_path, dict(os.environ))
    assert f'File "{page}", line 5' in problem and "NameError" in problem


def test_a_network_block_must_fail_with_an_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPEYARD_OFFLINE", "1")
    page = tmp_path / "page.md"
    offline = "from pipeyard import DiffusionPipeline\nDiffusionPipeline.from_pretrained('alice/model')\n"
    assert check_block(Block(page, 1, "python", offline, frozenset({"network"})), {}, tmp_path, {}) is None
    wrong = check_block(Block(page, 1, "python", "x = 1\n", frozenset({"network"})), {}, tmp_path, {})
    assert "marked needs: network, but it ran here offline" in wrong
    other = check_block(Block(page, 1, "python", "1 / 0\n", frozenset({"network"})), {}, tmp_path, {})
    assert "ZeroDivisionError" in other


def test_a_gpu_shell_block_must_fail_naming_cuda_where_there_is_none(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "_cuda_available", lambda: False)
    page = tmp_path / "page.md"
    says_cuda = Block(page, 1, "shell", "echo 'no CUDA device' >&2; exit 1\n", frozenset({"gpu"}))
    assert check_block(says_cuda, {}, tmp_path, dict(os.environ)) is None
    runs = Block(page, 1, "shell", "true\n", frozenset({"gpu"}))
    assert "marked needs: gpu, but did not fail naming CUDA" in check_block(runs, {}, tmp_path, dict(os.environ))
    network = Block(page, 1, "console", "$ hf upload a/b . .\nuploaded\n", frozenset({"network"}))
    assert check_block(network, {}, tmp_path, dict(os.environ)) is None  # parsed, not run
