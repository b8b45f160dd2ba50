"""DPM2: the second-order DPM-Solver step in sigma, as in k-diffusion's ``sample_dpm_2``.

Lu et al. 2022 (arXiv:2206.00927) with Karras et al.'s sigma view: a half step to the
geometric midpoint ``sigma_mid = sqrt(sigma_i * sigma_{i+1})`` gives the slope used for the
full step. ``timesteps`` interleaves each step's timestep with its midpoint's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..configuration import register_to_config
from .common import (
    TIMESTEP_SPACINGS,
    SchedulerOutput,
    SigmaSchedulerMixin,
    VPScalars,
    check_num_inference_steps,
    doubled_after_first,
    sigma_to_t,
    train_sigmas,
)

DPM2_PREDICTION_TYPES = ("epsilon", "v_prediction")


class _DPM2Base(SigmaSchedulerMixin):
    """What the two DPM2 samplers share: their options (same keys and defaults) and the half-step state."""

    order = 2

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "linear",
        trained_betas: Sequence[float] | np.ndarray | None = None,
        use_karras_sigmas: bool | None = False,
        use_exponential_sigmas: bool | None = False,
        use_beta_sigmas: bool | None = False,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
    ) -> None:
        self._check_choices(prediction_type=DPM2_PREDICTION_TYPES, timestep_spacing=TIMESTEP_SPACINGS)
        self._check_unsupported("use_beta_sigmas")
        self._init_noise_schedule(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas)
        self.sample: torch.Tensor | None = None
        self.set_timesteps(num_train_timesteps)  # type: ignore[attr-defined]  # step() before set_timesteps works, as in diffusers

    @property
    def state_in_first_order(self) -> bool:
        """True when the next call is the half step to the midpoint."""
        return self.sample is None


class KDPM2DiscreteScheduler(_DPM2Base):
    """Deterministic DPM2 (midpoint) sampler."""

    def set_timesteps(
        self,
        num_inference_steps: int,
        device: str | torch.device | None = None,
        num_train_timesteps: int | None = None,
    ) -> None:
        """Sigmas, midpoint sigmas and the interleaved (timestep, midpoint timestep) schedule.

        ``num_train_timesteps``: the training length the spacing divides (default: the config's).
        """
        n = check_num_inference_steps(type(self).__name__, num_inference_steps, self.config.num_train_timesteps)
        timesteps, sigmas = self._inference_sigmas(n, round_karras_t=True, num_train_timesteps=num_train_timesteps)
        sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
        # sigma_mid_i = exp((log sigma_{i-1} + log sigma_i) / 2), at index i
        sigmas_interpol = sigmas.log().lerp(sigmas.roll(1).log(), 0.5).exp()
        self._install_sigmas(doubled_after_first(sigmas, extra_last=True))
        self.sigmas_interpol = doubled_after_first(sigmas_interpol, extra_last=True)
        self._vp_interpol = VPScalars.of(self.sigmas_interpol)
        self._interpol_list = self.sigmas_interpol.tolist()
        # half step: sigma_mid - sigma; full step: sigma_next - sigma (both from the step's start)
        self._dt_half = (self.sigmas_interpol[1:] - self.sigmas[:-1]).tolist()
        self._dt_full = [float("nan"), *(self.sigmas[1:] - self.sigmas[:-1]).tolist()]
        timesteps = torch.from_numpy(np.asarray(timesteps))
        log_table = np.log(train_sigmas(self.alphas_cumprod))
        t_interpol = torch.from_numpy(sigma_to_t(sigmas_interpol.numpy(), log_table, in_weight_dtype=True)).to(timesteps.dtype)
        pairs = torch.stack((t_interpol[1:-1, None], timesteps[1:, None]), dim=-1).flatten()
        self._set_schedule(torch.cat([timesteps[:1], pairs]).to(device), n)
        self.sample = None

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor) -> torch.Tensor:
        """``sample / sqrt(sigma^2 + 1)`` at sigma_i (half step) or the midpoint (full step)."""
        i = self._advance_index(timestep)
        scale = self._vp.input_scale[i] if self.state_in_first_order else self._vp_interpol.input_scale[i]
        return sample / scale

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor, ...]:
        """Half step to the midpoint on the first call; full step with the midpoint slope on the second."""
        i = self._advance_index(timestep)
        self._check_output_shape(model_output, sample)
        first_order = self.state_in_first_order
        # sigma of the model evaluation: sigma_i, or the midpoint sigma_mid
        sigma_eval = self._sigmas_list[i] if first_order else self._interpol_list[i]
        vp = self._vp if first_order else self._vp_interpol

        # 1. x0 at the evaluation point
        x0 = self._predict_x0(model_output, sample, sigma_eval, i, vp)

        # 2. slope d = (x - x0) / sigma_eval
        d = (sample - x0) / sigma_eval
        if first_order:  # 3a. x_mid = x_i + d (sigma_mid - sigma_i)
            self.sample = sample
            prev_sample = sample + d * self._dt_half[i]
        else:  # 3b. x_{i+1} = x_i + d_mid (sigma_{i+1} - sigma_i)
            prev_sample = self.sample + d * self._dt_full[i]
            self.sample = None
        self._step_index = i + 1
        if not return_dict:
            return (prev_sample, x0)
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
