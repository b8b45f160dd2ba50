"""What a ``set_timesteps`` call asks for: a step count, or a custom schedule.

diffusers' schedulers take ``num_inference_steps`` or, for some of them, a custom list of
``timesteps`` or ``sigmas`` (what ``retrieve_timesteps`` passes); exactly one of them. The
checks here are shared by the schedulers that accept a custom schedule, and refuse the same
combinations diffusers refuses, with a :class:`~pipeyard.errors.ScheduleRequestError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import errors

#: config options that compute their own sigmas, so they exclude custom timesteps
SIGMA_RAMPS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


def requested_schedule(scheduler: str, num_inference_steps: int | None, **custom: Any) -> str | None:
    """``None`` for a step count, else the name of the one custom schedule given (``"timesteps"``...).

    Raises:
        ScheduleRequestError: none of them, or more than one.
    """
    given = [name for name, value in custom.items() if value is not None]
    choices = " or ".join(["num_inference_steps", *custom])
    if num_inference_steps is not None:
        given.insert(0, "num_inference_steps")
    if len(given) != 1:
        problem = f"got {' and '.join(given)}" if given else f"got none of {choices}"
        raise errors.ScheduleRequestError(scheduler, problem, f"pass exactly one of {choices}")
    return None if given[0] == "num_inference_steps" else given[0]


def refuse_sigma_ramp(scheduler: str, config: Any, what: str = "timesteps") -> None:
    """Custom ``what`` cannot go with a config that computes its own sigma ramp (as in diffusers).

    Raises:
        ScheduleRequestError: naming the option.
    """
    for key in SIGMA_RAMPS:
        if config.get(key):
            raise errors.ScheduleRequestError(
                scheduler, f"custom {what} cannot be used with {key}=True (it sets its own sigmas)",
                f"pass num_inference_steps, or load the scheduler with {key}=False",
            )


def float_list(scheduler: str, what: str, values: Sequence[float]) -> np.ndarray:
    """``values`` as a non-empty 1-d float32 array.

    Raises:
        ScheduleRequestError: empty, or not a flat list of numbers.
    """
    try:
        array = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        array = np.zeros((0, 0), dtype=np.float32)
    if array.ndim != 1 or array.size == 0:
        raise errors.ScheduleRequestError(scheduler, f"{what}={values!r} is not a non-empty list of numbers",
                                          f"pass {what} as a list of numbers, highest first")
    return array


def refuse_flow_options(scheduler: str, mu: float | None = None, sigmas: Sequence[float] | None = None) -> None:
    """``mu`` and (for UniPC) custom ``sigmas`` belong to flow-matching schedules
    (``use_dynamic_shifting`` / ``use_flow_sigmas``), which diffusers also refuses without them
    and pipeyard's SD-family schedulers do not have.

    Raises:
        ScheduleRequestError: naming the argument.
    """
    for what, value in (("mu", mu), ("sigmas", sigmas)):
        if value is not None:
            raise errors.ScheduleRequestError(
                scheduler, f"{what}={value!r} applies only to flow-matching schedules (use_dynamic_shifting / "
                f"use_flow_sigmas), which this scheduler does not implement",
                f"leave {what} unset and pass num_inference_steps",
            )


def custom_solver_timesteps(scheduler: str, config: Any, timesteps: Sequence[int]) -> np.ndarray:
    """Custom timesteps of a DPM-Solver-family scheduler: integers (truncated, as diffusers
    casts them), refused with a sigma ramp or ``use_lu_lambdas``.

    Raises:
        ScheduleRequestError: empty, not numbers, or a config that computes its own sigmas.
    """
    refuse_sigma_ramp(scheduler, config)
    if config.get("use_lu_lambdas"):
        raise errors.ScheduleRequestError(
            scheduler, "custom timesteps cannot be used with use_lu_lambdas=True (it sets its own sigmas)",
            "pass num_inference_steps, or load the scheduler with use_lu_lambdas=False",
        )
    float_list(scheduler, "timesteps", timesteps)  # checks them
    return np.array(timesteps).astype(np.int64)
