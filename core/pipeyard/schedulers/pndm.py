"""PNDM: pseudo numerical methods on the DDIM manifold (Liu et al. 2022, arXiv:2202.09778).

Four Runge-Kutta steps (PRK) warm up a linear multistep method (PLMS, Adams-Bashforth style);
``skip_prk_steps=True`` starts PLMS at once, as Stable Diffusion configs do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from ..configuration import register_to_config
from .common import (
    TIMESTEP_SPACINGS,
    AlphaBarNoiseMixin,
    SchedulerMixin,
    SchedulerOutput,
    check_num_inference_steps,
    predict_epsilon,
    spaced_timesteps,
)

PNDM_PREDICTION_TYPES = ("epsilon", "v_prediction")


class _Transfer(NamedTuple):
    """Scalars of one PNDM transfer from t to prev_t (float32 values as Python floats)."""

    sample_coeff: float
    alpha_bar_gap: float
    eps_denominator: float
    sqrt_alpha_bar: float
    sqrt_beta_bar: float


class PNDMScheduler(AlphaBarNoiseMixin, SchedulerMixin):
    """Pseudo linear multistep sampler (the original Stable Diffusion default)."""

    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Sequence[float] | np.ndarray | None = None,
        skip_prk_steps: bool = False,
        set_alpha_to_one: bool = False,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
    ) -> None:
        self._check_choices(prediction_type=PNDM_PREDICTION_TYPES, timestep_spacing=TIMESTEP_SPACINGS)
        self._init_noise_schedule(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas)
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]
        self._transfer_cache: dict[tuple[int, int], _Transfer] = {}
        self.pndm_order = 4
        self._reset_history()

    def _reset_history(self) -> None:
        self.ets: list[torch.Tensor] = []  # past model outputs (eps), newest last
        self.counter = 0
        self.cur_model_output: torch.Tensor | float = 0
        self.cur_sample: torch.Tensor | None = None

    def scale_model_input(self, sample: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        """PNDM feeds the sample to the model unscaled."""
        return sample

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """PRK timesteps (each visited at t and t - stride/2) then the PLMS timesteps."""
        cfg = self.config
        n = check_num_inference_steps(type(self).__name__, num_inference_steps, cfg.num_train_timesteps)
        grid = spaced_timesteps(cfg.timestep_spacing, cfg.num_train_timesteps, n, cfg.steps_offset)
        if cfg.timestep_spacing == "linspace":
            grid = grid.round()
        ascending = grid[::-1].astype(np.int64)
        if cfg.skip_prk_steps:
            # PLMS only; the second timestep repeats for the warm-up (Heun-like) step.
            self.prk_timesteps = np.array([], dtype=np.int64)
            plms = np.concatenate([ascending[:-1], ascending[-2:-1], ascending[-1:]])[::-1].copy()
        else:
            half = cfg.num_train_timesteps // n // 2
            prk = ascending[-self.pndm_order:].repeat(2) + np.tile(np.array([0, half]), self.pndm_order)
            self.prk_timesteps = prk[:-1].repeat(2)[1:-1][::-1].copy()
            plms = ascending[:-3][::-1].copy()
        self.plms_timesteps = plms
        timesteps = np.concatenate([self.prk_timesteps, plms]).astype(np.int64)
        self._set_schedule(torch.from_numpy(timesteps).to(device), n)
        self._reset_history()

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor, ...]:
        """A PRK step during the first ``len(prk_timesteps)`` calls, PLMS after."""
        self.index_for_timestep(timestep)
        self._check_output_shape(model_output, sample)
        if self.counter < len(self.prk_timesteps) and not self.config.skip_prk_steps:
            prev_sample = self._step_prk(model_output, int(timestep), sample)
        else:
            prev_sample = self._step_plms(model_output, int(timestep), sample)
        self.counter += 1
        return SchedulerOutput(prev_sample=prev_sample) if return_dict else (prev_sample,)

    def _step_prk(self, eps: torch.Tensor, t: int, sample: torch.Tensor) -> torch.Tensor:
        """Runge-Kutta: four evaluations per stride, weights 1/6, 1/3, 1/3, 1/6 (eq. 13)."""
        stride = self.config.num_train_timesteps // self.num_inference_steps
        prev_t = t - (0 if self.counter % 2 else stride // 2)
        t = int(self.prk_timesteps[self.counter // 4 * 4])  # all four stages start from here
        stage = self.counter % 4
        if stage == 0:
            self.cur_model_output = self.cur_model_output + 1 / 6 * eps
            self.ets.append(eps)
            self.cur_sample = sample
        elif stage in (1, 2):
            self.cur_model_output = self.cur_model_output + 1 / 3 * eps
        else:
            eps = self.cur_model_output + 1 / 6 * eps
            self.cur_model_output = 0
        start = self.cur_sample if self.cur_sample is not None else sample
        return self._transfer(start, t, prev_t, eps)

    def _step_plms(self, eps: torch.Tensor, t: int, sample: torch.Tensor) -> torch.Tensor:
        """Linear multistep on eps: orders 1-4 with Adams-Bashforth weights (eq. 12)."""
        stride = self.config.num_train_timesteps // self.num_inference_steps
        prev_t = t - stride
        if self.counter != 1:
            self.ets = self.ets[-3:]
            self.ets.append(eps)
        else:  # second call of a PLMS-only run: redo the first stride with the averaged eps
            prev_t, t = t, t + stride
        ets = self.ets
        if len(ets) == 1 and self.counter == 0:
            self.cur_sample = sample
        elif len(ets) == 1 and self.counter == 1:
            eps = (eps + ets[-1]) / 2
            sample, self.cur_sample = self.cur_sample, None
        elif len(ets) == 2:
            eps = (3 * ets[-1] - ets[-2]) / 2
        elif len(ets) == 3:
            eps = (23 * ets[-1] - 16 * ets[-2] + 5 * ets[-3]) / 12
        else:
            eps = (1 / 24) * (55 * ets[-1] - 59 * ets[-2] + 37 * ets[-3] - 9 * ets[-4])
        return self._transfer(sample, t, prev_t, eps)

    def _transfer(self, sample: torch.Tensor, t: int, prev_t: int, eps: torch.Tensor) -> torch.Tensor:
        """The transfer part phi(x_t, eps, t, t - delta) of PNDM (eq. 11)."""
        c = self._transfer_coefficients(t, prev_t)
        eps = predict_epsilon(self.config.prediction_type, eps, sample, c.sqrt_alpha_bar, c.sqrt_beta_bar)
        return c.sample_coeff * sample - c.alpha_bar_gap * eps / c.eps_denominator

    def _transfer_coefficients(self, t: int, prev_t: int) -> _Transfer:
        """The float32 scalars of phi for ``(t, prev_t)``, computed once per pair."""
        key = (t, prev_t)
        if key not in self._transfer_cache:
            alpha_bar_t = self.alphas_cumprod[t]
            alpha_bar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
            beta_bar_t, beta_bar_prev = 1 - alpha_bar_t, 1 - alpha_bar_prev
            denominator = alpha_bar_t * beta_bar_prev**0.5 + (alpha_bar_t * beta_bar_t * alpha_bar_prev) ** 0.5
            values = (
                (alpha_bar_prev / alpha_bar_t) ** 0.5, alpha_bar_prev - alpha_bar_t, denominator,
                alpha_bar_t**0.5, beta_bar_t**0.5,
            )
            self._transfer_cache[key] = _Transfer(*(v.item() for v in values))
        return self._transfer_cache[key]
