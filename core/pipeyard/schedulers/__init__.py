"""Noise schedulers of the Stable Diffusion ecosystem, numerically equal to diffusers'.

One algorithm per module; ``common`` holds what they share (``SchedulerMixin``,
``SchedulerOutput``, beta schedules, karras sigmas, sigma <-> timestep interpolation).
Every class is also reachable as ``pipeyard.<Name>`` and can be built from any other's
config: ``EulerDiscreteScheduler.from_config(pipe.scheduler.config)``.

Nothing is imported eagerly: ``import pipeyard.schedulers`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY_NAMES: dict[str, str] = {
    "DDIMScheduler": "ddim",
    "DDPMScheduler": "ddpm",
    "DEISMultistepScheduler": "deis_multistep",
    "DPMSolverMultistepScheduler": "dpmsolver_multistep",
    "DPMSolverSinglestepScheduler": "dpmsolver_singlestep",
    "EulerAncestralDiscreteScheduler": "euler_ancestral_discrete",
    "EulerDiscreteScheduler": "euler_discrete",
    "HeunDiscreteScheduler": "heun_discrete",
    "KDPM2AncestralDiscreteScheduler": "kdpm2_ancestral_discrete",
    "KDPM2DiscreteScheduler": "kdpm2_discrete",
    "LMSDiscreteScheduler": "lms_discrete",
    "PNDMScheduler": "pndm",
    "SchedulerMixin": "common",
    "SchedulerOutput": "common",
    "UniPCMultistepScheduler": "unipc_multistep",
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


if TYPE_CHECKING:  # pragma: no cover
    from .common import SchedulerMixin, SchedulerOutput
    from .ddim import DDIMScheduler
    from .ddpm import DDPMScheduler
    from .deis_multistep import DEISMultistepScheduler
    from .dpmsolver_multistep import DPMSolverMultistepScheduler
    from .dpmsolver_singlestep import DPMSolverSinglestepScheduler
    from .euler_ancestral_discrete import EulerAncestralDiscreteScheduler
    from .euler_discrete import EulerDiscreteScheduler
    from .heun_discrete import HeunDiscreteScheduler
    from .kdpm2_ancestral_discrete import KDPM2AncestralDiscreteScheduler
    from .kdpm2_discrete import KDPM2DiscreteScheduler
    from .lms_discrete import LMSDiscreteScheduler
    from .pndm import PNDMScheduler
    from .unipc_multistep import UniPCMultistepScheduler
