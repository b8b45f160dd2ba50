"""Euler: the first-order ODE sampler of k-diffusion (Karras et al. 2022, Alg. 2, arXiv:2206.00364)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..configuration import register_to_config
from ..torch_utils import randn_tensor
from .common import (
    PREDICTION_TYPES,
    TIMESTEP_SPACINGS,
    SchedulerOutput,
    SigmaSchedulerMixin,
    check_num_inference_steps,
    check_one_sigma_ramp,
    sigma_to_t,
    train_sigmas,
)
from .schedule_requests import float_list, refuse_sigma_ramp, requested_schedule


class EulerDiscreteScheduler(SigmaSchedulerMixin):
    """Euler steps on ``dx/dsigma = (x - x0) / sigma``, with optional churn (Alg. 2's gamma).

    Example::

        scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
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
        prediction_type: str = "epsilon",
        interpolation_type: str = "linear",
        use_karras_sigmas: bool | None = False,
        use_exponential_sigmas: bool | None = False,
        use_beta_sigmas: bool | None = False,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        timestep_spacing: str = "linspace",
        timestep_type: str = "discrete",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        final_sigmas_type: str = "zero",
    ) -> None:
        self._check_choices(
            prediction_type=PREDICTION_TYPES, timestep_spacing=TIMESTEP_SPACINGS,
            interpolation_type=("linear", "log_linear"), final_sigmas_type=("zero", "sigma_min"),
        )
        self._check_unsupported("use_beta_sigmas", "timestep_type")
        check_one_sigma_ramp(type(self).__name__, self.config)
        self._init_noise_schedule(
            num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
            rescale_betas_zero_snr=rescale_betas_zero_snr,
        )
        self.timesteps = self.timesteps.to(torch.float32)
        self._install_step_sigmas(self.sigmas)
        self._use_training_schedule()

    def _install_step_sigmas(self, sigmas: torch.Tensor) -> None:
        """``sigmas`` and each step's ``dt = sigma_next - sigma``."""
        self._install_sigmas(sigmas)
        self._dt = (self.sigmas[1:] - self.sigmas[:-1]).tolist()

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: Sequence[float] | None = None,
        sigmas: Sequence[float] | None = None,
    ) -> None:
        """Timesteps (float32) and sigmas for ``num_inference_steps`` steps, or a custom schedule.

        Args:
            timesteps: custom training timesteps, highest first; their sigmas are interpolated
                from the training schedule, then the final sigma is appended.
            sigmas: custom sigmas, highest first, *including* the final one (``len - 1`` steps);
                their timesteps are interpolated in ``log(sigma)``.

        Raises:
            ScheduleRequestError: not exactly one of the three, or custom timesteps with a sigma ramp.
            InferenceStepsError: ``num_inference_steps`` outside ``[1, num_train_timesteps]``.
        """
        cfg, name = self.config, type(self).__name__
        custom = requested_schedule(name, num_inference_steps, timesteps=timesteps, sigmas=sigmas)
        if custom == "sigmas":
            given = float_list(name, "sigmas", sigmas)  # type: ignore[arg-type]
            grid = sigma_to_t(given[:-1], np.log(train_sigmas(self.alphas_cumprod)))
            self._install_step_sigmas(torch.from_numpy(given))
            self._set_schedule(torch.from_numpy(grid.astype(np.float32)).to(device), len(given) - 1)
            return
        if custom == "timesteps":
            refuse_sigma_ramp(name, cfg)
            grid = float_list(name, "timesteps", timesteps)  # type: ignore[arg-type]
            n = len(grid)
            grid, ramp = self._inference_sigmas(n, timesteps=grid)
        else:
            n = check_num_inference_steps(name, num_inference_steps, cfg.num_train_timesteps)
            grid, ramp = self._inference_sigmas(n)
        if cfg.interpolation_type == "log_linear" and not (cfg.use_karras_sigmas or cfg.use_exponential_sigmas):
            table = ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5
            ramp = torch.linspace(np.log(table[-1].item()), np.log(table[0].item()), n + 1).exp().numpy()
        sigma_last = ((1 - self.alphas_cumprod[0]) / self.alphas_cumprod[0]) ** 0.5 if cfg.final_sigmas_type == "sigma_min" else 0
        self._install_step_sigmas(torch.from_numpy(np.concatenate([ramp, [float(sigma_last)]]).astype(np.float32)))
        self._set_schedule(torch.from_numpy(np.asarray(grid).astype(np.float32)).to(device), n)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float = float("inf"),
        s_noise: float = 1.0,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor, ...]:
        """One Euler step from ``sigma`` to the next sigma (Karras et al. 2022, Alg. 2 lines 4-8)."""
        i = self._advance_index(timestep)
        self._check_output_shape(model_output, sample)
        sample = sample.to(torch.float32)
        sigma, sigma_hat, dt = self._sigmas_list[i], self._sigmas_list[i], self._dt[i]

        # 1. churn (Alg. 2 lines 4-6): raise the noise level to sigma_hat = sigma (1 + gamma)
        gamma = min(s_churn / (len(self._sigmas_list) - 1), 2**0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0
        if gamma > 0:
            sigma_hat, dt, sample = self._churn(i, gamma, s_noise, sample, model_output, generator)

        # 2. x0 from the model output
        x0 = self._predict_x0(model_output, sample, sigma_hat, i)  # v-prediction: at sigma, as diffusers

        # 3. d = (x - x0) / sigma_hat;  x_next = x + d * (sigma_next - sigma_hat)  (Alg. 2 lines 7-8)
        d = (sample - x0) / sigma_hat
        prev_sample = (sample + d * dt).to(model_output.dtype)
        self._step_index = i + 1
        if not return_dict:
            return (prev_sample, x0)
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)

    def _churn(
        self, i: int, gamma: float, s_noise: float, sample: torch.Tensor, model_output: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[float, float, torch.Tensor]:
        """Add noise to go from sigma up to sigma_hat; returns ``(sigma_hat, dt, sample)``."""
        sigma = self.sigmas[i]
        sigma_hat = sigma * (gamma + 1)
        eps = randn_tensor(model_output.shape, dtype=model_output.dtype, device=model_output.device, generator=generator)
        sample = sample + eps * s_noise * (sigma_hat**2 - sigma**2) ** 0.5
        return sigma_hat.item(), (self.sigmas[i + 1] - sigma_hat).item(), sample
