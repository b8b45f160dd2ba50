"""Heun: the second-order ODE sampler of Karras et al. 2022 (Alg. 1, arXiv:2206.00364).

Each step takes two model evaluations, so ``timesteps`` lists every timestep but the first
twice: the first call makes an Euler prediction, the second corrects it with the mean slope.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..configuration import register_to_config
from .common import (
    BASE_BETA_SCHEDULES,
    PREDICTION_TYPES,
    TIMESTEP_SPACINGS,
    SchedulerOutput,
    SigmaSchedulerMixin,
    check_num_inference_steps,
    doubled_after_first,
)
from .schedule_requests import float_list, refuse_sigma_ramp, requested_schedule


class HeunDiscreteScheduler(SigmaSchedulerMixin):
    """Heun's method (explicit trapezoid) on ``dx/dsigma = (x - x0) / sigma``."""

    order = 2

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "linear",
        trained_betas: Sequence[float] | np.ndarray | None = None,
        prediction_type: str = "epsilon",
        use_karras_sigmas: bool | None = False,
        use_exponential_sigmas: bool | None = False,
        use_beta_sigmas: bool | None = False,
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
    ) -> None:
        self._check_choices(prediction_type=PREDICTION_TYPES, timestep_spacing=TIMESTEP_SPACINGS)
        self._check_unsupported("use_beta_sigmas")
        self._init_noise_schedule(
            num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
            beta_schedules=(*BASE_BETA_SCHEDULES, "exp"),
        )
        self.set_timesteps(num_train_timesteps)  # step() works before set_timesteps, as in diffusers

    def _reset_state(self) -> None:
        self.prev_derivative: torch.Tensor | None = None
        self.dt: float | None = None
        self.sample: torch.Tensor | None = None

    @property
    def state_in_first_order(self) -> bool:
        """True when the next call is the Euler (predictor) half of a step."""
        return self.dt is None

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        num_train_timesteps: int | None = None,
        timesteps: Sequence[float] | None = None,
    ) -> None:
        """Timesteps and sigmas, each after the first doubled for the corrector evaluation.

        Args:
            num_train_timesteps: the training length the spacing divides (default: the config's).
            timesteps: custom training timesteps, highest first, instead of ``num_inference_steps``.

        Raises:
            ScheduleRequestError: not exactly one of ``num_inference_steps`` and ``timesteps``, or
                custom timesteps with a sigma ramp.
            InferenceStepsError: ``num_inference_steps`` outside ``[1, num_train_timesteps]``.
        """
        name = type(self).__name__
        if requested_schedule(name, num_inference_steps, timesteps=timesteps) == "timesteps":
            refuse_sigma_ramp(name, self.config)
            grid = float_list(name, "timesteps", timesteps)  # type: ignore[arg-type]
            n = len(grid)
            timesteps, sigmas = self._inference_sigmas(n, timesteps=grid)
        else:
            n = check_num_inference_steps(name, num_inference_steps, self.config.num_train_timesteps)
            timesteps, sigmas = self._inference_sigmas(n, num_train_timesteps=num_train_timesteps)
        sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
        self._install_sigmas(torch.cat([doubled_after_first(sigmas[:-1]), sigmas[-1:]]))
        # first half: dt = sigma_next - sigma, kept for the second half
        self._dt = (self.sigmas[1:] - self.sigmas[:-1]).tolist()
        timesteps = doubled_after_first(torch.from_numpy(np.asarray(timesteps)))
        self._set_schedule(timesteps.to(device=device, dtype=torch.float32), n)
        self._reset_state()

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor, ...]:
        """Predictor (Euler) on the first call of a pair, corrector (mean slope) on the second."""
        i = self._advance_index(timestep)
        self._check_output_shape(model_output, sample)
        first_order = self.state_in_first_order
        # sigma of the model evaluation: sigma_i (predictor) or sigma_{i+1} (corrector); both sigmas[i]
        sigma_eval = self._sigmas_list[i]

        # 1. x0 at the evaluation point, clipped if asked
        x0 = self._predict_x0(model_output, sample, sigma_eval, i)
        if self.config.clip_sample:
            x0 = x0.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)

        # 2. slope d = (x - x0) / sigma at the evaluation point
        d = (sample - x0) / sigma_eval
        if first_order:  # 3a. Euler predictor: remember d, dt and x_i
            self.prev_derivative, self.dt, self.sample = d, self._dt[i], sample
            prev_sample = sample + d * self.dt
        else:  # 3b. trapezoid corrector from x_i with the mean slope
            d = (self.prev_derivative + d) / 2
            prev_sample = self.sample + d * self.dt
            self._reset_state()
        self._step_index = i + 1
        if not return_dict:
            return (prev_sample, x0)
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
