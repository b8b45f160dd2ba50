"""DDIM: the non-Markovian, optionally deterministic sampler (Song et al. 2020, arXiv:2010.02502)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    check_num_inference_steps,
    predict_epsilon,
    predict_x0,
    spaced_timesteps,
    threshold_sample,
)


class DDIMScheduler(AlphaBarNoiseMixin, SchedulerMixin):
    """Denoising diffusion implicit models; ``eta=0`` is deterministic, ``eta=1`` is DDPM-like.

    Example::

        scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        scheduler.set_timesteps(50)
        x = scheduler.step(eps, t, x, eta=0.0).prev_sample
    """

    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Sequence[float] | np.ndarray | None = None,
        clip_sample: bool = True,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        rescale_betas_zero_snr: bool = False,
    ) -> None:
        self._check_choices(prediction_type=PREDICTION_TYPES, timestep_spacing=TIMESTEP_SPACINGS)
        self._init_noise_schedule(
            num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
            rescale_betas_zero_snr=rescale_betas_zero_snr,
        )
        # alpha_bar "before" step 0: 1 (a clean sample) or alpha_bar[0]
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]

    def scale_model_input(self, sample: torch.Tensor, timestep: int | torch.Tensor | None = None) -> torch.Tensor:
        """DDIM feeds the sample to the model unscaled."""
        return sample

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Pick ``num_inference_steps`` training timesteps with the configured spacing."""
        cfg = self.config
        n = check_num_inference_steps(type(self).__name__, num_inference_steps, cfg.num_train_timesteps)
        grid = spaced_timesteps(cfg.timestep_spacing, cfg.num_train_timesteps, n, cfg.steps_offset)
        if cfg.timestep_spacing == "linspace":
            grid = grid.round()
        timesteps = torch.from_numpy(grid.astype(np.int64))
        self._set_schedule(timesteps.to(device), n)
        self._tables = self._step_tables(timesteps, n)
        self._eta_tables: dict[float, tuple[list[float], list[float]]] = {}

    def _step_tables(self, timesteps: torch.Tensor, n: int) -> dict[str, Any]:
        """The eta-independent scalars of each step, in float32 (as diffusers computes them)."""
        # The previous timestep is one stride back (diffusers' rule, whatever the spacing).
        prev = timesteps - self.config.num_train_timesteps // n
        alpha_bar_t = self.alphas_cumprod[timesteps]
        alpha_bar_prev = torch.where(prev >= 0, self.alphas_cumprod[prev.clamp(min=0)], self.final_alpha_cumprod)
        beta_bar_t, beta_bar_prev = 1 - alpha_bar_t, 1 - alpha_bar_prev
        # eq. 16 without eta: (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
        variance = beta_bar_prev / beta_bar_t * (1 - alpha_bar_t / alpha_bar_prev)
        return {
            "alpha_bar_prev": alpha_bar_prev,
            "variance": variance,
            "sqrt_alpha_bar": (alpha_bar_t**0.5).tolist(),
            "sqrt_beta_bar": (beta_bar_t**0.5).tolist(),
            "sqrt_alpha_bar_prev": (alpha_bar_prev**0.5).tolist(),
        }

    def _eta_table(self, eta: float) -> tuple[list[float], list[float]]:
        """Per step, ``sigma_t`` and the direction coefficient ``sqrt(1 - ab_prev - sigma_t^2)``."""
        if eta not in self._eta_tables:
            sigma_t = eta * self._tables["variance"] ** 0.5
            direction = (1 - self._tables["alpha_bar_prev"] - sigma_t**2) ** 0.5
            self._eta_tables[eta] = (sigma_t.tolist(), direction.tolist())
        return self._eta_tables[eta]

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        eta: float = 0.0,
        use_clipped_model_output: bool = False,
        generator: torch.Generator | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor, ...]:
        """One DDIM step ``x_t -> x_{t-1}`` (Song et al. 2020, eq. 12; sigma_t from eq. 16)."""
        i = self.index_for_timestep(timestep)
        self._check_output_shape(model_output, sample)
        if variance_noise is not None and generator is not None:
            raise errors.SchedulerError("DDIMScheduler.step: pass either generator or variance_noise, not both")
        sqrt_alpha_bar, sqrt_beta_bar = self._tables["sqrt_alpha_bar"][i], self._tables["sqrt_beta_bar"][i]
        sigma_t, direction_coeff = (column[i] for column in self._eta_table(eta))

        # 1. x0 and eps from the model output ("predicted x0" of eq. 12)
        x0, eps = self._predict_x0_eps(model_output, sample, sqrt_alpha_bar, sqrt_beta_bar)
        if use_clipped_model_output:
            eps = predict_epsilon("sample", x0, sample, sqrt_alpha_bar, sqrt_beta_bar)

        # 2. x_{t-1} = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma_t^2) eps + sigma_t z  (eq. 12)
        prev_sample = self._tables["sqrt_alpha_bar_prev"][i] * x0 + direction_coeff * eps
        if eta > 0:
            if variance_noise is None:
                variance_noise = randn_tensor(
                    model_output.shape, generator=generator, device=model_output.device, dtype=model_output.dtype
                )
            prev_sample = prev_sample + sigma_t * variance_noise
        if not return_dict:
            return (prev_sample, x0)
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)

    def _predict_x0_eps(
        self, model_output: torch.Tensor, sample: torch.Tensor, sqrt_alpha_bar: float, sqrt_beta_bar: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        x0 = predict_x0(cfg.prediction_type, model_output, sample, sqrt_alpha_bar, sqrt_beta_bar)
        eps = predict_epsilon(cfg.prediction_type, model_output, sample, sqrt_alpha_bar, sqrt_beta_bar)
        if cfg.thresholding:
            x0 = threshold_sample(x0, cfg.dynamic_thresholding_ratio, cfg.sample_max_value)
        elif cfg.clip_sample:
            x0 = x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
        return x0, eps
