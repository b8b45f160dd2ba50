"""``pipeyard cache list | verify | clear``: the module store under ``PIPEYARD_HOME/modules``. No torch."""

from __future__ import annotations

import click

from .. import errors


def _size(stored) -> int:
    return sum(stored.root.joinpath(*name.split("/")).stat().st_size for name in stored.files)


@click.group("cache")
def cache_group() -> None:
    """Inspect, check or empty the custom-pipeline module store."""


@cache_group.command("list")
def list_cache() -> None:
    """Every stored pipeline package: digest, main file, file count, size."""
    from ..host import cache

    packages = cache.list_packages()
    if not packages:
        click.echo(f"module store {cache.modules_dir()} is empty")
    for digest, stored in packages:
        if stored is None:
            click.echo(f"{digest}  (incomplete or damaged manifest)")
            continue
        click.echo(f"{digest}  {stored.main:<24} {len(stored.files)} file(s)  {_size(stored)} bytes")
    if packages:
        click.echo(f"{len(packages)} package(s) in {cache.modules_dir()}")
    refused = cache.review_digests()
    if refused:
        click.echo(f"{len(refused)} refused package(s) kept to read in {cache.review_dir()} (never imported)")


@cache_group.command("verify")
def verify_cache() -> None:
    """Re-hash every stored file against its manifest; exit 1 when any was changed or is incomplete."""
    from ..host import cache

    bad = 0
    packages = cache.list_packages()
    for digest, stored in packages:
        try:
            ok = stored is not None and cache.load_package(digest, check=True) is not None
            click.echo(f"{digest}  {'ok' if ok else 'incomplete: no manifest'}")
        except errors.PipelineVerificationError as exc:
            ok = False
            click.echo(f"{digest}  CHANGED: {exc.reason}")
        bad += not ok
    click.echo(f"{len(packages) - bad} of {len(packages)} package(s) ok")
    if bad:
        click.get_current_context().exit(1)


@cache_group.command("clear")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def clear_cache(yes: bool) -> None:
    """Delete every stored package, review copy and resolution record (fetched again when needed)."""
    from ..host import cache

    if not yes:
        click.confirm(f"Delete every package in {cache.modules_dir()}?", abort=True)
    click.echo(f"removed {cache.clear_store()} package(s)")
