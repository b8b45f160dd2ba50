"""``pipeyard trust add | list | remove``: the trust store, over :mod:`pipeyard.trust`. No torch."""

from __future__ import annotations

from pathlib import Path

import click


def digest_of(sha_or_file: str) -> str:
    """A sha256 as given, or the digest a load of a local pipeline file asks the trust gate
    about (the file and the siblings it imports: :func:`pipeyard.host.local_package_digest`).

    Raises:
        LocalPathError: a value that can only be a path names no file.
    """
    path = Path(sha_or_file).expanduser()
    if path.is_file():
        from ..host import local_package_digest

        return local_package_digest(path)
    if "/" in sha_or_file or "\\" in sha_or_file or sha_or_file.endswith(".py") or path.exists():
        from ..errors import LocalPathError

        raise LocalPathError(sha_or_file, "pipeline file to trust")
    return sha_or_file


@click.group("trust")
def trust_group() -> None:
    """Manage the pipeline contents you agreed to run (PIPEYARD_HOME/trust.json)."""


@trust_group.command("add")
@click.argument("sha_or_file")
@click.option("--source", default="", help="A note: where the code comes from (e.g. the repo id).")
def add(sha_or_file: str, source: str) -> None:
    """Trust a sha256 (as printed by UntrustedCodeError), or the content of a local file.

    Read the code first: trusting a digest lets that exact content run without asking.
    """
    from .. import trust

    entry = trust.add(digest_of(sha_or_file), source=source)
    click.echo(f"trusted {entry.sha256}" + (f" ({entry.source})" if entry.source else ""))


@trust_group.command("list")
def list_trust() -> None:
    """Every trusted sha256, with its note and when it was added."""
    from .. import trust

    entries = trust.list()
    for entry in entries:
        click.echo(f"{entry.sha256}  {entry.added}  {entry.source}".rstrip())
    click.echo(f"{len(entries)} trusted digest(s) in {trust.path()}")


@trust_group.command("remove")
@click.argument("sha_or_file")
def remove(sha_or_file: str) -> None:
    """Stop trusting a sha256 (or a local file's content)."""
    from .. import trust

    digest = digest_of(sha_or_file)
    removed = trust.remove(digest)
    click.echo(f"{'removed' if removed else 'was not trusted:'} {digest.strip().lower()}")
