"""`pipeyard verify`: the host's checks plus docstring example and test, each finding at file:line."""

from __future__ import annotations

from pathlib import Path

from pipeyard import lint


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _write(checkout: Path, name: str, text: str, with_test: bool = True) -> Path:
    path = checkout / "community" / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    if with_test:
        (checkout / "tests" / f"test_community_{name}.py").write_text("def test_it():\n    pass\n")
    return path


def test_bundled_pipelines_verify_by_name(invoke):
    for name in ("one_step_unet", "clip_guided_stable_diffusion"):
        result = invoke("verify", name)
        assert result.exit_code == 0, result.output
        assert result.output.strip().endswith(f"community/{name}.py: ok")


def test_a_valid_file_with_a_test_passes(invoke, contributor_checkout, community_text):
    path = _write(contributor_checkout, "demo_pipe", community_text())
    result = invoke("verify", path)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{path}: ok"


def test_two_pipeline_classes_are_reported_each_with_its_line(invoke, contributor_checkout, community_text):
    extra = "\n\nclass Second(DemoPipeline):\n    pass\n"
    path = _write(contributor_checkout, "demo_pipe", community_text(body=extra))
    result = invoke("verify", path)
    assert result.exit_code == 1
    assert f"{path}:{_line_of(path, 'class DemoPipeline')}: error: DemoPipeline is one of 2" in result.output
    assert f"{path}:{_line_of(path, 'class Second')}: error: Second is one of 2" in result.output
    assert "1 error(s)" not in result.output and "2 error(s), 0 warning(s)" in result.output
    assert "Traceback" not in result.output


def test_syntax_error_is_reported_at_its_line(invoke, contributor_checkout, community_text):
    path = _write(contributor_checkout, "demo_pipe", community_text(body="\ndef broken(:\n    pass\n"))
    result = invoke("verify", path)
    assert result.exit_code == 1
    assert f"{path}:{_line_of(path, 'def broken(')}: error: syntax error" in result.output


def test_missing_script_block_docstring_example_and_test_are_errors(invoke, contributor_checkout, pipeline_text):
    path = _write(contributor_checkout, "bare", pipeline_text("BarePipeline"), with_test=False)
    findings = lint.lint_pipeline_file(path)
    messages = [(f.line, f.severity, f.message.split(":")[0]) for f in findings]
    assert (1, "error", "no PEP 723 `# /// script` block") in messages
    assert (1, "error", "no module docstring") in messages
    assert any(f.message.startswith("no test found for 'bare'") for f in findings)
    result = invoke("verify", path)
    assert result.exit_code == 1 and "3 error(s)" in result.output


def test_docstring_without_usage_example_is_an_error(invoke, contributor_checkout, community_text):
    text = community_text().replace("Usage::\n\n    pipe = DiffusionPipeline.from_pretrained(\"some/model\", "
                                    "custom_pipeline=\"demo_pipe\")\n", "No example here.\n")
    path = _write(contributor_checkout, "demo_pipe", text)
    result = invoke("verify", path)
    assert result.exit_code == 1
    line = _line_of(path, '"""A test pipeline.')
    assert f"{path}:{line}: error: the module docstring has no usage example" in result.output


def test_unmet_requirements_point_at_the_script_block(invoke, contributor_checkout, community_text):
    path = _write(contributor_checkout, "demo_pipe", community_text(dependencies='["surely-not-installed-pkg>=1"]'))
    result = invoke("verify", path)
    assert result.exit_code == 1
    assert f"{path}:1: error: unmet requirements: surely-not-installed-pkg>=1 (not installed)" in result.output
    assert 'pip install "surely-not-installed-pkg>=1"' in result.output


def test_missing_summary_and_tags_are_warnings_only(invoke, contributor_checkout, community_text):
    text = community_text().replace('# summary = "A test pipeline."\n', "").replace('# tags = ["test"]\n', "")
    path = _write(contributor_checkout, "demo_pipe", text)
    result = invoke("verify", path)
    assert result.exit_code == 0, result.output
    assert "warning: `[tool.pipeyard]` has no `summary`" in result.output
    assert result.output.strip().endswith("ok (2 warning(s))")


def test_how_a_test_is_found(contributor_checkout, community_text):
    tests = contributor_checkout / "tests"
    assert lint.find_tests("demo_pipe", tests) == []
    (tests / "test_pipelines_demo.py").write_text('custom_pipeline = "other"\nx(custom_pipeline="demo_pipe")\n')
    assert lint.find_tests("demo_pipe", tests) == [tests / "test_pipelines_demo.py"]
    (tests / "community").mkdir()
    (tests / "community" / "test_demo_pipe.py").write_text("")
    assert lint.find_tests("demo_pipe", tests)[0] == tests / "community" / "test_demo_pipe.py"
    assert lint.find_tests("demo", tests) == []  # a prefix of another name does not count


def test_no_test_check_and_a_folder_with_pipeline_py(invoke, tmp_path, community_text):
    folder = tmp_path / "hub-repo"
    folder.mkdir()
    (folder / "pipeline.py").write_text(community_text(name="alice/pipe"))
    assert invoke("verify", folder).exit_code == 1  # no tests/ next to it
    result = invoke("verify", folder, "--no-test-check")
    assert result.exit_code == 0, result.output


def test_unknown_name_prints_one_line_and_exits_1(invoke):
    result = invoke("verify", "no_such_pipeline")
    assert result.exit_code == 1
    assert result.output.startswith("PipelineNotFoundError: custom pipeline 'no_such_pipeline' was not found")
    assert len(result.output.strip().splitlines()) == 1


def test_a_bundled_name_in_an_installed_pipeyard_skips_the_test_check(invoke, tmp_path, monkeypatch, community_text):
    import pipeyard._bundled

    installed = tmp_path / "site-packages" / "pipeyard" / "_bundled" / "community"
    installed.mkdir(parents=True)
    (installed / "demo_pipe.py").write_text(community_text())
    monkeypatch.setattr(pipeyard._bundled, "bundled_dir", lambda kind: installed)
    result = invoke("verify", "demo_pipe")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"note: {installed.parent / 'tests'} does not exist")
    assert invoke("verify", installed / "demo_pipe.py").exit_code == 1  # a path keeps the check


def test_a_syntax_error_two_imports_deep_fails_verify_as_it_fails_the_host(invoke, contributor_checkout, community_text):
    """verify collects the package with the host's own functions, not a parse of its own."""
    community = contributor_checkout / "community"
    path = _write(contributor_checkout, "demo_pipe", community_text(body="\nfrom ._shared import first\n"))
    (community / "_shared").mkdir()
    (community / "_shared" / "__init__.py").write_text("")
    (community / "_shared" / "first.py").write_text("from .second import VALUE\n")
    (community / "_shared" / "second.py").write_text("VALUE = 1\nSECRET_TOKEN_abc = = 2\n")
    result = invoke("verify", path)
    assert result.exit_code == 1, result.output
    assert f"{community / '_shared' / 'second.py'}:2: error: syntax error at column" in result.output
    assert "SECRET_TOKEN_abc" not in result.output


def test_a_file_with_a_utf8_byte_order_mark_passes(invoke, contributor_checkout, community_text):
    path = _write(contributor_checkout, "demo_pipe", community_text())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    result = invoke("verify", path)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{path}: ok"


def test_only_errors_fail_a_check():
    findings = [lint.Finding("p.py", 1, lint.WARNING, "w"), lint.Finding("p.py", 2, lint.ERROR, "e")]
    assert lint.error_findings(findings) == [findings[1]]
    assert lint.error_findings(findings[:1]) == []
