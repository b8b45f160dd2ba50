"""The source checkout that ``new`` and ``registry build|check`` work in.

All three mean the same folders: ``ROOT/community`` (the pipeline files), ``ROOT/tests``,
``ROOT/registry/index.json`` and ``ROOT/registry/hub.toml``, where ``ROOT`` is ``--root``
(default: the current folder). Outside a checkout they refuse rather than write into the
installed package. No torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from .. import errors

#: The ``--root`` option shared by the contributor commands.
root_option = click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
    help="The source checkout holding community/, registry/ and tests/.",
)


@dataclass(frozen=True)
class Checkout:
    """The folders of a source checkout rooted at ``root``."""

    root: Path

    @property
    def community(self) -> Path:
        return self.root / "community"

    @property
    def tests(self) -> Path:
        return self.root / "tests"

    @property
    def index(self) -> Path:
        return self.root / "registry" / "index.json"

    @property
    def hub_file(self) -> Path:
        return self.root / "registry" / "hub.toml"


def find_checkout(root: Path, *, registry: bool) -> Checkout:
    """``root`` as a checkout; ``registry=True`` also needs its ``registry/`` folder.

    Raises:
        CheckoutNotFoundError: a folder the command would read or write is missing.
    """
    checkout = Checkout(root)
    if not checkout.community.is_dir():
        raise errors.CheckoutNotFoundError(str(root), "community/ folder")
    if registry and not checkout.index.parent.is_dir():
        raise errors.CheckoutNotFoundError(str(root), "registry/ folder")
    return checkout


def root_flag(root: Path) -> str:
    """`` --root ROOT`` for printed follow-up commands, empty for the current folder."""
    return "" if root == Path(".") else f" --root {root}"
