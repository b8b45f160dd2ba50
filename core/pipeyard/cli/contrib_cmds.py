"""``pipeyard verify`` and ``pipeyard new``: the contributor's workflow. No torch."""

from __future__ import annotations

from pathlib import Path

import click

from .. import errors
from .checkout import find_checkout, root_flag, root_option


def pipeline_file(file_or_name: str) -> Path:
    """A ``.py`` path, a folder holding ``pipeline.py``, or the name of a bundled community file.

    Raises:
        PipelineNotFoundError: none of the three.
    """
    from .._bundled import bundled_dir

    path = Path(file_or_name).expanduser()
    if path.is_file():
        return path
    if path.is_dir() and (path / "pipeline.py").is_file():
        return path / "pipeline.py"
    bundled = bundled_dir("community") / f"{file_or_name}.py"
    if "/" not in file_or_name and bundled.is_file():
        return bundled
    raise errors.PipelineNotFoundError(file_or_name, [
        f"local file {file_or_name!r}: no such file",
        f"local folder {file_or_name!r} with pipeline.py: none",
        f"bundled community pipeline {file_or_name!r}: no community/{file_or_name}.py",
    ])


@click.command()
@click.argument("file_or_name")
@click.option("--tests-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where its test should be (default: tests/ next to community/, else next to the file).")
@click.option("--no-test-check", is_flag=True, help="Skip the 'a test exists' check (e.g. for a Hub pipeline).")
def verify(file_or_name: str, tests_dir: Path | None, no_test_check: bool) -> None:
    """Lint a pipeline file: the host's checks, a docstring usage example, a test.

    Prints each finding as FILE:LINE: severity: message; exits 1 when any is an error.
    """
    from ..lint import default_tests_dir, error_findings, lint_pipeline_file

    path = pipeline_file(file_or_name)
    check_tests = not no_test_check
    if check_tests and tests_dir is None and not default_tests_dir(path).is_dir() and path.stem == file_or_name:
        click.echo(f"note: {default_tests_dir(path)} does not exist (an installed pipeyard); test check skipped")
        check_tests = False
    findings = lint_pipeline_file(path, tests_dir, check_tests=check_tests)
    for finding in findings:
        click.echo(str(finding))
    failed = len(error_findings(findings))
    warned = len(findings) - failed
    if failed:
        click.echo(f"{path}: {failed} error(s), {warned} warning(s)", err=True)
        click.get_current_context().exit(1)
    click.echo(f"{path}: ok" + (f" ({warned} warning(s))" if warned else ""))


@click.command()
@click.argument("name")
@root_option
def new(name: str, root: Path) -> None:
    """Scaffold ROOT/community/NAME.py and ROOT/tests/community/test_NAME.py (they pass verify and pytest)."""
    from .scaffold import write_scaffold

    find_checkout(root, registry=False)
    scaffold = write_scaffold(name, root)
    click.echo(f"wrote {scaffold.pipeline} (class {scaffold.class_name})")
    click.echo(f"wrote {scaffold.test}")
    click.echo("next: edit both, then")
    click.echo(f"  pipeyard verify {scaffold.pipeline}")
    click.echo(f"  pytest {scaffold.test}")
    click.echo(f"  pipeyard registry build{root_flag(root)}   # adds it to registry/index.json")
