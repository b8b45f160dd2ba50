"""Importing verified packages: relative imports at any depth, failures, the class check."""

from __future__ import annotations

import importlib.util
import inspect
import marshal
import pathlib
import struct
import subprocess
import sys
import textwrap

import pytest

from pipeyard import errors
from pipeyard.host import cache, load_pipeline_class


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_relative_imports_of_any_depth_load_as_one_package(tmp_path):
    """diffusers follows two levels of relative imports; ours follows them all."""
    _write(tmp_path, {
        "pipeline.py": """
            from pipeyard import DiffusionPipeline
            from . import helpers
            from .pkg.deep import VALUE
            class Deep(DiffusionPipeline):
                def __call__(self):
                    return helpers.NAME, VALUE
        """,
        "helpers.py": "from .pkg import level1\nNAME = 'helpers' + level1.SUFFIX\n",
        "pkg/__init__.py": "",
        "pkg/level1.py": "from .level2 import SUFFIX\n",
        "pkg/level2.py": "from ..pkg.level3 import BASE\nSUFFIX = BASE + '!'\n",
        "pkg/level3.py": "BASE = '-3'\n",
        "pkg/deep.py": "from .level2 import SUFFIX as VALUE\n",
        "unrelated.py": "raise RuntimeError('never imported')\n",
    })
    cls = load_pipeline_class(str(tmp_path))
    assert cls.__call__(None) == ("helpers-3!", "-3!")
    package = cls.__module__.rsplit(".", 1)[0]
    assert f"{package}.pkg.level3" in sys.modules and f"{package}.unrelated" not in sys.modules


def test_a_changed_sibling_makes_a_new_package(tmp_path):
    _write(tmp_path, {
        "pipeline.py": "from pipeyard import DiffusionPipeline\nfrom .h import X\n"
                       "class P(DiffusionPipeline):\n    def __call__(self):\n        return X\n",
        "h.py": "X = 1\n",
    })
    first = load_pipeline_class(str(tmp_path))
    (tmp_path / "h.py").write_text("X = 2\n")
    second = load_pipeline_class(str(tmp_path))
    assert (first.__call__(None), second.__call__(None)) == (1, 2)


def test_an_error_raised_at_import_is_wrapped_and_leaves_nothing_behind(write_pipeline, pipeline_text):
    path = write_pipeline(text=pipeline_text(body="raise ValueError('boom')\n"))
    with pytest.raises(errors.PipelineImportError, match="ValueError: boom") as caught:
        load_pipeline_class(str(path))
    assert isinstance(caught.value.__cause__, ValueError) and str(path.name) in caught.value.path
    assert not [name for name in sys.modules if name.startswith("pipeyard_m") and "boom" in repr(sys.modules[name])]
    with pytest.raises(errors.PipelineImportError):  # a retry runs the file again, same error
        load_pipeline_class(str(path))


def test_a_class_that_is_not_a_pipeline_after_import_is_refused(write_pipeline, tiny_ddpm_folder):
    """The host returns the one class verified; from_pretrained refuses it if not a pipeline."""
    from pipeyard import DiffusionPipeline

    text = (
        "import pipeyard\n"
        "DiffusionPipeline = object  # shadows the real base at runtime\n"
        "from pipeyard import DiffusionPipeline\n"
        "DiffusionPipeline = object\n"
        "class Sneaky(DiffusionPipeline):\n    pass\n"
    )
    path = str(write_pipeline(text=text))
    assert load_pipeline_class(path).__name__ == "Sneaky"
    with pytest.raises(errors.PipelineImportError, match="not a subclass of pipeyard.DiffusionPipeline"):
        DiffusionPipeline.from_pretrained(tiny_ddpm_folder, custom_pipeline=path)


def test_requirements_are_checked_before_import(write_pipeline, pipeline_text, tmp_path):
    marker = tmp_path / "ran.txt"
    header = (
        "# /// script\n# dependencies = [\"no-such-dist-xyz\"]\n# [tool.pipeyard]\n"
        "# requires-core = \">=0.1\"\n# ///\n" f"open({str(marker)!r}, 'w').close()\n"
    )
    with pytest.raises(errors.RequirementsError, match='pip install "no-such-dist-xyz"'):
        load_pipeline_class(str(write_pipeline(text=pipeline_text(header=header))))
    assert not marker.exists()


def test_importing_the_host_does_not_import_torch():
    code = (
        "import sys, pipeyard.host, pipeyard.trust\n"
        "from pipeyard.host import load_pipeline_class, resolve, fetch, verify, gate, trust_store, cache, importer\n"
        "heavy = [m for m in ('torch', 'transformers', 'pipeyard.pipelines.base', 'pipeyard.models') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"



def _forget_package(cls) -> None:
    package = cls.__module__.rsplit(".", 1)[0]
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


def test_bytecode_planted_in_the_store_does_not_run(write_pipeline, pipeline_text):
    """The store re-hashes .py files only: a .pyc beside one must never run in its place."""
    path = write_pipeline(text=pipeline_text("Honest"))
    cls = load_pipeline_class(str(path))
    stored = pathlib.Path(sys.modules[cls.__module__].__file__)
    assert not (stored.parent / "__pycache__").exists()  # none written either
    planted = compile("raise RuntimeError('planted bytecode ran')\n", str(stored), "exec")
    stat = stored.stat()
    header = importlib.util.MAGIC_NUMBER + bytes(4) + struct.pack("<II", int(stat.st_mtime), stat.st_size)
    pyc = pathlib.Path(importlib.util.cache_from_source(str(stored)))
    pyc.parent.mkdir()
    pyc.write_bytes(header + marshal.dumps(planted))
    _forget_package(cls)  # as in a new process: the module is imported again
    again = load_pipeline_class(str(path))
    assert again.__name__ == "Honest" and again is not cls


def test_a_module_dropped_into_the_store_folder_is_not_imported(write_pipeline, pipeline_text):
    """Only the hashed files of a package import; any other file in its folder does not."""
    body = "\n    def extra(self):\n        from . import extra\n        return extra\n"
    cls = load_pipeline_class(str(write_pipeline(text=pipeline_text("Lazy", body=body))))
    stored = pathlib.Path(sys.modules[cls.__module__].__file__)
    (stored.parent / "extra.py").write_text("RAN = True\n")
    with pytest.raises(ImportError, match="cannot import name 'extra'"):
        cls.extra(None)
    assert cls.__module__.replace(".pipeline", ".extra") not in sys.modules


def test_source_and_tracebacks_point_at_the_users_file(write_pipeline, pipeline_text):
    """Tracebacks name the file the user wrote; ``__file__`` is the verified copy that runs."""
    path = write_pipeline(text=pipeline_text("Traced", body="\n    def fail(self):\n        raise ValueError('here')\n"))
    cls = load_pipeline_class(str(path))
    assert inspect.getsource(cls).startswith("class Traced(DiffusionPipeline):")
    with pytest.raises(ValueError, match="here") as caught:
        cls.fail(None)
    frame = caught.traceback[-1]
    assert str(frame.path) == str(path)
    assert sys.modules[cls.__module__].__file__.startswith(str(cache.modules_dir()))
    assert frame.statement.lines[0].strip() == "raise ValueError('here')"
