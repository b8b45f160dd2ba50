"""DEIS: diffusion exponential integrator sampler, multistep "log-rho" variant.

Zhang & Chen 2023 (arXiv:2204.13902). In ``rho = sigma_t / alpha_t`` the probability-flow ODE
is ``d(x / alpha) = eps d rho``; DEIS integrates the Lagrange polynomial through the last
``order`` noise predictions, interpolating in ``log(rho)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..configuration import register_to_config
from .common import (
    PREDICTION_TYPES,
    TIMESTEP_SPACINGS,
    SchedulerOutput,
    alpha_sigma,
    check_num_inference_steps,
    predict_epsilon,
    predict_x0,
    solver_timesteps,
    threshold_sample,
)
from .exponential_integrator import DPMCoefficients, VPSolverMixin, dpm_update, solver_sigmas
from .schedule_requests import refuse_flow_options


def _log(value: np.float32) -> np.float32:
    """float32 natural log, evaluated as diffusers does (numpy on a 0-d float32 array)."""
    return np.log(np.asarray(value, dtype=np.float32))


def _integral_2(t: np.float32, b: np.float32, c: np.float32) -> np.float32:
    """Antiderivative in rho of the order-2 log-rho Lagrange basis through ``b`` (node) and ``c``."""
    return t * (-_log(c) + _log(t) - 1) / (_log(b) - _log(c))


def _integral_3(t: np.float32, b: np.float32, c: np.float32, d: np.float32) -> np.float32:
    """Antiderivative in rho of the order-3 log-rho Lagrange basis through ``b`` (node), ``c``, ``d``."""
    lt, lb, lc, ld = _log(t), _log(b), _log(c), _log(d)
    numerator = t * (lc * (ld - lt + 1) - ld * lt + ld + lt**2 - 2 * lt + 2)
    return numerator / ((lb - lc) * (lb - ld))


class DEISMultistepScheduler(VPSolverMixin):
    """DEIS multistep (log-rho), orders 1-3."""

    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Sequence[float] | np.ndarray | None = None,
        solver_order: int = 2,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        algorithm_type: str = "deis",
        solver_type: str = "logrho",
        lower_order_final: bool = True,
        use_karras_sigmas: bool | None = False,
        use_exponential_sigmas: bool | None = False,
        use_beta_sigmas: bool | None = False,
        use_flow_sigmas: bool | None = False,
        flow_shift: float = 1.0,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
    ) -> None:
        if algorithm_type in ("dpmsolver", "dpmsolver++"):  # a DPM-Solver config: DEIS equivalent
            self.register_to_config(algorithm_type="deis")
        if solver_type in ("midpoint", "heun", "bh1", "bh2"):
            self.register_to_config(solver_type="logrho")
        self._check_choices(
            algorithm_type=("deis",), solver_type=("logrho",), solver_order=(1, 2, 3),
            prediction_type=PREDICTION_TYPES, timestep_spacing=TIMESTEP_SPACINGS,
        )
        self._check_unsupported("use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting")
        self._init_noise_schedule(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas)
        self.model_outputs: list[torch.Tensor | None] = [None] * solver_order
        self.lower_order_nums = 0

    def set_timesteps(
        self, num_inference_steps: int, device: str | torch.device | None = None, mu: float | None = None
    ) -> None:
        """Integer timesteps, sigmas, and the per-step ``rho = sigma_t / alpha_t``.

        ``mu`` (a flow-matching shift) is refused with a ``ScheduleRequestError``.
        """
        cfg = self.config
        refuse_flow_options(type(self).__name__, mu)
        n = check_num_inference_steps(type(self).__name__, num_inference_steps, cfg.num_train_timesteps)
        timesteps = solver_timesteps(cfg.timestep_spacing, cfg.num_train_timesteps, n, cfg.steps_offset, cfg.num_train_timesteps)
        timesteps, self.sigmas = solver_sigmas(cfg, self.alphas_cumprod, timesteps, n, final="last", scheduler=type(self).__name__)
        self._first_order = DPMCoefficients.of(self.sigmas, "dpmsolver")
        alpha, sigma = alpha_sigma(self.sigmas)
        self._alpha, self._sigma = alpha.tolist(), sigma.tolist()
        self._rho = (sigma / alpha).numpy()
        self._set_schedule(torch.from_numpy(np.asarray(timesteps)).to(device=device, dtype=torch.int64), len(timesteps))
        self.model_outputs = [None] * cfg.solver_order
        self.lower_order_nums = 0
        self._multistep_cache: dict[tuple[int, int], tuple[float, ...]] = {}

    def convert_model_output(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """The noise prediction eps, recomputed from x0 so thresholding applies."""
        i, cfg = self._step_index, self.config
        alpha_t, sigma_t = self._alpha[i], self._sigma[i]
        x0 = predict_x0(cfg.prediction_type, model_output, sample, alpha_t, sigma_t)
        if cfg.thresholding:
            x0 = threshold_sample(x0, cfg.dynamic_thresholding_ratio, cfg.sample_max_value)
        return predict_epsilon("sample", x0, sample, alpha_t, sigma_t)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor, ...]:
        """One DEIS update of order up to ``solver_order``."""
        cfg = self.config
        i = self._advance_index(timestep)
        self._check_output_shape(model_output, sample)
        n = len(self.timesteps)
        final = i == n - 1 and cfg.lower_order_final and n < 15
        second_to_final = i == n - 2 and cfg.lower_order_final and n < 15

        # 1. eps at this step, pushed on the history
        eps = self.convert_model_output(model_output, sample)
        self.model_outputs = [*self.model_outputs[1:], eps]

        # 2. the order, then 3. integrate the eps polynomial in rho
        if cfg.solver_order == 1 or self.lower_order_nums < 1 or final:
            prev_sample = dpm_update(self._first_order, i, 1, self.model_outputs, sample, None, multistep=True)
        elif cfg.solver_order == 2 or self.lower_order_nums < 2 or second_to_final:
            prev_sample = self._multistep(sample, i, 2)
        else:
            prev_sample = self._multistep(sample, i, 3)
        self.lower_order_nums = min(self.lower_order_nums + 1, cfg.solver_order)
        self._step_index = i + 1
        return SchedulerOutput(prev_sample=prev_sample) if return_dict else (prev_sample,)

    def _multistep(self, sample: torch.Tensor, i: int, order: int) -> torch.Tensor:
        """``x_t = alpha_t (x_s / alpha_s + sum_k c_k eps_k)`` with ``c_k`` the integrated basis."""
        c_alpha_s, *coefficients = self._coefficients(i, order)
        x = sample / c_alpha_s
        for c_k, eps_k in zip(coefficients, reversed(self.model_outputs[-order:])):
            x = x + c_k * eps_k
        return self._alpha[i + 1] * x

    def _coefficients(self, i: int, order: int) -> tuple[float, ...]:
        """``(alpha_s0, c_0, ..., c_{order-1})`` at step ``i`` (float32, as diffusers)."""
        key = (i, order)
        if key not in self._multistep_cache:
            rho_t, rho_0, rho_1, rho_2 = (self._rho[k] if k >= 0 else np.float32(np.nan) for k in (i + 1, i, i - 1, i - 2))
            if order == 2:
                c = (
                    _integral_2(rho_t, rho_0, rho_1) - _integral_2(rho_0, rho_0, rho_1),
                    _integral_2(rho_t, rho_1, rho_0) - _integral_2(rho_0, rho_1, rho_0),
                )
            else:
                c = (
                    _integral_3(rho_t, rho_0, rho_1, rho_2) - _integral_3(rho_0, rho_0, rho_1, rho_2),
                    _integral_3(rho_t, rho_1, rho_2, rho_0) - _integral_3(rho_0, rho_1, rho_2, rho_0),
                    _integral_3(rho_t, rho_2, rho_0, rho_1) - _integral_3(rho_0, rho_2, rho_0, rho_1),
                )
            self._multistep_cache[key] = (self._alpha[i], *(float(v) for v in c))
        return self._multistep_cache[key]
