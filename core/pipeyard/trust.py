"""Your trust store: the custom-pipeline contents you agreed to run.

A pipeline that is not bundled with pipeyard, not a local path you named and not installed
runs only when its digest is here (or with ``trust_remote_code=True``). The digest is what
:class:`~pipeyard.errors.UntrustedCodeError` prints: the sha256 of the pipeline file (of its
manifest when it imports sibling modules). Trusting a digest trusts that exact content, not a
repo: a new commit with other content is asked about again.

The store is ``PIPEYARD_HOME/trust.json``; edits are atomic and locked.

Example:
    >>> import pipeyard.trust
    >>> pipeyard.trust.add("3f4c...e1", source="alice/fancy-pipe")   # doctest: +SKIP
    >>> [entry.sha256 for entry in pipeyard.trust.list()]            # doctest: +SKIP
    ['3f4c...e1']
    >>> pipeyard.trust.remove("3f4c...e1")                           # doctest: +SKIP
    True
"""

from __future__ import annotations

import builtins

from .host.trust_store import TrustEntry, add_trusted, list_trusted, remove_trusted, trust_file

__all__ = ["TrustEntry", "add", "list", "path", "remove"]


def add(sha256: str, *, source: str = "") -> TrustEntry:
    """Trust the content with this sha256; ``source`` is a note for you (e.g. the repo id).

    Raises:
        InvalidPipelineNameError: ``sha256`` is not 64 hexadecimal digits.
        TrustStoreError: the store file is damaged (it is not rewritten).
        PipeyardHomeError: ``PIPEYARD_HOME`` cannot be written.
    """
    return add_trusted(sha256, source)


def remove(sha256: str) -> bool:
    """Stop trusting this sha256; True when it was trusted."""
    return remove_trusted(sha256)


def list() -> builtins.list[TrustEntry]:  # noqa: A001 - the documented public name
    """Every trusted entry, sorted by sha256."""
    return list_trusted()


def path() -> str:
    """The trust store file (it may not exist yet)."""
    return str(trust_file())
