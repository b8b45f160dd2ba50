# /// script
# requires-python = ">=3.10"
# dependencies = ["torch>=2.1", "transformers>=4.44"]
#
# [tool.pipeyard]
# requires-core = ">=0.1"
# summary = "A walk between two (prompt, seed) pairs: slerp of their noise and text embeddings; returns the frames."
# tags = ["interpolation", "animation", "stable-diffusion", "text-to-image"]
# ///
"""Prompt and seed interpolation for Stable Diffusion: frames of a walk from one image to another.

Each end of the walk is a (prompt, seed) pair. The pipeline encodes both prompts, draws both
seeds' starting noise, and for ``num_frames`` evenly spaced points ``t`` in [0, 1] generates an
image from the spherical interpolation (slerp) of the two noises and of the two text
embeddings. Slerp keeps the noise's norm (a straight line between two Gaussian draws passes
through low-norm noise that decodes to grey mush). The first and last frames are exactly the
plain pipeline's images for the two ends::

    import torch
    from pipeyard import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", custom_pipeline="interpolate_stable_diffusion"
    )
    frames = pipe.walk(("a photo of a cat", 1), ("a photo of a dog", 2), num_frames=8,
                       num_inference_steps=25)
    frames[0].save("walk.gif", save_all=True, append_images=frames[1:], duration=120, loop=0)

``pipe(...)`` with a plain prompt still works: the class is a ``StableDiffusionPipeline``.
"""

from __future__ import annotations

from typing import Any

import torch

from pipeyard import StableDiffusionPipeline, randn_tensor


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor, dot_threshold: float = 0.9995) -> torch.Tensor:
    """Spherical interpolation from ``v0`` (``t=0``) to ``v1`` (``t=1``), per batch item.

    Falls back to linear interpolation where the two are nearly parallel (``|cos| > dot_threshold``),
    where slerp divides by almost zero. ``t=0`` and ``t=1`` give the ends exactly.
    """
    if t == 0:
        return v0.clone()
    if t == 1:
        return v1.clone()
    a, b = v0.flatten(1).double(), v1.flatten(1).double()
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    theta = torch.acos(cos.clamp(-1, 1))
    w0 = torch.sin((1 - t) * theta) / torch.sin(theta)
    w1 = torch.sin(t * theta) / torch.sin(theta)
    linear = cos.abs() > dot_threshold
    w0, w1 = torch.where(linear, 1 - t, w0), torch.where(linear, t, w1)
    mixed = w0[:, None] * a + w1[:, None] * b
    return mixed.view(v0.shape).to(v0.dtype)


class InterpolateStableDiffusionPipeline(StableDiffusionPipeline):
    """Stable Diffusion with :meth:`walk`: frames interpolating two (prompt, seed) pairs."""

    def seed_noise(self, seed: int, height: int, width: int) -> torch.Tensor:
        """The starting noise the plain pipeline draws with ``torch.Generator().manual_seed(seed)``."""
        factor = self.vae_scale_factor
        shape = (1, self.unet.config.in_channels, height // factor, width // factor)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        return randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)

    def prompt_embeddings(
        self, prompt: str, negative_prompt: str | None, guided: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(embeddings, negative embeddings or None)`` of one prompt."""
        return self.encode_prompt(prompt, self.device, 1, guided, negative_prompt)

    @torch.no_grad()
    def walk(
        self,
        start: tuple[str, int],
        end: tuple[str, int],
        num_frames: int = 8,
        height: int | None = None,
        width: int | None = None,
        guidance_scale: float = 7.5,
        negative_prompt: str | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """Generate ``num_frames`` images walking from ``start`` to ``end``.

        Args:
            start, end: ``(prompt, seed)`` of the first and the last frame.
            num_frames: frames including both ends (at least 2).
            height, width: image size (default: the model's).
            guidance_scale: classifier-free guidance weight, the same for every frame.
            negative_prompt: one negative prompt for the whole walk.
            **kwargs: passed to every ``__call__`` (``num_inference_steps``, ``output_type``, ...;
                not ``return_dict``).

        Returns:
            The frames, in order: one image each (in the format ``output_type`` asks for).
        """
        if num_frames < 2:
            raise ValueError(f"num_frames must be at least 2 (the two ends), got {num_frames}")
        height, width = height or self.default_size()[0], width or self.default_size()[1]
        guided = guidance_scale > 1
        embeds0, negative = self.prompt_embeddings(start[0], negative_prompt, guided)
        embeds1, _ = self.prompt_embeddings(end[0], negative_prompt, guided)
        noise0, noise1 = self.seed_noise(start[1], height, width), self.seed_noise(end[1], height, width)
        frames = []
        for i in range(num_frames):
            t = i / (num_frames - 1)
            out = self(
                prompt_embeds=slerp(t, embeds0, embeds1), negative_prompt_embeds=negative,
                latents=slerp(t, noise0, noise1), height=height, width=width, guidance_scale=guidance_scale, **kwargs,
            )
            frames.append(out.images[0])
        return frames
