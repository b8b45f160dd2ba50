"""diffusers' community mirror: which folder a name is read from, and which files pipeyard pinned.

diffusers publishes its community pipelines as a Hub *dataset*,
``diffusers/community-pipelines-mirror`` (``PIPEYARD_DIFFUSERS_MIRROR`` names another, a
mirror of the mirror), with one folder per diffusers release and one for its main branch::

    v0.42.1/stable_diffusion_repaint.py
    v0.42.1/lpw_stable_diffusion.py
    ...
    main/stable_diffusion_repaint.py

A community name pipeyard does not bundle is read from ``v<DIFFUSERS_VERSION>/`` (the release
:mod:`pipeyard.compat` follows), or from the folder ``custom_revision`` picks, as diffusers
does: a release number (``"0.41.0"`` -> ``v0.41.0/``) or ``"main"``.

Unlike diffusers, where a community name runs without ``trust_remote_code``, a mirror file is
remote code like any other and passes the one trust gate (:mod:`pipeyard.host.gate`). The one
extra rule: ``registry/hub.toml`` may *pin* a reviewed mirror file by name and sha256
(``[[mirror]]`` tables, copied into ``index.json`` by ``pipeyard registry build``); a fetched
file with that name and exactly that sha256 needs no flag. Another sha256 at the same path is
not the reviewed file and is refused like any unreviewed code.

Nothing here touches the network (:mod:`pipeyard.host.fetch` reads the files).
"""

from __future__ import annotations

import re
from typing import Any

#: A diffusers release number, as ``custom_revision`` gives it (``0.42.1``, ``0.30.0``).
_RELEASE = re.compile(r"^\d+\.\d+\.\d+$")
#: The folder of diffusers' development branch.
MAIN_FOLDER = "main"


def default_folder() -> str:
    """``v`` + the diffusers release :mod:`pipeyard.compat` targets (``v0.42.1``)."""
    from ..compat import DIFFUSERS_VERSION

    return f"v{DIFFUSERS_VERSION}"


def mirror_folder(revision: str | None) -> str | None:
    """The mirror folder ``custom_revision`` picks, or None when it is no mirror revision.

    None -> :func:`default_folder`; a release number ``X.Y.Z`` -> ``vX.Y.Z``; ``main`` ->
    ``main``. Anything else (a branch, tag or commit) names a revision of pipeyard's own GitHub
    ``community/`` folder instead.
    """
    if revision is None:
        return default_folder()
    if revision == MAIN_FOLDER:
        return MAIN_FOLDER
    if _RELEASE.match(revision):
        return f"v{revision}"
    return None


def pinned_entries() -> dict[str, dict[str, Any]]:
    """Name -> the ``mirror`` entry of the bundled ``registry/index.json`` (none: ``{}``)."""
    from .resolve import bundled_index

    return {entry["name"]: entry for entry in bundled_index().get("mirror", [])}


def pinned_digest(name: str) -> str | None:
    """The sha256 pipeyard's registry pins for mirror name ``name``, if any."""
    entry = pinned_entries().get(name)
    return entry["sha256"] if entry else None


def is_pinned(name: str, digest: str) -> bool:
    """True when ``digest`` is exactly the reviewed content pinned for ``name``."""
    return pinned_digest(name) == digest
