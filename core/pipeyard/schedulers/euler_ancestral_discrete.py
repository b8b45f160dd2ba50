"""Euler ancestral: an Euler step down to sigma_down, then fresh noise up to sigma_next.

k-diffusion's ``sample_euler_ancestral`` (Karras et al. 2022, arXiv:2206.00364; ancestral split of
Ho et al. 2020).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..configuration import register_to_config
from ..torch_utils import randn_tensor
from .common import (
    TIMESTEP_SPACINGS,
    SchedulerOutput,
    SigmaSchedulerMixin,
    check_num_inference_steps,
)

ANCESTRAL_PREDICTION_TYPES = ("epsilon", "v_prediction")


class EulerAncestralDiscreteScheduler(SigmaSchedulerMixin):
    """Stochastic Euler sampler: deterministic step to ``sigma_down``, noise of ``sigma_up``."""

    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Sequence[float] | np.ndarray | None = None,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
    ) -> None:
        self._check_choices(prediction_type=ANCESTRAL_PREDICTION_TYPES, timestep_spacing=TIMESTEP_SPACINGS)
        self._init_noise_schedule(
            num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
            rescale_betas_zero_snr=rescale_betas_zero_snr,
        )
        self._install_step_sigmas(self.sigmas)
        self._use_training_schedule()

    def _install_step_sigmas(self, sigmas: torch.Tensor) -> None:
        """``sigmas`` and each step's ``sigma_up`` and ``dt = sigma_down - sigma`` (the ancestral split)."""
        self._install_sigmas(sigmas)
        sigma_from, sigma_to = self.sigmas[:-1], self.sigmas[1:]
        sigma_up = (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
        sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
        self._sigma_up, self._dt = sigma_up.tolist(), (sigma_down - sigma_from).tolist()

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Timesteps (float32) and sigmas, and each step's ``sigma_up`` / ``sigma_down``."""
        n = check_num_inference_steps(type(self).__name__, num_inference_steps, self.config.num_train_timesteps)
        timesteps, sigmas = self._inference_sigmas(n)
        self._install_step_sigmas(torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32)))
        self._set_schedule(torch.from_numpy(timesteps.astype(np.float32)).to(device), n)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor, ...]:
        """One ancestral step from sigma to sigma_next."""
        i = self._advance_index(timestep)
        self._check_output_shape(model_output, sample)
        sigma = self._sigmas_list[i]
        sample = sample.to(torch.float32)

        # 1. x0 from the model output
        x0 = self._predict_x0(model_output, sample, sigma, i)

        # 2. sigma_up = sqrt(s_next^2 (s^2 - s_next^2) / s^2), sigma_down = sqrt(s_next^2 - sigma_up^2)
        # 3. Euler step to sigma_down: x + d (sigma_down - sigma), d = (x - x0) / sigma
        d = (sample - x0) / sigma
        prev_sample = sample + d * self._dt[i]

        # 4. add noise of standard deviation sigma_up
        noise = randn_tensor(model_output.shape, dtype=model_output.dtype, device=model_output.device, generator=generator)
        prev_sample = (prev_sample + noise * self._sigma_up[i]).to(model_output.dtype)
        self._step_index = i + 1
        if not return_dict:
            return (prev_sample, x0)
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
