"""Noise schedulers of the Stable Diffusion ecosystem, numerically equal to diffusers'.

One algorithm per module; ``common`` holds what they share (``SchedulerMixin``,
``SchedulerOutput``, beta schedules, karras sigmas, sigma <-> timestep interpolation).
Every class is also reachable as ``pipeyard.<Name>`` and can be built from any other's
config: ``EulerDiscreteScheduler.from_config(pipe.scheduler.config)``.

Nothing is imported eagerly: ``import pipeyard.schedulers`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..names import SCHEDULERS as _SCHEDULERS
from ..names import STANDALONE_SCHEDULERS as _STANDALONE

# name -> module of this package: every scheduler of pipeyard.names, the shared base, outputs.
_LAZY_NAMES: dict[str, str] = {
    **{name: module.rpartition(".")[2] for name, module in {**_SCHEDULERS, **_STANDALONE}.items()},
    "KarrasDiffusionSchedulers": "families",
    "LCMSchedulerOutput": "lcm",
    "RePaintSchedulerOutput": "repaint",
    "SchedulerMixin": "common",
    "SchedulerOutput": "common",
}

__all__ = sorted(_LAZY_NAMES)


def __getattr__(name: str) -> Any:
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pipeyard.schedulers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES})
