"""What the exponential-integrator solvers share: DPM-Solver (multistep and singlestep), UniPC, DEIS.

They work in the variance-preserving space ``x = alpha_t x0 + sigma_t eps`` and step in
``lambda = log(alpha_t / sigma_t)``. This module holds their base class ``VPSolverMixin``, turns
a timestep grid into sigmas, and holds the DPM-Solver update coefficients (Lu et al. 2022,
arXiv:2206.00927 and arXiv:2211.01095).

Coefficients are computed for every step at once with the same float32 expressions diffusers
evaluates per step, so the numbers agree exactly; ``step`` only looks them up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .common import (
    SchedulerMixin,
    alpha_sigma,
    broadcast_to,
    check_one_sigma_ramp,
    exponential_sigmas,
    half_log_snr,
    karras_sigmas,
    predict_epsilon,
    predict_x0,
    sigma_to_t,
    threshold_sample,
    train_sigmas,
)


def solver_sigmas(
    cfg: Mapping[str, Any], alphas_cumprod: torch.Tensor, timesteps: np.ndarray, n: int,
    round_karras: bool = True, final: str | None = None, scheduler: str = "scheduler",
) -> tuple[np.ndarray, torch.Tensor]:
    """Sigmas for integer ``timesteps``, or a karras/exponential ramp and its timesteps.

    ``final`` is the sigma appended after the last step: ``"zero"``, ``"sigma_min"`` (the
    smallest training sigma) or ``"last"`` (repeat the ramp's last sigma); by default the
    config's ``final_sigmas_type``.
    """
    check_one_sigma_ramp(scheduler, cfg)
    table = train_sigmas(alphas_cumprod)
    final = final or cfg.get("final_sigmas_type", "zero")
    if cfg.get("use_karras_sigmas") or cfg.get("use_exponential_sigmas"):
        flipped = np.flip(table).copy()
        low = cfg.get("sigma_min") if cfg.get("sigma_min") is not None else flipped[-1].item()
        high = cfg.get("sigma_max") if cfg.get("sigma_max") is not None else flipped[0].item()
        karras = bool(cfg.get("use_karras_sigmas"))
        sigmas = (karras_sigmas if karras else exponential_sigmas)(low, high, n)
        timesteps = sigma_to_t(sigmas, np.log(table))
        if karras and round_karras:
            timesteps = timesteps.round()
    else:
        sigmas = np.interp(timesteps, np.arange(0, len(table)), table)
        final = "sigma_min" if final == "last" else final
    if final == "sigma_min":
        last = (((1 - alphas_cumprod[0]) / alphas_cumprod[0]) ** 0.5).item()
    else:
        last = sigmas[-1] if final == "last" else 0.0
    return timesteps, torch.from_numpy(np.concatenate([sigmas, [last]]).astype(np.float32))


class VPSolverMixin(SchedulerMixin):
    """Shared parts of the exponential-integrator solvers: state before ``set_timesteps``, I/O.

    The sample lives in the variance-preserving space, so the model sees it unscaled and the
    starting noise has unit standard deviation. ``self.sigmas`` holds the VE sigma of each
    training step until ``set_timesteps`` replaces it with the inference sigmas.
    """

    sigmas: torch.Tensor
    alphas_cumprod: torch.Tensor

    def _init_train_state(self) -> None:
        """Before ``set_timesteps``: every training step (float32, descending) and its sigma; unit starting noise."""
        n = self.config.num_train_timesteps
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5
        self.timesteps = torch.from_numpy(np.linspace(0, n - 1, n, dtype=np.float32)[::-1].copy())
        self.init_noise_sigma = 1.0

    def _init_lambda_table(self) -> None:
        """DPM-Solver's ``alpha_t``, ``sigma_t`` and ``lambda_t`` per training step, and the timesteps.

        ``set_timesteps`` clips the schedule where ``lambda_t < lambda_min_clipped``; until then
        ``timesteps`` lists every training step (float32, descending), as in diffusers.
        """
        n = self.config.num_train_timesteps
        self.alpha_t = torch.sqrt(self.alphas_cumprod)
        self.sigma_t = torch.sqrt(1 - self.alphas_cumprod)
        self.lambda_t = torch.log(self.alpha_t) - torch.log(self.sigma_t)
        self.timesteps = torch.from_numpy(np.linspace(0, n - 1, n, dtype=np.float32)[::-1].copy())

    def scale_model_input(self, sample: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """These solvers feed the sample to the model unscaled."""
        return sample

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``alpha_t x0 + sigma_t eps`` at each of ``timesteps`` (values from ``self.timesteps``)."""
        sigmas = self.sigmas.to(device=original_samples.device, dtype=original_samples.dtype)
        sigma = broadcast_to(sigmas[self._step_indices(timesteps)], original_samples)
        alpha_t, sigma_t = alpha_sigma(sigma)
        return alpha_t * original_samples + sigma_t * noise


def _shift(values: torch.Tensor, k: int) -> torch.Tensor:
    """``out[i] = values[i + k]``, NaN where that is outside the table."""
    out = torch.full_like(values, float("nan"))
    if k >= 0:
        out[: len(values) - k] = values[k:]
    else:
        out[-k:] = values[: len(values) + k]
    return out


@dataclasses.dataclass
class DPMCoefficients:
    """Per sigma index: ``alpha_t``, ``sigma_t`` (VP) and ``lambda`` as float32 tensors and lists."""

    alpha: torch.Tensor
    sigma: torch.Tensor
    lam: torch.Tensor
    algorithm: str
    solver_type: str
    cache: dict[tuple[str, int], list[tuple[float, ...]]] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, sigmas: torch.Tensor, algorithm: str = "dpmsolver++", solver_type: str = "midpoint") -> DPMCoefficients:
        alpha, sigma = alpha_sigma(sigmas)
        return cls(alpha, sigma, half_log_snr(sigmas), algorithm, solver_type)

    def convert(self, cfg: Mapping[str, Any], model_output: torch.Tensor, sample: torch.Tensor, i: int) -> torch.Tensor:
        """The model output as x0 (``dpmsolver++`` family) or eps (``dpmsolver`` family) at index ``i``."""
        if cfg.get("variance_type") in ("learned", "learned_range"):
            model_output = model_output[:, : sample.shape[1]]
        alpha_t, sigma_t = self.alpha[i].item(), self.sigma[i].item()
        kind = cfg["prediction_type"]
        if self.algorithm.endswith("++"):
            x0 = predict_x0(kind, model_output, sample, alpha_t, sigma_t)
            if cfg["thresholding"]:
                x0 = threshold_sample(x0, cfg["dynamic_thresholding_ratio"], cfg["sample_max_value"])
            return x0
        eps = predict_epsilon(kind, model_output, sample, alpha_t, sigma_t)
        if cfg["thresholding"]:
            x0 = predict_x0("epsilon", eps, sample, alpha_t, sigma_t)
            x0 = threshold_sample(x0, cfg["dynamic_thresholding_ratio"], cfg["sample_max_value"])
            eps = predict_epsilon("sample", x0, sample, alpha_t, sigma_t)
        return eps

    def table(self, mode: str, order: int) -> list[tuple[float, ...]]:
        """Coefficient rows, one per step index, for ``mode`` ("multistep"/"singlestep") and ``order``."""
        key = (mode, order)
        if key not in self.cache:
            # index of the sample the update starts from: s0 (multistep) or s_{order-1} (singlestep)
            base = 0 if mode == "multistep" else -(order - 1)
            at, st, lt = (_shift(v, 1) for v in (self.alpha, self.sigma, self.lam))
            ab, sb, lb = (_shift(v, base) for v in (self.alpha, self.sigma, self.lam))
            h = lt - lb
            columns = _update_coefficients(self.algorithm, self.solver_type, mode, order, at, st, ab, sb, h)
            columns = (*columns, *self._ratios(mode, order, h))
            self.cache[key] = list(zip(*(c.tolist() for c in columns)))
        return self.cache[key]

    def _ratios(self, mode: str, order: int, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Scalars of the finite differences, from the step ratios ``r_k = h_k / h``.

        order 2: ``1/r0``; multistep order 3: ``1/r0, 1/r1, r0/(r0+r1), 1/(r0+r1)``;
        singlestep order 3: ``1/r0, 1/r1, r0, r1, r0-r1``.
        """
        if order == 1:
            return ()
        l0, l1, l2 = self.lam, _shift(self.lam, -1), _shift(self.lam, -2)
        if order == 2:
            return (1.0 / ((l0 - l1) / h),)
        if mode == "multistep":
            r0, r1 = (l0 - l1) / h, (l1 - l2) / h
            return 1.0 / r0, 1.0 / r1, r0 / (r0 + r1), 1.0 / (r0 + r1)
        r0, r1 = (l0 - l2) / h, (l1 - l2) / h
        return 1.0 / r0, 1.0 / r1, r0, r1, r0 - r1


def _update_coefficients(
    algorithm: str, solver_type: str, mode: str, order: int,
    alpha_t: torch.Tensor, sigma_t: torch.Tensor, alpha_s: torch.Tensor, sigma_s: torch.Tensor, h: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """``(c_x, c_0, c_1, c_2, c_z)`` with ``x_t = c_x x_s + c_0 D0 + c_1 D1 + c_2 D2 + c_z z``.

    Each coefficient is the float32 expression of DPM-Solver(++) as written in the papers
    (signs folded in), order ``order``, ``solver_type`` midpoint or heun.
    """
    zero = torch.zeros_like(h)
    heun = solver_type == "heun"
    if algorithm == "dpmsolver++":  # data prediction, ODE (DPM-Solver++ eqs. 9, 10 and Alg. 2)
        phi = torch.exp(-h) - 1.0
        c_x, c_0, c_z = sigma_t / sigma_s, -(alpha_t * phi), zero
        c_1 = alpha_t * (phi / h + 1.0) if heun or order == 3 else -(0.5 * (alpha_t * phi))
        c_2 = -(alpha_t * ((torch.exp(-h) - 1.0 + h) / h**2 - 0.5))
    elif algorithm == "dpmsolver":  # noise prediction, ODE (DPM-Solver eqs. 3.5-3.7)
        phi = torch.exp(h) - 1.0
        c_x, c_0, c_z = alpha_t / alpha_s, -(sigma_t * phi), zero
        c_1 = -(sigma_t * (phi / h - 1.0)) if heun or order == 3 else -(0.5 * (sigma_t * phi))
        c_2 = -(sigma_t * ((torch.exp(h) - 1.0 - h) / h**2 - 0.5))
    elif algorithm == "sde-dpmsolver++":  # data prediction, SDE
        decay = 1 - torch.exp(-2.0 * h)
        c_x, c_0 = sigma_t / sigma_s * torch.exp(-h), alpha_t * decay
        c_z = sigma_t * torch.sqrt(1.0 - torch.exp(-2 * h))
        c_1 = alpha_t * ((1.0 - torch.exp(-2.0 * h)) / (-2.0 * h) + 1.0) if heun or order == 3 else 0.5 * (alpha_t * decay)
        c_2 = alpha_t * ((1.0 - torch.exp(-2.0 * h) - 2.0 * h) / (2.0 * h) ** 2 - 0.5)
        if mode == "singlestep":
            c_2 = alpha_t * ((1.0 - torch.exp(-2.0 * h) + -2.0 * h) / (-2.0 * h) ** 2 - 0.5)
    else:  # sde-dpmsolver: noise prediction, SDE
        phi = torch.exp(h) - 1.0
        c_x, c_0 = alpha_t / alpha_s, -(2.0 * (sigma_t * phi))
        c_z = sigma_t * torch.sqrt(torch.exp(2 * h) - 1.0)
        c_1 = -(2.0 * (sigma_t * (phi / h - 1.0))) if heun else -(sigma_t * phi)
        c_2 = zero
    return c_x, c_0, c_1, c_2, c_z


def dpm_update(
    coefficients: DPMCoefficients, i: int, order: int, model_outputs: Sequence[torch.Tensor | None],
    sample: torch.Tensor, noise: torch.Tensor | None, multistep: bool,
) -> torch.Tensor:
    """``x_t`` from the last ``order`` converted model outputs, by the rule of the given order."""
    mode = "multistep" if multistep else "singlestep"
    row = coefficients.table(mode, order)[i]
    c_x, c_0, c_1, c_2, c_z = row[:5]
    m0 = model_outputs[-1]
    if order == 1:
        x_t = c_x * sample + c_0 * m0
    elif order == 2:
        m1, inv_r0 = model_outputs[-2], row[5]
        d0, d1 = (m0 if multistep else m1), inv_r0 * (m0 - m1)
        x_t = c_x * sample + c_0 * d0 + c_1 * d1
    else:
        x_t = _third_order(coefficients, row, model_outputs, sample, multistep)
    return x_t + c_z * noise if noise is not None else x_t


def _third_order(
    coefficients: DPMCoefficients, row: tuple[float, ...], model_outputs: Sequence[torch.Tensor | None],
    sample: torch.Tensor, multistep: bool,
) -> torch.Tensor:
    """Third-order update: D1 and D2 from three model outputs (DPM-Solver++ Alg. 3 / singlestep eq. 3.8)."""
    c_x, c_0, c_1, c_2 = row[:4]
    m0, m1, m2 = model_outputs[-1], model_outputs[-2], model_outputs[-3]
    if multistep:
        inv_r0, inv_r1, r0_share, inv_r_sum = row[5:]
        d1_0, d1_1 = inv_r0 * (m0 - m1), inv_r1 * (m1 - m2)
        d1 = d1_0 + r0_share * (d1_0 - d1_1)
        d2 = inv_r_sum * (d1_0 - d1_1)
        return c_x * sample + c_0 * m0 + c_1 * d1 + c_2 * d2
    inv_r0, inv_r1, r0, r1, r_gap = row[5:]
    d1_0, d1_1 = inv_r1 * (m1 - m2), inv_r0 * (m0 - m2)
    if coefficients.solver_type == "midpoint":
        return c_x * sample + c_0 * m2 + c_1 * d1_1
    d1 = (r0 * d1_0 - r1 * d1_1) / r_gap
    d2 = 2.0 * (d1_1 - d1_0) / r_gap
    return c_x * sample + c_0 * m2 + c_1 * d1 + c_2 * d2
