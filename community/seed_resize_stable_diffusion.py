# /// script
# requires-python = ">=3.10"
# dependencies = ["torch>=2.1", "transformers>=4.44"]
#
# [tool.pipeyard]
# requires-core = ">=0.1"
# summary = "One seed, a similar image at any size: noise drawn at a reference size, then cropped or padded."
# tags = ["seed", "resize", "stable-diffusion", "text-to-image"]
# ///
"""Seed-resize Stable Diffusion: the same seed gives a similar picture at a different size.

Plain text-to-image draws its starting noise at the requested size, so one seed at 512x512
and at 512x640 starts from unrelated noise. This pipeline always draws the noise at a
reference size (default: the model's native size) and then places it into the requested size:
centred, cropped where the target is smaller, padded with fresh noise (from the same
generator) where it is larger. At the reference size the result is exactly the plain
pipeline's image::

    import torch
    from pipeyard import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", custom_pipeline="seed_resize_stable_diffusion"
    )
    prompt = "a lighthouse on a cliff at dawn"
    square = pipe(prompt, generator=torch.Generator().manual_seed(7)).images[0]
    wide = pipe(prompt, width=640, generator=torch.Generator().manual_seed(7)).images[0]  # similar scene

Pass ``reference_height`` / ``reference_width`` to match images made at another size.
"""

from __future__ import annotations

from typing import Any

import torch

from pipeyard import StableDiffusionPipeline, StableDiffusionPipelineOutput, randn_tensor


def paste_centred(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``target`` with ``source`` pasted at its centre; the overlap only (crop where larger).

    Both are ``(B, C, H, W)``; the result has ``target``'s shape.
    """
    (sh, sw), (th, tw) = source.shape[-2:], target.shape[-2:]
    h, w = min(sh, th), min(sw, tw)
    sy, sx, ty, tx = (sh - h) // 2, (sw - w) // 2, (th - h) // 2, (tw - w) // 2
    result = target.clone()
    result[..., ty:ty + h, tx:tx + w] = source[..., sy:sy + h, sx:sx + w]
    return result


class SeedResizeStableDiffusionPipeline(StableDiffusionPipeline):
    """Text-to-image whose starting noise is drawn at a fixed reference size, then fitted to the target."""

    def resized_noise(
        self, batch_size: int, height: int, width: int, reference: tuple[int, int], generator: Any, dtype: torch.dtype
    ) -> torch.Tensor:
        """Noise for ``(height, width)`` whose centre is the reference-size noise of ``generator``.

        The reference noise is drawn first, so at the reference size this is exactly the noise
        the plain pipeline draws; fresh noise for the border is drawn after it.
        """
        factor, channels = self.vae_scale_factor, self.unet.config.in_channels
        ref_shape = (batch_size, channels, reference[0] // factor, reference[1] // factor)
        noise = randn_tensor(ref_shape, generator=generator, device=self.device, dtype=dtype)
        shape = (batch_size, channels, height // factor, width // factor)
        if shape == ref_shape:
            return noise
        border = randn_tensor(shape, generator=generator, device=self.device, dtype=dtype)
        return paste_centred(noise, border)

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        prompt: str | list[str],
        height: int | None = None,
        width: int | None = None,
        reference_height: int | None = None,
        reference_width: int | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> StableDiffusionPipelineOutput | tuple[Any, Any]:
        """Generate ``prompt`` at ``(height, width)`` from noise drawn at the reference size.

        Args:
            prompt: one prompt or a list.
            height, width: output size, multiples of 8 (default: the model's size).
            reference_height, reference_width: where the seed's noise is drawn (default: the
                model's size); images at this size equal the plain pipeline's.
            num_images_per_prompt: images per prompt.
            generator: the seed; one ``torch.Generator``.
            **kwargs: anything else ``StableDiffusionPipeline.__call__`` takes (``guidance_scale``,
                ``num_inference_steps``, ``negative_prompt``, ``output_type``, ...), except ``latents``.
        """
        if "latents" in kwargs:
            raise ValueError("seed-resize draws its own latents: pass a generator, not latents")
        default_h, default_w = self.default_size()
        height, width = height or default_h, width or default_w
        reference = (reference_height or default_h, reference_width or default_w)
        batch = (len(prompt) if isinstance(prompt, list) else 1) * num_images_per_prompt
        latents = self.resized_noise(batch, height, width, reference, generator, self.unet.dtype)
        return super().__call__(
            prompt, height=height, width=width, num_images_per_prompt=num_images_per_prompt,
            generator=generator, latents=latents, **kwargs,
        )
