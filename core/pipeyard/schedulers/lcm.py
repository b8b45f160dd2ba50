"""LCM: multistep sampling of a latent consistency model (Luo et al. 2023, arXiv:2310.04378).

A consistency model maps any noisy sample straight to its clean estimate. The distilled model
was trained on a coarse grid of ``original_inference_steps`` DDIM timesteps; sampling picks
``num_inference_steps`` of them, and at each one

1. forms ``x0`` from the model output (``predict_x0``), clipped or thresholded if configured;
2. applies the consistency boundary condition ``denoised = c_out x0 + c_skip x_t`` with
   ``c_skip = sd^2 / (s^2 + sd^2)``, ``c_out = s / sqrt(s^2 + sd^2)``, ``s = t * timestep_scaling``,
   ``sd = sigma_data = 0.5`` (Song et al. 2023, eq. 7);
3. re-noises ``denoised`` to the next timestep with fresh noise, except after the last step.

Notation: ``ab`` is ``alpha_bar``; ``ab_prev`` the next timestep's (``final_alpha_cumprod``
past the end).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import torch

from .. import errors
from ..configuration import register_to_config
from ..outputs import BaseOutput
from ..torch_utils import randn_tensor
from .common import (
    PREDICTION_TYPES,
    AlphaBarNoiseMixin,
    SchedulerMixin,
    check_num_inference_steps,
    predict_x0,
    threshold_sample,
)

logger = logging.getLogger(__name__)

#: sigma_data of the consistency boundary condition.
SIGMA_DATA = 0.5


@dataclasses.dataclass
class LCMSchedulerOutput(BaseOutput):
    """What :meth:`LCMScheduler.step` returns.

    Attributes:
        prev_sample: ``denoised`` re-noised to the next timestep (``denoised`` after the last step).
        denoised: the consistency model's clean estimate at this step.
    """

    prev_sample: torch.Tensor
    denoised: torch.Tensor | None = None


class LCMScheduler(AlphaBarNoiseMixin, SchedulerMixin):
    """Latent consistency model sampling in 1-8 steps.

    Example::

        scheduler = LCMScheduler.from_config(pipe.scheduler.config)
        scheduler.set_timesteps(4)          # [999, 759, 499, 259] for 50 original steps
    """

    order = 1
    _compatibles = ()

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "scaled_linear",
        trained_betas: Sequence[float] | np.ndarray | None = None,
        original_inference_steps: int = 50,
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        timestep_scaling: float = 10.0,
        rescale_betas_zero_snr: bool = False,
    ) -> None:
        self._check_choices(prediction_type=PREDICTION_TYPES)
        self._init_noise_schedule(
            num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
            rescale_betas_zero_snr=rescale_betas_zero_snr,
        )
        # alpha_bar "before" the first training step, used past the end of the schedule
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]
        self.custom_timesteps = False

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """LCM feeds the sample to the model unscaled."""
        return sample

    # ------------------------------------------------------------------ the schedule

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        original_inference_steps: int | None = None,
        timesteps: list[int] | None = None,
        strength: float = 1.0,
    ) -> None:
        """Pick the sampling timesteps from the distillation grid, or take ``timesteps`` as given.

        The grid is ``k - 1, 2k - 1, ...`` for ``original_inference_steps * strength`` points,
        ``k = num_train_timesteps // original_inference_steps``; ``num_inference_steps`` of them
        are taken evenly from its top. Custom ``timesteps`` must descend from below
        ``num_train_timesteps``; ``strength < 1`` drops their first part (image-to-image).

        Raises:
            ScheduleRequestError: neither or both of ``num_inference_steps`` and ``timesteps``;
                more steps than the grid holds; custom timesteps out of order or range.
            InferenceStepsError: ``num_inference_steps`` outside ``[1, num_train_timesteps]``.
        """
        name, cfg = type(self).__name__, self.config
        if (num_inference_steps is None) == (timesteps is None):
            raise errors.ScheduleRequestError(
                name, "got both num_inference_steps and timesteps" if timesteps is not None else "got neither "
                "num_inference_steps nor timesteps", "pass exactly one of them",
            )
        original_steps = original_inference_steps if original_inference_steps is not None else cfg.original_inference_steps
        if not 1 <= original_steps <= cfg.num_train_timesteps:
            raise errors.ScheduleRequestError(
                name, f"original_inference_steps={original_steps} is outside 1 to num_train_timesteps="
                f"{cfg.num_train_timesteps}", "pass the step count the model was distilled with (usually 50)",
            )
        k = cfg.num_train_timesteps // original_steps
        grid = np.arange(1, int(original_steps * strength) + 1) * k - 1
        if timesteps is not None:
            chosen, count = self._custom_timesteps(list(timesteps), grid, original_steps, strength)
        else:
            count = check_num_inference_steps(name, num_inference_steps, cfg.num_train_timesteps)
            chosen = self._grid_timesteps(count, grid, original_steps, strength)
        self._set_schedule(torch.from_numpy(chosen).to(device=device, dtype=torch.long), count)

    def _grid_timesteps(self, count: int, grid: np.ndarray, original_steps: int, strength: float) -> np.ndarray:
        name = type(self).__name__
        if len(grid) < count or count > original_steps:
            raise errors.ScheduleRequestError(
                name, f"num_inference_steps={count} is more than the {len(grid)} timesteps of the distillation "
                f"grid (original_inference_steps={original_steps} x strength={strength})",
                f"use at most {min(len(grid), original_steps)} steps, or a larger strength",
            )
        descending = grid[::-1].copy()
        picks = np.floor(np.linspace(0, len(descending), num=count, endpoint=False)).astype(np.int64)
        return descending[picks]

    def _custom_timesteps(
        self, timesteps: list[int], grid: np.ndarray, original_steps: int, strength: float
    ) -> tuple[np.ndarray, int]:
        name, num_train = type(self).__name__, self.config.num_train_timesteps
        if any(b >= a for a, b in zip(timesteps, timesteps[1:])):
            raise errors.ScheduleRequestError(name, f"timesteps {timesteps} are not descending", "sort them, highest first")
        if not timesteps or timesteps[0] >= num_train:
            raise errors.ScheduleRequestError(
                name, f"timesteps {timesteps} do not start below num_train_timesteps={num_train}",
                f"start at {num_train - 1} or lower",
            )
        self._warn_unusual_custom_timesteps(timesteps, grid, original_steps, strength)
        self.custom_timesteps = True
        count = len(timesteps)
        start = max(count - min(int(count * strength), count), 0)
        return np.array(timesteps, dtype=np.int64)[start * self.order :], count

    def _warn_unusual_custom_timesteps(
        self, timesteps: list[int], grid: np.ndarray, original_steps: int, strength: float
    ) -> None:
        """Log (as diffusers does) schedules that run but were not what the model was distilled on."""
        num_train, on_grid = self.config.num_train_timesteps, set(grid.tolist())
        if strength == 1.0 and timesteps[0] != num_train - 1:
            logger.warning("custom LCM timesteps start at %s, not %s: results may differ", timesteps[0], num_train - 1)
        off_grid = [t for t in timesteps[1:] if t not in on_grid]
        if off_grid:
            logger.warning("custom LCM timesteps %s are not on the distillation grid: results may differ", off_grid)
        if len(timesteps) > original_steps:
            logger.warning("%s custom LCM timesteps exceed the %s of distillation", len(timesteps), original_steps)

    def previous_timestep(self, timestep: int | torch.Tensor) -> int:
        """The timestep after ``timestep`` in the schedule (-1 after the last; ``t - 1`` before set_timesteps)."""
        if self.num_inference_steps is None:
            return int(timestep) - 1
        i = self.index_for_timestep(timestep)
        return int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else -1

    # ------------------------------------------------------------------ the step

    def get_scalings_for_boundary_condition_discrete(self, timestep: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(c_skip, c_out)`` of the consistency boundary condition at ``timestep`` (float32)."""
        self.sigma_data = SIGMA_DATA
        s = torch.as_tensor(timestep).to(torch.float32) * self.config.timestep_scaling
        c_skip = SIGMA_DATA**2 / (s**2 + SIGMA_DATA**2)
        c_out = s / (s**2 + SIGMA_DATA**2) ** 0.5
        return c_skip, c_out

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> LCMSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One LCM step: clean estimate at ``timestep``, re-noised to the next timestep."""
        self._require_schedule()
        self._check_output_shape(model_output, sample)
        i = self._advance_index(timestep)
        t = int(timestep)
        prev_t = int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else t
        ab = self.alphas_cumprod[t]
        ab_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod

        # 1. x0 from the model output, clipped or thresholded
        x0 = predict_x0(self.config.prediction_type, model_output, sample, ab.sqrt().item(), (1 - ab).sqrt().item())
        x0 = self._limit_x0(x0)

        # 2. the consistency boundary condition
        c_skip, c_out = self.get_scalings_for_boundary_condition_discrete(t)
        denoised = c_out.item() * x0 + c_skip.item() * sample

        # 3. re-noise to the next timestep, except after the last step
        if i != self.num_inference_steps - 1:
            noise = randn_tensor(model_output.shape, generator=generator, device=model_output.device, dtype=denoised.dtype)
            prev_sample = ab_prev.sqrt().item() * denoised + (1 - ab_prev).sqrt().item() * noise
        else:
            prev_sample = denoised
        self._step_index = i + 1
        if not return_dict:
            return (prev_sample, denoised)
        return LCMSchedulerOutput(prev_sample=prev_sample, denoised=denoised)

    def _limit_x0(self, x0: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.thresholding:
            return threshold_sample(x0, cfg.dynamic_thresholding_ratio, cfg.sample_max_value)
        if cfg.clip_sample:
            return x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
        return x0
