"""Pieces of a latent denoising loop, with the names and signatures diffusers' pipelines use.

- :func:`retrieve_timesteps`: ``set_timesteps`` with a step count, custom timesteps or custom
  sigmas; returns the schedule and its length.
- :func:`step_kwargs`: ``eta`` / ``generator`` for the schedulers whose ``step`` takes them.
- :func:`rescale_noise_cfg`: guidance rescale (Lin et al., 2023, §3.4).
- :func:`guidance_scale_embedding`: the sinusoidal embedding of ``w`` that guidance-distilled
  UNets (``time_cond_proj_dim``, LCM) take as ``timestep_cond``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from .. import errors


def retrieve_timesteps(
    scheduler: Any,
    num_inference_steps: int | None = None,
    device: str | torch.device | None = None,
    timesteps: list[int] | None = None,
    sigmas: list[float] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, int]:
    """Set ``scheduler``'s schedule and return ``(scheduler.timesteps, num_inference_steps)``.

    Args:
        num_inference_steps: how many steps, when neither ``timesteps`` nor ``sigmas`` is given.
        device: where the timesteps go (``None``: the scheduler's default).
        timesteps, sigmas: a custom schedule (one of them), for schedulers whose
            ``set_timesteps`` accepts it; the step count is then its length.
        **kwargs: passed on to ``set_timesteps``.

    Raises:
        ConflictingInputsError: both ``timesteps`` and ``sigmas``.
        SchedulerError: the scheduler takes no custom schedule of that kind.
    """
    if timesteps is not None and sigmas is not None:
        raise errors.ConflictingInputsError("timesteps", "sigmas")
    custom = {"timesteps": timesteps} if timesteps is not None else {"sigmas": sigmas} if sigmas is not None else {}
    if not custom:
        scheduler.set_timesteps(num_inference_steps, device=device, **kwargs)
        return scheduler.timesteps, num_inference_steps
    (name,) = custom
    if name not in inspect.signature(scheduler.set_timesteps).parameters:
        raise errors.SchedulerError(
            f"{type(scheduler).__name__}.set_timesteps takes no custom {name}: pass num_inference_steps "
            f"instead, or use a scheduler that accepts {name}= (e.g. EulerDiscreteScheduler)"
        )
    scheduler.set_timesteps(device=device, **custom, **kwargs)
    return scheduler.timesteps, len(scheduler.timesteps)


def step_kwargs(scheduler: Any, generator: Any, eta: float) -> dict[str, Any]:
    """``eta`` and ``generator`` for schedulers whose ``step`` takes them (DDIM, ancestral, ...)."""
    accepted = inspect.signature(scheduler.step).parameters
    kwargs: dict[str, Any] = {}
    if "eta" in accepted:
        kwargs["eta"] = eta
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs


def rescale_noise_cfg(
    noise_cfg: torch.Tensor, noise_pred_text: torch.Tensor, guidance_rescale: float = 0.0
) -> torch.Tensor:
    """Pull the guided prediction's std back towards the text prediction's (Lin et al., 2023, §3.4).

    High guidance with zero-terminal-SNR schedules over-exposes images; rescaling by
    ``std(text) / std(cfg)`` and mixing by ``guidance_rescale`` fixes it.
    """
    dims = list(range(1, noise_pred_text.ndim))
    std_text = noise_pred_text.std(dim=dims, keepdim=True)
    std_cfg = noise_cfg.std(dim=list(range(1, noise_cfg.ndim)), keepdim=True)
    rescaled = noise_cfg * (std_text / std_cfg)
    return guidance_rescale * rescaled + (1 - guidance_rescale) * noise_cfg


def guidance_scale_embedding(
    w: torch.Tensor, embedding_dim: int = 512, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Sinusoidal embedding ``(len(w), embedding_dim)`` of guidance scales ``w`` (VDM's, scaled by 1000).

    Notation: half = embedding_dim // 2, f_k = exp(-k * ln(10000) / (half - 1)), k < half;
    row i = [sin(1000 w_i f_k) ..., cos(1000 w_i f_k) ...], zero-padded to an odd dim.

    Raises:
        InputShapeError: ``w`` is not 1-d.
    """
    if w.ndim != 1:
        raise errors.InputShapeError("get_guidance_scale_embedding", "w", "a 1-d tensor of guidance scales", w.shape)
    w = w * 1000.0
    half = embedding_dim // 2
    step = torch.log(torch.tensor(10000.0)) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=dtype) * -step)
    angles = w.to(dtype)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if embedding_dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb

