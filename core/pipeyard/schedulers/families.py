"""``KarrasDiffusionSchedulers``: the scheduler names of the Stable Diffusion family, as an enum.

Pipelines written for diffusers use it in type hints (``scheduler: KarrasDiffusionSchedulers``)
and to list compatible classes (``[e.name for e in KarrasDiffusionSchedulers]``). Members and
values are diffusers' own, so code comparing them sees the same thing; two members
(``DPMSolverSDEScheduler``, ``EDMEulerScheduler``) name schedulers pipeyard does not have yet.
"""

from __future__ import annotations

from enum import Enum


class KarrasDiffusionSchedulers(Enum):
    """Schedulers that can drive a Stable Diffusion (Karras-style) pipeline, by class name."""

    DDIMScheduler = 1
    DDPMScheduler = 2
    PNDMScheduler = 3
    LMSDiscreteScheduler = 4
    EulerDiscreteScheduler = 5
    HeunDiscreteScheduler = 6
    EulerAncestralDiscreteScheduler = 7
    DPMSolverMultistepScheduler = 8
    DPMSolverSinglestepScheduler = 9
    KDPM2DiscreteScheduler = 10
    KDPM2AncestralDiscreteScheduler = 11
    DEISMultistepScheduler = 12
    UniPCMultistepScheduler = 13
    DPMSolverSDEScheduler = 14
    EDMEulerScheduler = 15
