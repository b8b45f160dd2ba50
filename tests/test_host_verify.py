"""Static verification of pipeline files: classes, syntax, encoding, PEP 723, requirements."""

from __future__ import annotations

import sys
import textwrap

import pytest

from pipeyard import errors
from pipeyard.host import verify


def _verify(text: str | bytes, name: str = "pipeline.py", siblings: dict[str, str] | None = None):
    data = text if isinstance(text, bytes) else textwrap.dedent(text).encode()
    files = {name: data, **{k: textwrap.dedent(v).encode() for k, v in (siblings or {}).items()}}
    return verify.verify_package(files, name, "/repo")


def test_one_subclass_is_found_with_its_line():
    info = _verify("""
        from pipeyard import DiffusionPipeline

        class Helper:
            pass

        class MyPipeline(DiffusionPipeline):
            pass
    """)
    assert (info.class_name, info.line) == ("MyPipeline", 7)


def test_subclass_through_a_class_defined_in_the_file_counts_and_both_are_reported():
    """diffusers reports a base class and its subclass confusingly; we name both, with lines."""
    with pytest.raises(errors.PipelineClassError) as caught:
        _verify("""
            import pipeyard as py

            class Base(py.DiffusionPipeline):
                pass

            class Real(Base):
                pass
        """)
    assert caught.value.found == [("Base", 4), ("Real", 7)]
    assert "Base (line 4), Real (line 7)" in str(caught.value)
    assert "/repo/pipeline.py" in str(caught.value)


def test_no_subclass_is_an_error_saying_what_to_write():
    with pytest.raises(errors.PipelineClassError, match="defines no subclass") as caught:
        _verify("class Nothing:\n    pass\n")
    assert caught.value.found == []


def test_imported_pipeline_classes_do_not_count_but_subclassing_them_does():
    info = _verify("""
        from pipeyard import DiffusionPipeline, DDPMPipeline as Base

        class Mine(Base):
            pass
    """)
    assert info.class_name == "Mine"


def test_a_class_named_like_a_pipeline_from_elsewhere_does_not_count():
    with pytest.raises(errors.PipelineClassError):
        _verify("from otherlib import DiffusionPipeline\n\nclass P(DiffusionPipeline):\n    pass\n")


def test_a_diffusers_pipeline_base_counts_since_hosted_diffusers_imports_are_pipeyard():
    info = _verify("from diffusers.pipelines.pipeline_utils import DiffusionPipeline\n\n"
                   "class P(DiffusionPipeline):\n    pass\n")
    assert info.class_name == "P"


def test_base_class_in_a_relatively_imported_sibling_counts():
    info = _verify(
        "from .base import SharedBase\n\nclass Real(SharedBase):\n    pass\n",
        siblings={"base.py": "from pipeyard import DiffusionPipeline\nclass SharedBase(DiffusionPipeline):\n    pass\n"},
    )
    assert info.class_name == "Real"


def test_syntax_error_names_file_line_and_source_line():
    with pytest.raises(errors.PipelineSyntaxError) as caught:
        _verify("x = 1\ny = (2,\nclass\n")
    error = caught.value
    assert error.path == "/repo/pipeline.py" and error.line is not None
    assert error.source_line.strip() in {"y = (2,", "class"}
    assert f"line {error.line}" in str(error) and error.source_line.strip() in str(error)


def test_non_utf8_file_is_a_typed_error():
    with pytest.raises(errors.PipelineEncodingError) as caught:
        _verify(b"# caf\xe9\nx = 1\n")
    assert isinstance(caught.value, UnicodeError) and caught.value.position == 5
    assert "UTF-8" in str(caught.value)


def test_pep723_block_is_read():
    info = _verify("""
        # /// script
        # requires-python = ">=3.9"
        # dependencies = ["packaging>=20"]
        # [tool.pipeyard]
        # requires-core = ">=0.1"
        # tags = ["a"]
        # ///
        from pipeyard import DiffusionPipeline
        class P(DiffusionPipeline):
            pass
    """)
    assert info.metadata == verify.ScriptMetadata(("packaging>=20",), ">=3.9", ">=0.1", None, ("a",))


def test_a_plain_pep723_block_without_requires_core_verifies():
    """As `uv add --script` writes it; only contributed files need requires-core (pipeyard verify)."""
    info = _verify("# /// script\n# dependencies = []\n# ///\nfrom pipeyard import DiffusionPipeline\n"
                   "class P(DiffusionPipeline):\n    pass\n")
    assert info.metadata is not None and info.metadata.requires_core is None


def _info(metadata=None, imports=()):
    return verify.PipelineFileInfo("P", 1, metadata, tuple(imports))


def test_all_unmet_requirements_in_one_error_with_a_pip_line():
    meta = verify.ScriptMetadata(("packaging>=1", "no-such-dist-xyz>=1", "packaging<1"), ">=3.0", ">=0.1")
    with pytest.raises(errors.RequirementsError) as caught:
        verify.check_requirements(_info(meta), "/repo/p.py")
    error = caught.value
    assert [req for req, _ in error.unmet] == ["no-such-dist-xyz>=1", "packaging<1"]
    assert error.install_command == 'pip install "no-such-dist-xyz>=1" "packaging<1"'
    assert "not installed" in str(error) and "installed)" in str(error)


def test_requires_core_and_python_are_checked():
    meta = verify.ScriptMetadata((), ">=99", ">=99")
    with pytest.raises(errors.RequirementsError) as caught:
        verify.check_requirements(_info(meta), "/repo/p.py")
    assert caught.value.unmet[0][0] == "pipeyard>=99"
    assert "requires Python >=99" in str(caught.value)


def test_met_requirements_pass():
    verify.check_requirements(_info(verify.ScriptMetadata(("packaging",), ">=3.8", ">=0.1")), "p.py")


def test_without_block_top_level_imports_are_checked_except_optional_ones():
    info = _verify("""
        import os, json
        import PIL.Image
        import not_installed_pkg_abc.sub
        from pipeyard import DiffusionPipeline
        from typing import TYPE_CHECKING
        try:
            import optional_pkg_abc
        except ImportError:
            optional_pkg_abc = None
        if TYPE_CHECKING:
            import typing_only_pkg_abc
        def later():
            import lazy_pkg_abc
        class P(DiffusionPipeline):
            pass
    """)
    with pytest.raises(errors.RequirementsError) as caught:
        verify.check_requirements(info, "/repo/pipeline.py")
    assert [name for name, _ in caught.value.unmet] == ["not_installed_pkg_abc"]
    assert caught.value.install_command == 'pip install "not_installed_pkg_abc"'


def test_checking_requirements_imports_nothing(tmp_path, monkeypatch):
    """diffusers' check_imports imports modules before consent; we only look them up."""
    package = tmp_path / "side_effect_pkg_abc"
    package.mkdir()
    marker = tmp_path / "imported.txt"
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    info = _verify("import side_effect_pkg_abc\nfrom pipeyard import DiffusionPipeline\n"
                   "class P(DiffusionPipeline):\n    pass\n")
    verify.check_requirements(info, "/repo/pipeline.py")
    assert not marker.exists() and "side_effect_pkg_abc" not in sys.modules


@pytest.mark.parametrize(
    ("importer", "level", "module", "names", "first"),
    [
        ("pipeline.py", 1, "helpers", ("x",), "helpers.py"),
        ("pipeline.py", 1, "", ("utils",), "utils.py"),
        ("a/b/c/mod.py", 3, "top", ("y",), "a/top.py"),
    ],
)
def test_relative_import_candidates(importer, level, module, names, first):
    assert next(verify.candidate_files(importer, level, module, names)) == first


def test_relative_import_above_the_package_root_yields_nothing():
    assert list(verify.candidate_files("pipeline.py", 2, "x", ())) == []


def test_dotted_pipeyard_bases_count():
    info = _verify("import pipeyard.pipelines.base\n\nclass P(pipeyard.pipelines.base.DiffusionPipeline):\n    pass\n")
    assert info.class_name == "P"


def test_relative_imports_are_found_in_every_block_in_file_order():
    tree = verify.parse_module(textwrap.dedent("""
        from .a import x
        def f():
            from ..b import y
        class C:
            def m(self):
                if x:
                    from . import c
                else:
                    from . import d
        try:
            from .e import z
        except ImportError:
            from .f import z
        else:
            from .g import w
        finally:
            from .h import v
        match x:
            case 1:
                from .i import u
        print(lambda: __import__("j"))
    """).encode(), "pipeline.py").tree
    assert verify.relative_imports(tree) == [
        (1, "a", ("x",)), (2, "b", ("y",)), (1, "", ("c",)), (1, "", ("d",)), (1, "e", ("z",)),
        (1, "f", ("z",)), (1, "g", ("w",)), (1, "h", ("v",)), (1, "i", ("u",)),
    ]


def test_parsing_is_shared_but_errors_and_warnings_name_each_path():
    data = b"def broken(:\n"
    for path in ("/one/pipeline.py", "/two/pipeline.py"):
        with pytest.raises(errors.PipelineSyntaxError, match=path):
            verify.parse_module(data, path)
    good = b"X = 1\n"
    assert verify.parse_module(good, "/a.py") is verify.parse_module(good, "/a.py")
    with pytest.warns((DeprecationWarning, SyntaxWarning)) as caught:  # 3.11 says Deprecation
        verify.parse_module(b"PATTERN = '\\d+'\n", "/three/pipeline.py")
    assert caught[0].filename == "/three/pipeline.py"


def test_a_syntax_error_in_a_sibling_names_path_line_and_column_only():
    """A sibling module is not the file the caller named: nothing of its text is quoted."""
    with pytest.raises(errors.PipelineSyntaxError) as caught:
        _verify(
            "from pipeyard import DiffusionPipeline\nfrom . import helper\n\nclass P(DiffusionPipeline):\n    pass\n",
            siblings={"helper.py": "x = 1\nSECRET_TOKEN_abc = (\n"},
        )
    error = caught.value
    assert (error.path, error.line, error.column) == ("/repo/helper.py", 2, 20)
    assert error.source_line == "" and error.detail == ""
    assert "SECRET_TOKEN_abc" not in str(error) and "line 2, column 20" in str(error)


def test_a_long_line_of_the_pipeline_file_is_quoted_cut_to_120_characters():
    line = "x = [" + "1, " * 130_000 + "2 3]"  # ~400 KB, the error near its end
    with pytest.raises(errors.PipelineSyntaxError) as caught:
        _verify(f"y = 1\n{line}\n")
    error = caught.value
    assert error.line == 2 and error.column is not None and error.column > 300_000
    assert len(error.source_line) <= 122 and "2 3]" in error.source_line
    assert error.source_line.startswith("…") and len(str(error)) < 500


def test_control_characters_of_a_quoted_line_are_escaped():
    with pytest.raises(errors.PipelineSyntaxError) as caught:
        _verify("x = '\x1b[2J' +\n")
    assert "\x1b" not in str(caught.value) and "\\x1b[2J" in str(caught.value)


def test_a_nul_byte_is_a_syntax_error_with_its_position():
    with pytest.raises(errors.PipelineSyntaxError) as caught:
        _verify(b"x = 1\ny = 2\x00\n")
    assert (caught.value.line, caught.value.column) == (2, 6)
    assert "NUL byte" in str(caught.value)


def test_a_utf8_byte_order_mark_is_accepted_like_python_does():
    data = b"\xef\xbb\xbf# /// script\n# [tool.pipeyard]\n# requires-core = \">=0.1\"\n# ///\n" + textwrap.dedent("""
        from pipeyard import DiffusionPipeline
        class P(DiffusionPipeline):
            pass
    """).encode()
    info = _verify(data)
    assert info.class_name == "P" and info.metadata is not None and info.metadata.requires_core == ">=0.1"
    with pytest.raises(errors.PipelineEncodingError) as caught:
        _verify(b"\xef\xbb\xbf# caf\xe9\n")
    assert caught.value.position == 8  # counted in the file's bytes, the mark included


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('tags = "abc"', "`[tool.pipeyard] tags` must be a list of strings"),
        ("summary = 3", "`[tool.pipeyard] summary` must be a string"),
    ],
)
def test_pep723_values_of_the_wrong_type_are_refused(line, message):
    with pytest.raises(errors.PipelineVerificationError, match=message.replace("[", r"\[")):
        _verify(f"# /// script\n# [tool.pipeyard]\n# requires-core = \">=0.1\"\n# {line}\n# ///\n"
                "from pipeyard import DiffusionPipeline\nclass P(DiffusionPipeline):\n    pass\n")


def test_requires_python_of_the_wrong_type_is_refused():
    with pytest.raises(errors.PipelineVerificationError, match="`requires-python` must be a string"):
        _verify("# /// script\n# requires-python = 3\n# [tool.pipeyard]\n# requires-core = \">=0.1\"\n# ///\n"
                "from pipeyard import DiffusionPipeline\nclass P(DiffusionPipeline):\n    pass\n")


def test_verify_is_composed_of_small_modules_that_import_no_torch():
    import subprocess

    code = ("import sys; import pipeyard.host.verify, pipeyard.host.boundary, pipeyard.host.fetch; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    from pipeyard.host import classes, parse, requirements, script_metadata

    assert verify.parse_module is parse.parse_module and verify.ScriptMetadata is script_metadata.ScriptMetadata
    assert verify.find_pipeline_class is classes.find_pipeline_class
    assert verify.missing_imports is requirements.missing_imports
