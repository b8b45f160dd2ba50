"""LMS: linear multistep on the probability-flow ODE in sigma (Karras et al. 2022; k-diffusion ``sample_lms``).

The step integrates the Lagrange polynomial through the last ``order`` derivatives
``d_k = (x_k - x0_k) / sigma_k`` from sigma_i to sigma_{i+1}.
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
    SigmaSchedulerMixin,
    check_num_inference_steps,
)


# 21-point Gauss-Kronrod rule on [-1, 1] (Piessens et al., QUADPACK, 1983): nodes, weights.
_GK21_POSITIVE = (
    0.995657163025808080735527280689003, 0.973906528517171720077964012084452,
    0.930157491355708226001207180059508, 0.865063366688984510732096688423493,
    0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
    0.562757134668604683339000099272694, 0.433395394129247190799265943165784,
    0.294392862701460198131126603103866, 0.148874338981631210884826001129720,
)
_GK21_POSITIVE_WEIGHTS = (
    0.011694638867371874278064396062192, 0.032558162307964727478818972459390,
    0.054755896574351996031381300244580, 0.075039674810919952767043140916190,
    0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
    0.123491976262065851077958109831074, 0.134709217311473325928054001771707,
    0.142775938577060080797094273138717, 0.147739104901338491374841515972068,
)
_GK21_NODES = (*_GK21_POSITIVE, 0.0, *(-x for x in reversed(_GK21_POSITIVE)))
_GK21_WEIGHTS = np.array(
    [*_GK21_POSITIVE_WEIGHTS, 0.149445554002916905664936468389821, *reversed(_GK21_POSITIVE_WEIGHTS)]
)


def _lagrange_basis(tau: torch.Tensor, nodes: torch.Tensor, j: int) -> torch.Tensor:
    """``l_j(tau) = prod_{k != j} (tau - s_k) / (s_j - s_k)``, in the dtype of ``nodes``."""
    value = torch.ones_like(tau)
    for k in range(len(nodes)):
        if k != j:
            value = value * ((tau - nodes[k]) / (nodes[j] - nodes[k]))
    return value


class LMSDiscreteScheduler(SigmaSchedulerMixin):
    """Linear multistep (up to 4th order) k-diffusion sampler."""

    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Sequence[float] | np.ndarray | None = None,
        use_karras_sigmas: bool | None = False,
        use_exponential_sigmas: bool | None = False,
        use_beta_sigmas: bool | None = False,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
    ) -> None:
        self._check_choices(prediction_type=PREDICTION_TYPES, timestep_spacing=TIMESTEP_SPACINGS)
        self._check_unsupported("use_beta_sigmas")
        self._init_noise_schedule(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas)
        self.derivatives: list[torch.Tensor] = []
        self.set_timesteps(num_train_timesteps)  # step() works before set_timesteps, as in diffusers

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Timesteps (float32) and sigmas; forgets the derivative history."""
        n = check_num_inference_steps(type(self).__name__, num_inference_steps, self.config.num_train_timesteps)
        timesteps, sigmas = self._inference_sigmas(n)
        self._install_sigmas(torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32)))
        self._set_schedule(torch.from_numpy(np.asarray(timesteps)).to(device=device, dtype=torch.float32), n)
        self.derivatives = []
        self._coefficients: dict[tuple[int, int], list[float]] = {}

    def get_lms_coefficient(self, order: int, t: int, current_order: int) -> float:
        """``integral_{sigma_t}^{sigma_{t+1}} l_j(tau) d tau`` for the Lagrange basis ``l_j``, j = current_order."""
        return self._lms_coefficients(order, t)[current_order]

    def _lms_coefficients(self, order: int, i: int) -> list[float]:
        """All ``order`` coefficients at step ``i``, each by one 21-point Gauss-Kronrod rule.

        ``l_j`` has degree < 4, so the rule is exact; it is evaluated at float32 like diffusers
        (which calls QUADPACK on a float32 integrand), so both agree to the last bits.
        """
        key = (order, i)
        if key not in self._coefficients:
            lo, hi = self._sigmas_list[i], self._sigmas_list[i + 1]
            center, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
            tau = torch.tensor([center + half * x for x in _GK21_NODES], dtype=torch.float32)
            nodes = self.sigmas[i - torch.arange(order)]
            self._coefficients[key] = [
                half * float(np.dot(_GK21_WEIGHTS, _lagrange_basis(tau, nodes, j).double().numpy()))
                for j in range(order)
            ]
        return self._coefficients[key]

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        order: int = 4,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor, ...]:
        """One LMS step of order ``min(order, steps so far + 1)``."""
        i = self._advance_index(timestep)
        self._check_output_shape(model_output, sample)
        sigma = self._sigmas_list[i]

        # 1. x0 from the model output
        x0 = self._predict_x0(model_output, sample, sigma, i)

        # 2. d_i = (x - x0) / sigma, keeping the last `order` derivatives
        self.derivatives.append((sample - x0) / sigma)
        if len(self.derivatives) > order:
            self.derivatives.pop(0)

        # 3. x_{i+1} = x_i + sum_j c_j d_{i-j}
        order = min(i + 1, order)
        coefficients = self._lms_coefficients(order, i)
        prev_sample = sample + sum(c * d for c, d in zip(coefficients, reversed(self.derivatives)))
        self._step_index = i + 1
        if not return_dict:
            return (prev_sample, x0)
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
