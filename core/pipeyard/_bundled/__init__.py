"""Where the files bundled with pipeyard live: ``community/`` pipelines and ``registry/``.

Two layouts exist, and both are looked up explicitly:

* an installed wheel carries them as ``pipeyard/_bundled/community/`` and
  ``pipeyard/_bundled/registry/`` (``[tool.setuptools] package-dir`` in ``pyproject.toml``);
* a source checkout (and an editable install of it) has them at the repository's top level,
  next to ``core/``.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_CHECKOUT_ROOT = _HERE.parents[2]  # core/pipeyard/_bundled -> repository root


def bundled_dir(kind: str) -> Path:
    """The folder holding bundled ``kind`` files (``"community"`` or ``"registry"``).

    Raises:
        FileNotFoundError: neither layout has the folder (a broken installation).
    """
    if kind not in ("community", "registry"):
        raise ValueError(f"unknown bundled folder {kind!r}: expected 'community' or 'registry'")
    installed = _HERE / kind
    if installed.is_dir():
        return installed
    checkout = _CHECKOUT_ROOT / kind
    if checkout.is_dir() and (_CHECKOUT_ROOT / "pyproject.toml").is_file():
        return checkout
    raise FileNotFoundError(
        f"pipeyard's bundled {kind}/ folder is missing (looked in {installed} and {checkout}); "
        f"reinstall pipeyard"
    )
