"""DPM-Solver(++) multistep: exponential integrators in half log-SNR lambda.

Lu et al. 2022, "DPM-Solver++" (arXiv:2211.01095), multistep orders 1-3; SDE variants from
Gonzalez et al. 2023 / Lu et al. 2022 (sde-dpmsolver++). With ``h = lambda_t - lambda_s``:

    dpmsolver++ order 1:  x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) x0_s        (eq. 9)
    order 2 adds the finite difference D1 = (x0_s0 - x0_s1) / r0, order 3 also D2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .. import errors
from ..configuration import register_to_config
from ..torch_utils import randn_tensor
from .common import (
    PREDICTION_TYPES,
    TIMESTEP_SPACINGS,
    SchedulerOutput,
    check_choice,
    check_num_inference_steps,
    solver_timesteps,
)
from .exponential_integrator import DPMCoefficients, VPSolverMixin, dpm_update, solver_sigmas
from .schedule_requests import custom_solver_timesteps, refuse_flow_options, requested_schedule

ALGORITHM_TYPES = ("dpmsolver++", "dpmsolver", "sde-dpmsolver++", "sde-dpmsolver")


class DPMSolverMultistepScheduler(VPSolverMixin):
    """DPM-Solver++ (default) and DPM-Solver, multistep, orders 1-3, ODE or SDE.

    Example::

        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
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
        solver_order: int = 2,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        algorithm_type: str = "dpmsolver++",
        solver_type: str = "midpoint",
        lower_order_final: bool = True,
        euler_at_final: bool = False,
        use_karras_sigmas: bool | None = False,
        use_exponential_sigmas: bool | None = False,
        use_beta_sigmas: bool | None = False,
        use_lu_lambdas: bool | None = False,
        use_flow_sigmas: bool | None = False,
        flow_shift: float = 1.0,
        final_sigmas_type: str = "zero",
        lambda_min_clipped: float = -float("inf"),
        variance_type: str | None = None,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
    ) -> None:
        self._validate(algorithm_type, solver_type, solver_order, final_sigmas_type)
        self._check_unsupported("use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas", "use_dynamic_shifting")
        self._init_noise_schedule(
            num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
            rescale_betas_zero_snr=rescale_betas_zero_snr,
        )
        self._init_lambda_table()
        self.model_outputs: list[torch.Tensor | None] = [None] * solver_order
        self.lower_order_nums = 0

    def _validate(self, algorithm_type: str, solver_type: str, solver_order: int, final_sigmas_type: str) -> None:
        name = type(self).__name__
        if algorithm_type == "deis":  # a DEIS config: use its DPM-Solver++ equivalent, as diffusers does
            self.register_to_config(algorithm_type="dpmsolver++")
            algorithm_type = "dpmsolver++"
        if solver_type in ("logrho", "bh1", "bh2"):
            self.register_to_config(solver_type="midpoint")
        check_choice(name, "algorithm_type", algorithm_type, ALGORITHM_TYPES)
        check_choice(name, "solver_type", self.config.solver_type, ("midpoint", "heun"))
        check_choice(name, "solver_order", solver_order, (1, 2, 3) if algorithm_type != "sde-dpmsolver" else (1, 2))
        check_choice(name, "final_sigmas_type", final_sigmas_type, ("zero", "sigma_min"))
        if algorithm_type in ("dpmsolver", "sde-dpmsolver") and final_sigmas_type == "zero":
            raise errors.SchedulerConfigError(name, "final_sigmas_type", final_sigmas_type, ["sigma_min"])
        self._check_choices(prediction_type=PREDICTION_TYPES, timestep_spacing=TIMESTEP_SPACINGS)

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        mu: float | None = None,
        timesteps: Sequence[int] | None = None,
    ) -> None:
        """Integer timesteps (optionally clipped in lambda), sigmas, and every step's coefficients.

        Args:
            timesteps: custom integer training timesteps, highest first, instead of ``num_inference_steps``.
            mu: flow-matching shift; refused (no dynamic shifting here).

        Raises:
            ScheduleRequestError: not exactly one of ``num_inference_steps`` and ``timesteps``, custom
                timesteps with a sigma ramp or Lu lambdas, or ``mu``.
        """
        cfg, name = self.config, type(self).__name__
        refuse_flow_options(name, mu)
        if requested_schedule(name, num_inference_steps, timesteps=timesteps) == "timesteps":
            timesteps = custom_solver_timesteps(name, cfg, timesteps)  # type: ignore[arg-type]
            n = len(timesteps)
        else:
            n = check_num_inference_steps(name, num_inference_steps, cfg.num_train_timesteps)
            clipped = torch.searchsorted(torch.flip(self.lambda_t, [0]), cfg.lambda_min_clipped).item()
            timesteps = solver_timesteps(cfg.timestep_spacing, cfg.num_train_timesteps, n, cfg.steps_offset, cfg.num_train_timesteps - clipped)
        round_karras = cfg.beta_schedule != "squaredcos_cap_v2"
        timesteps, self.sigmas = solver_sigmas(cfg, self.alphas_cumprod, timesteps, n, round_karras, scheduler=type(self).__name__)
        self._coefficients = DPMCoefficients.of(self.sigmas, cfg.algorithm_type, cfg.solver_type)
        self._set_schedule(torch.from_numpy(np.asarray(timesteps)).to(device=device, dtype=torch.int64), len(timesteps))
        self.model_outputs = [None] * cfg.solver_order
        self.lower_order_nums = 0

    def convert_model_output(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """The model output as x0 (DPM-Solver++) or eps (DPM-Solver), at the current sigma."""
        return self._coefficients.convert(self.config, model_output, sample, self._step_index)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor, ...]:
        """One multistep update from ``timestep`` to the next."""
        cfg = self.config
        i = self._advance_index(timestep)
        self._check_output_shape(model_output, sample, learned=cfg.variance_type in ("learned", "learned_range"))
        n = len(self.timesteps)
        final = i == n - 1 and (cfg.euler_at_final or (cfg.lower_order_final and n < 15) or cfg.final_sigmas_type == "zero")
        second_to_final = i == n - 2 and cfg.lower_order_final and n < 15

        # 1. the model output as data (x0) or noise (eps) prediction; push it on the history
        model_output = self.convert_model_output(model_output, sample)
        self.model_outputs = [*self.model_outputs[1:], model_output]
        sample = sample.to(torch.float32)
        noise = None
        if cfg.algorithm_type.startswith("sde"):
            noise = variance_noise if variance_noise is not None else randn_tensor(
                model_output.shape, generator=generator, device=model_output.device, dtype=torch.float32
            )
            noise = noise.to(device=model_output.device, dtype=torch.float32)

        # 2. order: lower at the start (no history yet) and, if asked, at the end
        if cfg.solver_order == 1 or self.lower_order_nums < 1 or final:
            order = 1
        elif cfg.solver_order == 2 or self.lower_order_nums < 2 or second_to_final:
            order = 2
        else:
            order = 3

        # 3. the exponential-integrator update of that order
        prev_sample = dpm_update(self._coefficients, i, order, self.model_outputs, sample, noise, multistep=True)
        self.lower_order_nums = min(self.lower_order_nums + 1, cfg.solver_order)
        prev_sample = prev_sample.to(model_output.dtype)
        self._step_index = i + 1
        return SchedulerOutput(prev_sample=prev_sample) if return_dict else (prev_sample,)
