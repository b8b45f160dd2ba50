"""Step-end callbacks as objects: diffusers' ``callback_on_step_end`` protocol.

A pipeline's ``__call__(callback_on_step_end=cb)`` calls ``cb(pipe, step_index, timestep,
tensors)`` after every denoising step, with the tensors named by ``cb.tensor_inputs`` (for a
:class:`PipelineCallback`, instead of ``callback_on_step_end_tensor_inputs``), and replaces the
pipeline's tensors with those ``cb`` returns::

    class HalveNoise(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            return {"latents": callback_kwargs["latents"] * 0.5}

    pipe(prompt, callback_on_step_end=MultiPipelineCallbacks([HalveNoise(), SDCFGCutoffCallback(0.4)]))
"""

from __future__ import annotations

from typing import Any

from .. import errors
from ..configuration import ConfigMixin, register_to_config


class PipelineCallback(ConfigMixin):
    """Base of step-end callbacks that act from a cutoff step on.

    Args:
        cutoff_step_ratio: the cutoff as a fraction (0..1) of the call's timesteps, or
        cutoff_step_index: the cutoff as a step index; exactly one of the two.

    Subclasses set ``tensor_inputs`` (the tensors they read) and implement :meth:`callback_fn`.

    Raises:
        ConfigError: both cutoffs or neither, or a ratio outside [0, 1].
    """

    @register_to_config
    def __init__(self, cutoff_step_ratio: float | None = 1.0, cutoff_step_index: int | None = None) -> None:
        if (cutoff_step_ratio is None) == (cutoff_step_index is None):
            raise errors.ConfigError(
                f"{type(self).__name__} needs exactly one of cutoff_step_ratio and cutoff_step_index, got "
                f"cutoff_step_ratio={cutoff_step_ratio!r}, cutoff_step_index={cutoff_step_index!r}"
            )
        if cutoff_step_ratio is not None and not (isinstance(cutoff_step_ratio, float) and 0.0 <= cutoff_step_ratio <= 1.0):
            raise errors.ConfigError(
                f"{type(self).__name__} cutoff_step_ratio must be a float in [0.0, 1.0], got {cutoff_step_ratio!r}"
            )

    @property
    def tensor_inputs(self) -> list[str]:
        """Names of the pipeline tensors this callback reads (and may return)."""
        raise NotImplementedError(f"{type(self).__name__} must set tensor_inputs, e.g. tensor_inputs = ['latents']")

    def callback_fn(
        self, pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """Act on ``callback_kwargs`` after step ``step_index``; return the tensors to replace."""
        raise NotImplementedError(f"{type(self).__name__} must implement callback_fn(pipeline, step_index, timestep, callback_kwargs)")

    def cutoff_step(self, pipeline: Any) -> int:
        """The step index the cutoff falls on for ``pipeline``'s current call."""
        index = self.config.cutoff_step_index
        return index if index is not None else int(pipeline.num_timesteps * self.config.cutoff_step_ratio)

    def __call__(self, pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        return self.callback_fn(pipeline, step_index, timestep, callback_kwargs)


class MultiPipelineCallbacks:
    """Several callbacks run in order; each sees what the previous one returned."""

    def __init__(self, callbacks: list[PipelineCallback]) -> None:
        self.callbacks = list(callbacks)

    @property
    def tensor_inputs(self) -> list[str]:
        """Every callback's ``tensor_inputs``, in order."""
        return [name for callback in self.callbacks for name in callback.tensor_inputs]

    def __call__(self, pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        for callback in self.callbacks:
            callback_kwargs = callback(pipeline, step_index, timestep, callback_kwargs)
        return callback_kwargs


class SDCFGCutoffCallback(PipelineCallback):
    """Turn classifier-free guidance off from the cutoff step on (faster late steps).

    At the cutoff, only the text half of ``prompt_embeds`` is kept and the pipeline's guidance
    scale becomes 0, so later steps run the UNet once on the text embeddings.
    """

    tensor_inputs = ["prompt_embeds"]  # type: ignore[assignment]

    def callback_fn(
        self, pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        if step_index == self.cutoff_step(pipeline):
            callback_kwargs["prompt_embeds"] = callback_kwargs["prompt_embeds"][-1:]  # the text rows (batch 1)
            pipeline._guidance_scale = 0.0
        return callback_kwargs
