"""DPM2 ancestral: DPM2's midpoint step down to sigma_down, then noise of sigma_up.

k-diffusion's ``sample_dpm_2_ancestral`` (Lu et al. 2022, arXiv:2206.00927; Karras et al. 2022).
"""

from __future__ import annotations

import numpy as np
import torch

from ..torch_utils import randn_tensor
from .common import (
    SchedulerOutput,
    VPScalars,
    check_num_inference_steps,
    doubled_after_first,
    sigma_to_t,
    train_sigmas,
)
from .kdpm2_discrete import _DPM2Base


class KDPM2AncestralDiscreteScheduler(_DPM2Base):
    """Stochastic DPM2 sampler: midpoint slope to ``sigma_down``, then fresh noise ``sigma_up``."""

    def set_timesteps(
        self,
        num_inference_steps: int,
        device: str | torch.device | None = None,
        num_train_timesteps: int | None = None,
    ) -> None:
        """Sigmas with their up/down split and midpoints, and the interleaved schedule.

        ``num_train_timesteps``: the training length the spacing divides (default: the config's).
        """
        n = check_num_inference_steps(type(self).__name__, num_inference_steps, self.config.num_train_timesteps)
        timesteps, sigmas = self._inference_sigmas(n, round_karras_t=True, num_train_timesteps=num_train_timesteps)
        sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
        sigmas_next = sigmas.roll(-1)
        sigmas_next[-1] = 0.0
        # ancestral split of the move sigma -> sigma_next (k-diffusion get_ancestral_step)
        sigmas_up = (sigmas_next**2 * (sigmas**2 - sigmas_next**2) / sigmas**2) ** 0.5
        sigmas_down = (sigmas_next**2 - sigmas_up**2) ** 0.5
        sigmas_down[-1] = 0.0
        # midpoint between sigma and sigma_down, geometric
        sigmas_interpol = sigmas.log().lerp(sigmas_down.log(), 0.5).exp()
        sigmas_interpol[-2:] = 0.0
        self._install_sigmas(doubled_after_first(sigmas, extra_last=True))
        self.sigmas_interpol = doubled_after_first(sigmas_interpol, extra_last=True)
        self.sigmas_up = doubled_after_first(sigmas_up, extra_last=True)
        self.sigmas_down = doubled_after_first(sigmas_down, extra_last=True)
        self._cache_step_scalars()
        timesteps = torch.from_numpy(np.asarray(timesteps))
        log_table = np.log(train_sigmas(self.alphas_cumprod))
        t_interpol = torch.from_numpy(sigma_to_t(sigmas_interpol.numpy(), log_table, in_weight_dtype=True))
        pairs = torch.stack((t_interpol.to(timesteps.dtype)[:-2, None], timesteps[1:, None]), dim=-1).flatten()
        self._set_schedule(torch.cat([timesteps[:1], pairs]).to(device), n)
        self.sample = None

    def _cache_step_scalars(self) -> None:
        """Per index: the half-step and full-step dt, the evaluation sigmas and sigma_up."""
        sigmas, interpol = self.sigmas, self.sigmas_interpol
        self._interpol_list = interpol.tolist()
        self._vp_interpol = VPScalars.of(interpol)
        self._dt_half = (interpol - sigmas).tolist()  # sigma_mid_i - sigma_i
        # full step from the pair's start (index i - 1) down to sigma_down
        full = self.sigmas_down[:-1] - sigmas[:-1]
        self._dt_full = [float("nan"), *full.tolist()]
        self._up_list = self.sigmas_up.tolist()

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor) -> torch.Tensor:
        """``sample / sqrt(sigma^2 + 1)`` at sigma_i (half step) or at the midpoint (full step)."""
        i = self._advance_index(timestep)
        scale = self._vp.input_scale[i] if self.state_in_first_order else self._vp_interpol.input_scale[i - 1]
        return sample / scale

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor, ...]:
        """Half step to the midpoint; then full step to sigma_down plus noise of sigma_up."""
        i = self._advance_index(timestep)
        self._check_output_shape(model_output, sample)
        first_order = self.state_in_first_order
        # evaluation point: sigma_i, or the midpoint of the pair that started at i - 1
        k = i if first_order else i - 1
        sigma_eval = self._sigmas_list[k] if first_order else self._interpol_list[k]
        vp = self._vp if first_order else self._vp_interpol

        # 1. x0 at the evaluation point
        x0 = self._predict_x0(model_output, sample, sigma_eval, k, vp)

        # 2. slope d = (x - x0) / sigma_eval
        d = (sample - x0) / sigma_eval
        if first_order:  # 3a. x_mid = x_i + d (sigma_mid - sigma_i)
            self.sample = sample
            prev_sample = sample + d * self._dt_half[i]
        else:  # 3b. x_down = x_i + d_mid (sigma_down - sigma_i), then + sigma_up * z
            prev_sample = self.sample + d * self._dt_full[i]
            self.sample = None
            noise = randn_tensor(model_output.shape, dtype=model_output.dtype, device=model_output.device, generator=generator)
            prev_sample = prev_sample + noise * self._up_list[i - 1]
        self._step_index = i + 1
        if not return_dict:
            return (prev_sample, x0)
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
