"""Read, build and check ``registry/index.json``, the index of the bundled community pipelines.

The index is generated from ``community/*.py`` by :func:`build_index` (``scripts/build_registry.py``
writes it) and shipped inside the wheel next to the files. One entry per file::

    {"name": "one_step_unet", "file": "one_step_unet.py",
     "class": "UnetSchedulerOneForwardPipeline", "sha256": "...", "summary": "...",
     "tags": [...], "dependencies": [...], "requires-python": ">=3.10", "requires-core": ">=0.1"}

Every file is verified as the host would (:func:`pipeyard.host.verify.verify_package`) and must
carry a PEP 723 block with ``[tool.pipeyard] requires-core``; :func:`stale_entries` tells a test
when the committed index no longer matches ``community/``. The host trusts a community file
fetched at another revision only when its sha256 equals an entry here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from . import errors

INDEX_VERSION = 1


def _entry(path: Path) -> dict[str, Any]:
    """The index entry of one community file (verified, nothing executed)."""
    from .host.verify import verify_package

    data = path.read_bytes()
    info = verify_package({path.name: data}, path.name, str(path.parent))
    if info.metadata is None:
        raise errors.PipelineVerificationError(
            str(path), "a community pipeline needs a `# /// script` block with [tool.pipeyard] requires-core"
        )
    meta = info.metadata
    doc_lines = (info.docstring or "").strip().splitlines()
    summary = meta.summary or (doc_lines[0] if doc_lines else "")
    return {
        "name": path.stem,
        "file": path.name,
        "class": info.class_name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "summary": summary,
        "tags": sorted(meta.tags),
        "dependencies": list(meta.dependencies),
        "requires-python": meta.requires_python,
        "requires-core": meta.requires_core,
    }


def build_index(community: Path | None = None) -> dict[str, Any]:
    """The index for every ``*.py`` file of ``community`` (default: the bundled folder)."""
    from ._bundled import bundled_dir

    folder = community or bundled_dir("community")
    entries = [_entry(path) for path in sorted(folder.glob("*.py")) if not path.name.startswith("_")]
    return {"version": INDEX_VERSION, "pipelines": entries}


def render_index(index: dict[str, Any]) -> str:
    """The exact text written to ``index.json`` (stable, so staleness is a text comparison)."""
    return json.dumps(index, indent=2, sort_keys=False) + "\n"


def index_path() -> Path:
    from ._bundled import bundled_dir

    return bundled_dir("registry") / "index.json"


def read_index(path: Path | None = None) -> dict[str, Any]:
    """The committed index."""
    return json.loads((path or index_path()).read_text(encoding="utf-8"))


def stale_entries(community: Path | None = None, path: Path | None = None) -> list[str]:
    """Names whose committed entry differs from what :func:`build_index` makes now."""
    built = {e["name"]: e for e in build_index(community)["pipelines"]}
    committed = {e["name"]: e for e in read_index(path).get("pipelines", [])}
    return sorted(name for name in built.keys() | committed.keys() if built.get(name) != committed.get(name))


def write_index(community: Path | None = None, path: Path | None = None) -> Path:
    """Regenerate ``index.json`` from ``community/``; return its path."""
    target = path or index_path()
    target.write_text(render_index(build_index(community)), encoding="utf-8")
    return target
