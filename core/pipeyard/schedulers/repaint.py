"""RePaint: inpainting with an unconditional DDPM by resampling (Lugmayr et al. 2022, arXiv:2201.09865).

Each reverse step denoises the unknown region with a DDIM-style update (``eta`` sets its noise)
and takes the known region straight from the original image, noised to the same level
(Alg. 1). To harmonise the two, the schedule jumps back ``jump_length`` steps
``jump_n_sample - 1`` times per segment; the pipeline calls :meth:`RePaintScheduler.undo_step`
to re-noise the sample forward for each such jump (eq. 8 ``q(x_t | x_{t-1})``).

Notation: ``ab`` is ``alpha_bar`` at ``t``, ``ab_prev`` at ``t - T / n`` (1 before the start).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from ..configuration import register_to_config
from ..outputs import BaseOutput
from ..torch_utils import randn_tensor
from .common import AlphaBarNoiseMixin, SchedulerMixin, check_num_inference_steps

REPAINT_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")


@dataclasses.dataclass
class RePaintSchedulerOutput(BaseOutput):
    """What :meth:`RePaintScheduler.step` returns.

    Attributes:
        prev_sample: known region from the image, unknown region denoised, at the previous timestep.
        pred_original_sample: the clean-sample estimate ``x0`` of the unknown region.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class RePaintScheduler(AlphaBarNoiseMixin, SchedulerMixin):
    """Resampling inpainting scheduler for DDPM-trained unconditional models.

    Example::

        scheduler = RePaintScheduler.from_config(ddpm_scheduler.config)
        scheduler.set_timesteps(250, jump_length=10, jump_n_sample=10)
    """

    order = 1
    _compatibles = ()

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        eta: float = 0.0,
        trained_betas: Sequence[float] | np.ndarray | None = None,
        clip_sample: bool = True,
    ) -> None:
        self._init_noise_schedule(
            num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
            beta_schedules=REPAINT_BETA_SCHEDULES,
        )
        self.one = torch.tensor(1.0)
        self.final_alpha_cumprod = torch.tensor(1.0)
        self.eta = eta

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """RePaint feeds the sample to the model unscaled."""
        return sample

    def set_timesteps(
        self,
        num_inference_steps: int,
        jump_length: int = 10,
        jump_n_sample: int = 10,
        device: str | torch.device | None = None,
    ) -> None:
        """The resampling schedule: count down, jumping back ``jump_length`` steps at each segment start.

        ``num_inference_steps`` above ``num_train_timesteps`` is lowered to it, as in diffusers.
        Timesteps repeat (each jump revisits them), so the schedule is longer than
        ``num_inference_steps``.
        """
        train = self.config.num_train_timesteps
        n = check_num_inference_steps(type(self).__name__, min(train, num_inference_steps), train)
        jumps_left = {j: jump_n_sample - 1 for j in range(0, n - jump_length, jump_length)}
        steps: list[int] = []
        t = n
        while t >= 1:
            t -= 1
            steps.append(t)
            if jumps_left.get(t, 0) > 0:
                jumps_left[t] -= 1
                for _ in range(jump_length):
                    t += 1
                    steps.append(t)
        self.num_inference_steps = n
        self.timesteps = torch.from_numpy(np.array(steps, dtype=np.int64) * (train // n)).to(device)

    def _alpha_bars(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ab, ab_prev)`` as float32 scalars for the step from ``t``."""
        prev_t = t - self.config.num_train_timesteps // self.num_inference_steps
        ab_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        return self.alphas_cumprod[t], ab_prev

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        original_image: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> RePaintSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One RePaint step (Alg. 1, lines 4-8): known part from the image, unknown part denoised.

        ``mask`` is 1 where ``original_image`` is kept and 0 where it is painted.
        """
        self._require_schedule()
        self._check_output_shape(model_output, sample)
        t = int(timestep)
        ab, ab_prev = self._alpha_bars(t)

        # 1. x0 of the unknown region (the model predicts eps), clipped if configured
        x0 = (sample - ((1 - ab) ** 0.5).item() * model_output) / (ab**0.5).item()
        if self.config.clip_sample:
            x0 = torch.clamp(x0, -1, 1)

        # 2. one noise draw serves both parts (drawn even when eta = 0, as in diffusers)
        noise = randn_tensor(model_output.shape, generator=generator, device=model_output.device, dtype=model_output.dtype)

        # 3. unknown part: DDIM update with std eta * sqrt(beta-tilde) (Song et al. 2021, eq. 12)
        variance = ((1 - ab_prev) / (1 - ab)) * (1 - ab / ab_prev)
        std = self.eta * variance**0.5
        direction = ((1 - ab_prev - std**2) ** 0.5).item() * model_output
        unknown = (ab_prev**0.5).item() * x0 + direction
        if t > 0 and self.eta > 0:
            unknown = unknown + std.item() * noise

        # 4. known part: the original image noised to the previous timestep (eq. 2)
        known = (ab_prev**0.5).item() * original_image + ((1 - ab_prev) ** 0.5).item() * noise
        prev_sample = mask * known + (1.0 - mask) * unknown
        if not return_dict:
            return (prev_sample, x0)
        return RePaintSchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)

    def undo_step(
        self, sample: torch.Tensor, timestep: int | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Re-noise ``sample`` forward by ``T / n`` training steps, one ``q(x_t | x_{t-1})`` at a time."""
        self._require_schedule()
        start = int(timestep)
        for i in range(self.config.num_train_timesteps // self.num_inference_steps):
            beta = self.betas[start + i]
            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            sample = ((1 - beta) ** 0.5).item() * sample + (beta**0.5).item() * noise
        return sample
