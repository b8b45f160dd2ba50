"""DDPM: ancestral sampling of the learned reverse process (Ho et al. 2020, arXiv:2006.11239)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from .. import errors
from ..configuration import register_to_config
from ..torch_utils import randn_tensor
from .common import (
    PREDICTION_TYPES,
    TIMESTEP_SPACINGS,
    AlphaBarNoiseMixin,
    SchedulerMixin,
    SchedulerOutput,
    check_choice,
    check_num_inference_steps,
    predict_x0,
    spaced_timesteps,
    threshold_sample,
)

VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range")
DDPM_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "laplace")


class _DDPMStep(NamedTuple):
    """The scalars of one DDPM step (float32 values, as Python floats)."""

    t: int
    prev_t: int
    sqrt_alpha_bar: float
    sqrt_beta_bar: float
    x0_coeff: float
    xt_coeff: float
    noise_std: float
    log_beta_tilde: float
    log_beta: float


def _custom_timesteps(scheduler: str, timesteps: Sequence[int], num_train: int) -> np.ndarray:
    """``timesteps`` as int64, checked: not empty, strictly descending, within ``[0, num_train)``."""
    values = [int(t) for t in timesteps]
    if not values or any(b >= a for a, b in zip(values, values[1:])):
        raise errors.ScheduleRequestError(scheduler, f"timesteps {values} are not strictly descending", "sort them, highest first")
    if values[0] >= num_train or values[-1] < 0:
        raise errors.ScheduleRequestError(
            scheduler, f"timesteps {values} leave the training range 0 to {num_train - 1}", "keep every timestep in that range"
        )
    return np.array(values, dtype=np.int64)


def _training_timestep(timestep: int | torch.Tensor, num_train: int) -> int | None:
    """``timestep`` as an int in ``[0, num_train)``, or None if it is not one."""
    key = timestep.item() if isinstance(timestep, torch.Tensor) and timestep.numel() == 1 else timestep
    if isinstance(key, bool) or not isinstance(key, (int, float, np.integer, np.floating)):
        return None
    if key != int(key) or not 0 <= key < num_train:
        return None
    return int(key)


class DDPMScheduler(AlphaBarNoiseMixin, SchedulerMixin):
    """Denoising diffusion probabilistic models: one stochastic reverse step per timestep.

    Example::

        scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
        scheduler.set_timesteps(50)
    """

    order = 1
    custom_timesteps = False

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Sequence[float] | np.ndarray | None = None,
        variance_type: str | None = "fixed_small",
        clip_sample: bool = True,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
    ) -> None:
        variance_type = variance_type or "fixed_small"  # None (a DPM-Solver config) means the default
        check_choice(type(self).__name__, "variance_type", variance_type, VARIANCE_TYPES)
        self._check_choices(prediction_type=PREDICTION_TYPES, timestep_spacing=TIMESTEP_SPACINGS)
        self._init_noise_schedule(
            num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
            beta_schedules=DDPM_BETA_SCHEDULES, rescale_betas_zero_snr=rescale_betas_zero_snr,
        )
        self.variance_type = variance_type

    def scale_model_input(self, sample: torch.Tensor, timestep: int | torch.Tensor | None = None) -> torch.Tensor:
        """DDPM feeds the sample to the model unscaled."""
        return sample

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: Sequence[int] | None = None,
    ) -> None:
        """Pick ``num_inference_steps`` training timesteps with the configured spacing, or use ``timesteps``.

        Custom ``timesteps`` (what ``retrieve_timesteps`` passes) must be distinct training
        timesteps in descending order; each step goes to the next one listed.

        Raises:
            ScheduleRequestError: neither or both of ``num_inference_steps`` and ``timesteps``,
                or custom timesteps out of order or outside ``[0, num_train_timesteps)``.
            InferenceStepsError: ``num_inference_steps`` outside ``[1, num_train_timesteps]``.
        """
        cfg, name = self.config, type(self).__name__
        if (num_inference_steps is None) == (timesteps is None):
            problem = "got both num_inference_steps and timesteps" if timesteps is not None else "got neither"
            raise errors.ScheduleRequestError(name, problem, "pass exactly one of num_inference_steps and timesteps")
        if timesteps is not None:
            grid = _custom_timesteps(name, timesteps, cfg.num_train_timesteps)
        else:
            n = check_num_inference_steps(name, num_inference_steps, cfg.num_train_timesteps)
            grid = spaced_timesteps(cfg.timestep_spacing, cfg.num_train_timesteps, n, cfg.steps_offset)
            if cfg.timestep_spacing == "linspace":
                grid = grid.round()
        schedule = torch.from_numpy(grid.astype(np.int64))
        self.custom_timesteps = timesteps is not None
        self._steps = self._step_coefficients(schedule)
        self._set_schedule(schedule.to(device), len(schedule))

    def _step_coefficients(self, timesteps: torch.Tensor) -> list[_DDPMStep]:
        """Every scalar of each step, computed at once in float32 (as diffusers does per step)."""
        prev = torch.cat([timesteps[1:], torch.tensor([-1])])
        alpha_bar_t = self.alphas_cumprod[timesteps]
        alpha_bar_prev = torch.where(prev >= 0, self.alphas_cumprod[prev.clamp(min=0)], torch.tensor(1.0))
        beta_bar_t, beta_bar_prev = 1 - alpha_bar_t, 1 - alpha_bar_prev
        alpha_t = alpha_bar_t / alpha_bar_prev
        beta_t = 1 - alpha_t
        # eq. 7: beta-tilde, the posterior variance
        beta_tilde = torch.clamp((1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t, min=1e-20)
        columns = (
            timesteps, prev, alpha_bar_t**0.5, beta_bar_t**0.5,
            alpha_bar_prev**0.5 * beta_t / beta_bar_t, alpha_t**0.5 * beta_bar_prev / beta_bar_t,
            self._fixed_noise_std(beta_tilde, beta_t), torch.log(beta_tilde), torch.log(beta_t),
        )
        return [_DDPMStep(*row) for row in zip(*(c.tolist() for c in columns))]

    def _fixed_noise_std(self, beta_tilde: torch.Tensor, beta_t: torch.Tensor) -> torch.Tensor:
        """Noise standard deviation for the fixed variance types (NaN placeholder for learned)."""
        kind = self.variance_type
        if kind == "fixed_small":
            return beta_tilde**0.5
        if kind == "fixed_small_log":
            return torch.exp(0.5 * torch.log(beta_tilde))
        if kind == "fixed_large":
            return beta_t**0.5
        if kind == "fixed_large_log":
            return torch.exp(0.5 * torch.log(beta_t))  # diffusers takes sqrt of a log here (NaN)
        return torch.full_like(beta_t, float("nan"))

    def previous_timestep(self, timestep: int | torch.Tensor) -> int:
        """The timestep after ``timestep`` in the schedule (-1 after the last).

        Before ``set_timesteps``, the schedule is every training timestep: ``timestep - 1``.
        """
        return self._coefficients_at(timestep).prev_t

    def _coefficients_at(self, timestep: int | torch.Tensor) -> _DDPMStep:
        """The scalars of the step from ``timestep``, in the inference schedule once it is set.

        Before ``set_timesteps`` the step goes from ``t`` to ``t - 1`` of the training schedule,
        as diffusers defines it (pipelines such as the diffusers tutorial's one-step pipeline call
        ``step`` on a fresh scheduler). The scalars of each such step are computed on first use
        (only that step's: the whole training schedule would cost ~10 ms, more than a tiny model call).
        """
        if self.num_inference_steps is not None:
            return self._steps[self.index_for_timestep(timestep)]
        num_train = self.config.num_train_timesteps
        t = _training_timestep(timestep, num_train)
        if t is None:
            raise errors.TimestepNotInScheduleError(type(self).__name__, timestep, range(num_train - 1, -1, -1))
        train_steps = self.__dict__.setdefault("_train_steps", {})
        if t not in train_steps:
            # the same elementwise float32 arithmetic as for the whole schedule, on t and t - 1
            train_steps[t] = self._step_coefficients(torch.arange(t, max(t - 2, -1), -1, dtype=torch.int64))[0]
        return train_steps[t]

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor, ...]:
        """One reverse step ``x_t -> x_{t-1}`` (Ho et al. 2020, eqs. 6-7 and 15).

        ``x_{t-1}`` is the next timestep of the inference schedule, or, before ``set_timesteps``,
        of the training schedule (``t - 1``).
        """
        learned = self.variance_type in ("learned", "learned_range")
        c = self._coefficients_at(timestep)
        self._check_output_shape(model_output, sample, learned=learned)
        predicted_variance = None
        if learned and model_output.shape[1] == 2 * sample.shape[1]:
            model_output, predicted_variance = torch.split(model_output, sample.shape[1], dim=1)

        # 1. x0 from the model output (eq. 15), then clip or threshold it
        x0 = self._predict_x0(model_output, sample, c)

        # 2. mean of the posterior q(x_{t-1} | x_t, x0) (eq. 7)
        prev_sample = c.x0_coeff * x0 + c.xt_coeff * sample

        # 3. add noise with the chosen variance, except at t = 0
        if c.t > 0:
            noise = randn_tensor(model_output.shape, generator=generator, device=model_output.device, dtype=model_output.dtype)
            prev_sample = prev_sample + self._noise_std(c, predicted_variance) * noise
        if not return_dict:
            return (prev_sample, x0)
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)

    def _predict_x0(self, model_output: torch.Tensor, sample: torch.Tensor, c: _DDPMStep) -> torch.Tensor:
        cfg = self.config
        x0 = predict_x0(cfg.prediction_type, model_output, sample, c.sqrt_alpha_bar, c.sqrt_beta_bar)
        if cfg.thresholding:
            return threshold_sample(x0, cfg.dynamic_thresholding_ratio, cfg.sample_max_value)
        if cfg.clip_sample:
            return x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
        return x0

    def _noise_std(self, c: _DDPMStep, predicted_variance: torch.Tensor | None) -> torch.Tensor | float:
        """The standard deviation multiplying the fresh noise."""
        if self.variance_type == "learned":
            return predicted_variance**0.5
        if self.variance_type == "learned_range":  # interpolate log variances (Nichol & Dhariwal, eq. 15)
            frac = (predicted_variance + 1) / 2
            return torch.exp(0.5 * (frac * c.log_beta + (1 - frac) * c.log_beta_tilde))
        return c.noise_std
