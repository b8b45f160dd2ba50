"""``is_*_available``: which optional libraries a pipeline may use alongside pipeyard.

Pipelines written for diffusers branch on these. Each answers without importing the library.
``is_torch_xla_available`` is always False: pipeyard does not run on XLA devices, so such
pipelines take their plain-torch path.
"""

from __future__ import annotations

import importlib.util


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def is_torch_available() -> bool:
    return _installed("torch")


def is_transformers_available() -> bool:
    return _installed("transformers")


def is_accelerate_available() -> bool:
    return _installed("accelerate")


def is_torch_xla_available() -> bool:
    """False: pipeyard's runtime has no XLA support, whatever is installed."""
    return False
