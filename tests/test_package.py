"""The package surface: lazy exports, import cost, the error tree, environment variables."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import pipeyard
from pipeyard import constants, errors


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; {code}; print(' '.join(sorted(sys.modules)))"],
        check=True, capture_output=True, text=True,
    )
    return set(out.stdout.split())


def test_import_pipeyard_imports_neither_torch_nor_transformers():
    loaded = _modules_after("import pipeyard")
    assert "torch" not in loaded and "transformers" not in loaded and "huggingface_hub" not in loaded


def test_diffusion_pipeline_access_imports_neither_torch_nor_transformers():
    loaded = _modules_after("import pipeyard; pipeyard.DiffusionPipeline")
    assert "torch" not in loaded and "transformers" not in loaded


def test_all_is_sorted_and_every_name_resolves():
    assert pipeyard.__all__ == sorted(pipeyard.__all__)
    for name in pipeyard.__all__:
        assert getattr(pipeyard, name) is not None, name


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pipeyard.Nope  # noqa: B018


def test_every_error_is_a_pipeyard_error_and_drawn_in_the_tree():
    doc = errors.__doc__ or ""
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    for cls in classes:
        assert cls.__name__ in doc, f"{cls.__name__} missing from the tree in errors.py"
        if not issubclass(cls, errors.PipeyardWarning):
            assert issubclass(cls, errors.PipeyardError), cls


def test_errors_also_inherit_the_fitting_standard_exception():
    assert issubclass(errors.EntryNotFoundError, FileNotFoundError)
    assert issubclass(errors.UntrustedCodeError, PermissionError)
    assert issubclass(errors.RequirementsError, ImportError)
    assert issubclass(errors.ConfigFileError, ValueError)


def test_oserror_based_errors_print_their_message():
    err = errors.EntryNotFoundError("some/repo", "unet/config.json", "main")
    assert str(err) == "'unet/config.json' does not exist in 'some/repo' at revision 'main'"
    assert err.filename == "unet/config.json"


def test_environment_is_read_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPEYARD_HOME", str(tmp_path / "a"))
    assert constants.pipeyard_home() == tmp_path / "a"
    monkeypatch.setenv("PIPEYARD_HOME", str(tmp_path / "b"))
    assert constants.pipeyard_home() == tmp_path / "b"
    monkeypatch.delenv("PIPEYARD_HOME")
    assert constants.pipeyard_home().parts[-2:] == (".cache", "pipeyard")


@pytest.mark.parametrize("variable", ["PIPEYARD_OFFLINE", "HF_HUB_OFFLINE"])
def test_either_offline_variable_turns_offline_on(monkeypatch, variable):
    assert not constants.is_offline()
    monkeypatch.setenv(variable, "1")
    assert constants.is_offline()


def test_timeout_default_and_bad_values(monkeypatch):
    assert constants.network_timeout() == constants.DEFAULT_TIMEOUT
    monkeypatch.setenv("PIPEYARD_TIMEOUT", "2.5")
    assert constants.network_timeout() == 2.5
    for bad in ("soon", "-1"):
        monkeypatch.setenv("PIPEYARD_TIMEOUT", bad)
        with pytest.raises(errors.EnvironmentVariableError, match=f"PIPEYARD_TIMEOUT={bad!r}"):
            constants.network_timeout()


def test_bundled_folders_are_found():
    from pipeyard._bundled import bundled_dir

    assert (bundled_dir("registry") / "index.json").is_file()
    assert bundled_dir("community").is_dir()
    with pytest.raises(ValueError, match="unknown bundled folder"):
        bundled_dir("elsewhere")


def test_every_python_package_of_the_source_is_in_the_wheel():
    """A folder of modules missing from pyproject's explicit package list works in a checkout
    and is absent from the wheel (pipeyard.batch was, until this test)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    source = root / "core"
    folders = {p.parent for p in (source / "pipeyard").rglob("*.py") if "_bundled" not in p.parts}
    found = {".".join(folder.relative_to(source).parts) for folder in folders}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_the_error_tree_in_the_docs_is_the_one_in_errors_py():
    """docs/errors.md shows the tree errors.py draws (which another test keeps complete)."""
    import textwrap

    doc = errors.__doc__
    drawn = doc[doc.index("::\n") + 3:].strip("\n").split("\n\n")[0]
    page = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text(encoding="utf-8")
    assert "```text\n" + textwrap.dedent(drawn) + "\n```" in page, "copy the tree of errors.py into docs/errors.md"
