"""UniPC: unified predictor-corrector multistep solver (Zhao et al. 2023, arXiv:2302.04867).

Each step first corrects the previous prediction with the fresh model output (UniC), then
predicts the next sample (UniP), both of order p with B(h) = h (bh1) or e^h - 1 (bh2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from ..configuration import register_to_config
from .common import (
    PREDICTION_TYPES,
    TIMESTEP_SPACINGS,
    SchedulerOutput,
    alpha_sigma,
    check_num_inference_steps,
    half_log_snr,
    predict_epsilon,
    predict_x0,
    solver_timesteps,
    threshold_sample,
)
from .exponential_integrator import VPSolverMixin, solver_sigmas
from .schedule_requests import refuse_flow_options


class _UniCoefficients(NamedTuple):
    """Scalars of one UniP/UniC update (float32 values as Python floats)."""

    c_x: float  # sigma_t / sigma_s0 (data) or alpha_t / alpha_s0 (noise)
    c_m0: float  # alpha_t * phi_1(h) (data) or sigma_t * phi_1(h) (noise)
    c_res: float  # alpha_t * B(h) (data) or sigma_t * B(h) (noise)
    inv_rks: tuple[float, ...]  # r_k of the history terms (D_k = (m_k - m0) / r_k)
    rhos: tuple[float, ...]


class UniPCMultistepScheduler(VPSolverMixin):
    """UniPC with bh1/bh2, orders 1-3 (any order works), on x0 (default) or eps."""

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
        predict_x0: bool = True,
        solver_type: str = "bh2",
        lower_order_final: bool = True,
        disable_corrector: Sequence[int] = (),
        solver_p: Any = None,
        use_karras_sigmas: bool | None = False,
        use_exponential_sigmas: bool | None = False,
        use_beta_sigmas: bool | None = False,
        use_flow_sigmas: bool | None = False,
        flow_shift: float = 1.0,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        final_sigmas_type: str = "zero",
        rescale_betas_zero_snr: bool = False,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        shift_terminal: float | None = None,
    ) -> None:
        if solver_type in ("midpoint", "heun", "logrho"):
            self.register_to_config(solver_type="bh2")
        self._check_choices(
            solver_type=("bh1", "bh2"), prediction_type=PREDICTION_TYPES, timestep_spacing=TIMESTEP_SPACINGS,
            final_sigmas_type=("zero", "sigma_min"),
        )
        self._check_unsupported(
            "use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting", "solver_p", "shift_terminal"
        )
        self._init_noise_schedule(
            num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
            rescale_betas_zero_snr=rescale_betas_zero_snr,
        )
        self.predict_x0 = predict_x0
        self.disable_corrector = list(disable_corrector)
        self._cache: dict[tuple[Any, ...], _UniCoefficients] = {}
        self._reset_history()

    def _reset_history(self) -> None:
        order = self.config.solver_order
        self.model_outputs: list[torch.Tensor | None] = [None] * order
        self.timestep_list: list[Any] = [None] * order
        self.lower_order_nums = 0
        self.last_sample: torch.Tensor | None = None
        self.this_order = 1

    def set_timesteps(
        self,
        num_inference_steps: int,
        device: str | torch.device | None = None,
        sigmas: list[float] | None = None,
        mu: float | None = None,
    ) -> None:
        """Integer timesteps, their sigmas, and a fresh history.

        ``sigmas`` and ``mu`` belong to flow-matching schedules (``use_flow_sigmas``,
        ``use_dynamic_shifting``), which diffusers also requires for them: refused with a
        ``ScheduleRequestError``.
        """
        cfg = self.config
        refuse_flow_options(type(self).__name__, mu, sigmas)
        n = check_num_inference_steps(type(self).__name__, num_inference_steps, cfg.num_train_timesteps)
        timesteps = solver_timesteps(cfg.timestep_spacing, cfg.num_train_timesteps, n, cfg.steps_offset, cfg.num_train_timesteps)
        final = "last" if cfg.final_sigmas_type == "sigma_min" else "zero"
        timesteps, self.sigmas = solver_sigmas(cfg, self.alphas_cumprod, timesteps, n, final=final, scheduler=type(self).__name__)
        self._alpha, self._sigma = (v.tolist() for v in alpha_sigma(self.sigmas))
        self._set_schedule(torch.from_numpy(np.asarray(timesteps)).to(device=device, dtype=torch.int64), len(timesteps))
        self._reset_history()

    def convert_model_output(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """The model output as x0 (``predict_x0``) or eps, at the current sigma."""
        i, cfg = self._step_index, self.config
        alpha_t, sigma_t = self._alpha[i], self._sigma[i]
        if not self.predict_x0:
            return predict_epsilon(cfg.prediction_type, model_output, sample, alpha_t, sigma_t)
        x0 = predict_x0(cfg.prediction_type, model_output, sample, alpha_t, sigma_t)
        if cfg.thresholding:
            x0 = threshold_sample(x0, cfg.dynamic_thresholding_ratio, cfg.sample_max_value)
        return x0

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor, ...]:
        """Correct the last prediction (UniC), then predict the next sample (UniP)."""
        i = self._advance_index(timestep)
        self._check_output_shape(model_output, sample)
        use_corrector = i > 0 and (i - 1) not in self.disable_corrector and self.last_sample is not None

        # 1. model output as x0 (or eps); 2. UniC: refine x_i with it
        m_t = self.convert_model_output(model_output, sample)
        if use_corrector:
            sample = self._corrector(m_t, self.last_sample, sample, self.this_order, i)

        # 3. push on the history; choose the order (lower at the start and the end)
        self.model_outputs = [*self.model_outputs[1:], m_t]
        self.timestep_list = [*self.timestep_list[1:], timestep]
        order = min(self.config.solver_order, len(self.timesteps) - i) if self.config.lower_order_final else self.config.solver_order
        self.this_order = min(order, self.lower_order_nums + 1)

        # 4. UniP: predict x_{i+1}
        self.last_sample = sample
        prev_sample = self._predictor(sample, self.this_order, i)
        self.lower_order_nums = min(self.lower_order_nums + 1, self.config.solver_order)
        self._step_index = i + 1
        return SchedulerOutput(prev_sample=prev_sample) if return_dict else (prev_sample,)

    def _predictor(self, x: torch.Tensor, order: int, i: int) -> torch.Tensor:
        """UniP-p (Alg. 1): ``x_t = c_x x - c_m0 m0 - c_res sum_k rho_k D_k``."""
        c = self._coefficients("p", order, i + 1, i, [i - k for k in range(1, order)], x.dtype)
        m0 = self.model_outputs[-1]
        x_t = c.c_x * x - c.c_m0 * m0
        if order > 1:
            d = torch.stack([(self.model_outputs[-(k + 1)] - m0) / r for k, r in enumerate(c.inv_rks, 1)], dim=1)
            x_t = x_t - c.c_res * torch.einsum("k,bkc...->bc...", torch.tensor(c.rhos, dtype=x.dtype), d)
        else:
            x_t = x_t - c.c_res * 0
        return x_t.to(x.dtype)

    def _corrector(self, m_t: torch.Tensor, x: torch.Tensor, x_t: torch.Tensor, order: int, i: int) -> torch.Tensor:
        """UniC-p (Alg. 2): refine the prediction with the model output at the new point."""
        c = self._coefficients("c", order, i, i - 1, [i - k - 1 for k in range(1, order)], x.dtype)
        m0 = self.model_outputs[-1]
        x_t_ = c.c_x * x - c.c_m0 * m0
        correction = 0
        if order > 1:
            d = torch.stack([(self.model_outputs[-(k + 1)] - m0) / r for k, r in enumerate(c.inv_rks, 1)], dim=1)
            correction = torch.einsum("k,bkc...->bc...", torch.tensor(c.rhos[:-1], dtype=x.dtype), d)
        x_t = x_t_ - c.c_res * (correction + c.rhos[-1] * (m_t - m0))
        return x_t.to(x.dtype)

    def _coefficients(self, kind: str, order: int, t: int, s0: int, history: list[int], dtype: torch.dtype) -> _UniCoefficients:
        """The float32 scalars of a UniP/UniC update, cached by the sigmas they depend on."""
        sigmas = self.sigmas
        key = (kind, order, self.predict_x0, self.config.solver_type, dtype, sigmas[t].item(), sigmas[s0].item(),
               *(sigmas[k].item() for k in history))
        if key not in self._cache:
            self._cache[key] = self._compute_coefficients(kind, order, t, s0, history, dtype)
        return self._cache[key]

    def _compute_coefficients(self, kind: str, order: int, t: int, s0: int, history: list[int], dtype: torch.dtype) -> _UniCoefficients:
        lam = lambda k: half_log_snr(self.sigmas[k])  # noqa: E731
        alpha_t, sigma_t = alpha_sigma(self.sigmas[t])
        alpha_s0, sigma_s0 = alpha_sigma(self.sigmas[s0])
        h = lam(t) - lam(s0)
        rks = [(lam(k) - lam(s0)) / h for k in history] + [torch.ones(())]
        hh = -h if self.predict_x0 else h
        h_phi_1 = torch.expm1(hh)
        b_h = hh if self.config.solver_type == "bh1" else torch.expm1(hh)
        rhos = _solve_rhos(kind, order, torch.stack(rks), hh, h_phi_1, b_h, dtype)
        if self.predict_x0:
            c_x, c_m0, c_res = sigma_t / sigma_s0, alpha_t * h_phi_1, alpha_t * b_h
        else:
            c_x, c_m0, c_res = alpha_t / alpha_s0, sigma_t * h_phi_1, sigma_t * b_h
        return _UniCoefficients(c_x.item(), c_m0.item(), c_res.item(), tuple(r.item() for r in rks[:-1]), rhos)


def _solve_rhos(
    kind: str, order: int, rks: torch.Tensor, hh: torch.Tensor, h_phi_1: torch.Tensor, b_h: torch.Tensor,
    dtype: torch.dtype,
) -> tuple[float, ...]:
    """The weights rho of the history terms: solve ``R rho = b`` (UniPC eq. 8, Vandermonde in r_k)."""
    rows, rhs = [], []
    h_phi_k, factorial = h_phi_1 / hh - 1, 1
    for k in range(1, order + 1):
        rows.append(torch.pow(rks, k - 1))
        rhs.append(h_phi_k * factorial / b_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    r_matrix, b = torch.stack(rows), torch.stack(rhs)
    if kind == "p":  # the predictor uses the first order - 1 conditions; order 2 has rho = 1/2
        if order == 1:
            return ()
        rhos = torch.tensor([0.5]) if order == 2 else torch.linalg.solve(r_matrix[:-1, :-1], b[:-1])
    else:
        rhos = torch.tensor([0.5]) if order == 1 else torch.linalg.solve(r_matrix, b)
    return tuple(rhos.to(dtype).tolist())
