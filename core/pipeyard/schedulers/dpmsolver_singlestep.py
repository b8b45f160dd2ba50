"""DPM-Solver(++) singlestep: each order-k step spends k model evaluations on one interval.

Lu et al. 2022 (arXiv:2206.00927, Alg. 1-2; DPM-Solver++ arXiv:2211.01095). The schedule is
cut into blocks of orders ``[1, 2, 3, 1, 2, 3, ...]`` (``order_list``); within a block every
evaluation restarts from the block's first sample, with a higher-order rule each time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from .. import errors
from ..configuration import register_to_config
from ..torch_utils import randn_tensor
from .common import (
    PREDICTION_TYPES,
    SchedulerOutput,
    check_num_inference_steps,
    solver_timesteps,
)
from .exponential_integrator import DPMCoefficients, VPSolverMixin, dpm_update, solver_sigmas
from .schedule_requests import custom_solver_timesteps, refuse_flow_options, requested_schedule

logger = logging.getLogger(__name__)

SINGLESTEP_ALGORITHMS = ("dpmsolver++", "dpmsolver", "sde-dpmsolver++")


def singlestep_orders(steps: int, order: int, lower_order_final: bool, final_zero: bool) -> list[int]:
    """The order used at each step: repeated ``1..order`` blocks, ending on a complete block."""
    if lower_order_final:
        blocks, rest = divmod(steps, order)
        if order == 1:
            orders = [1] * steps
        elif rest == 0:
            orders = list(range(1, order + 1)) * (blocks - 1) + list(range(1, order)) + [1]
        else:
            orders = list(range(1, order + 1)) * blocks + list(range(1, rest + 1))
    else:
        orders = list(range(1, order + 1)) * (steps // order)
    if final_zero:
        orders[-1] = 1
    return orders


class DPMSolverSinglestepScheduler(VPSolverMixin):
    """DPM-Solver(++) singlestep sampler, orders 1-3."""

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
        algorithm_type: str = "dpmsolver++",
        solver_type: str = "midpoint",
        lower_order_final: bool = False,
        use_karras_sigmas: bool | None = False,
        use_exponential_sigmas: bool | None = False,
        use_beta_sigmas: bool | None = False,
        use_flow_sigmas: bool | None = False,
        flow_shift: float = 1.0,
        final_sigmas_type: str = "zero",
        lambda_min_clipped: float = -float("inf"),
        variance_type: str | None = None,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
    ) -> None:
        if algorithm_type == "deis":
            self.register_to_config(algorithm_type="dpmsolver++")
        if solver_type in ("logrho", "bh1", "bh2"):
            self.register_to_config(solver_type="midpoint")
        self._check_choices(
            algorithm_type=SINGLESTEP_ALGORITHMS, solver_type=("midpoint", "heun"), solver_order=(1, 2, 3),
            prediction_type=PREDICTION_TYPES, final_sigmas_type=("zero", "sigma_min"),
        )
        if self.config.algorithm_type == "dpmsolver" and final_sigmas_type == "zero":
            raise errors.SchedulerConfigError(type(self).__name__, "final_sigmas_type", final_sigmas_type, ["sigma_min"])
        self._check_unsupported("use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting")
        self._init_noise_schedule(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas)
        self._init_lambda_table()
        self.model_outputs: list[torch.Tensor | None] = [None] * solver_order
        self.sample: torch.Tensor | None = None

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        mu: float | None = None,
        timesteps: Sequence[int] | None = None,
    ) -> None:
        """Integer timesteps (linspace, optionally clipped in lambda), sigmas and the order list.

        Args:
            timesteps: custom integer training timesteps, highest first, instead of ``num_inference_steps``.
            mu: flow-matching shift; refused (no dynamic shifting here).

        Raises:
            ScheduleRequestError: not exactly one of ``num_inference_steps`` and ``timesteps``, custom
                timesteps with a sigma ramp, or ``mu``.
        """
        cfg, name = self.config, type(self).__name__
        refuse_flow_options(name, mu)
        if requested_schedule(name, num_inference_steps, timesteps=timesteps) == "timesteps":
            timesteps = custom_solver_timesteps(name, cfg, timesteps)  # type: ignore[arg-type]
            n = len(timesteps)
        else:
            n = check_num_inference_steps(name, num_inference_steps, cfg.num_train_timesteps)
            clipped = torch.searchsorted(torch.flip(self.lambda_t, [0]), cfg.lambda_min_clipped).item()
            timesteps = solver_timesteps("linspace", cfg.num_train_timesteps, n, 0, cfg.num_train_timesteps - clipped)
        timesteps, self.sigmas = solver_sigmas(cfg, self.alphas_cumprod, timesteps, n, scheduler=type(self).__name__)
        self._coefficients = DPMCoefficients.of(self.sigmas, cfg.algorithm_type, cfg.solver_type)
        self._set_schedule(torch.from_numpy(np.asarray(timesteps)).to(device=device, dtype=torch.int64), n)
        self.model_outputs = [None] * cfg.solver_order
        self.sample = None
        if not cfg.lower_order_final and (n % cfg.solver_order != 0 or cfg.final_sigmas_type == "zero"):
            # an incomplete last block, or a final sigma of 0, needs a first-order finish (as diffusers)
            logger.info("DPMSolverSinglestepScheduler: setting lower_order_final=True for %d steps", n)
            self.register_to_config(lower_order_final=True)
        self.order_list = self.get_order_list(n)

    def get_order_list(self, num_inference_steps: int) -> list[int]:
        """The solver order used at each of ``num_inference_steps`` steps."""
        cfg = self.config
        return singlestep_orders(num_inference_steps, cfg.solver_order, cfg.lower_order_final, cfg.final_sigmas_type == "zero")

    def convert_model_output(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """The model output as x0 (DPM-Solver++) or eps (DPM-Solver), at the current sigma."""
        return self._coefficients.convert(self.config, model_output, sample, self._step_index)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor, ...]:
        """One evaluation of the current block: order 1 restarts a block from ``sample``."""
        i = self._advance_index(timestep)
        self._check_output_shape(model_output, sample, learned=self.config.variance_type in ("learned", "learned_range"))

        # 1. the model output as x0 or eps; push it on the history
        model_output = self.convert_model_output(model_output, sample)
        self.model_outputs = [*self.model_outputs[1:], model_output]
        noise = None
        if self.config.algorithm_type == "sde-dpmsolver++":
            noise = randn_tensor(model_output.shape, generator=generator, device=model_output.device, dtype=model_output.dtype)

        # 2. this step's order (lower while the history is short); a block starts at order 1
        order = self.order_list[i]
        while self.model_outputs[-order] is None:
            order -= 1
        if order == 1:
            self.sample = sample

        # 3. the order-k singlestep update from the block's first sample
        prev_sample = dpm_update(self._coefficients, i, order, self.model_outputs, self.sample, noise, multistep=False)
        self._step_index = i + 1
        return SchedulerOutput(prev_sample=prev_sample) if return_dict else (prev_sample,)
