# /// script
# requires-python = ">=3.10"
# dependencies = ["torch>=2.1", "transformers>=4.44"]
#
# [tool.pipeyard]
# requires-core = ">=0.1"
# summary = "Image-to-image with the Stable Diffusion components: encode, noise to strength, denoise with the prompt."
# tags = ["image-to-image", "stable-diffusion"]
# ///
"""Image-to-image on the text-to-image Stable Diffusion components (SDEdit, Meng et al., 2021).

The init image is encoded by the VAE, noised with ``scheduler.add_noise`` to the timestep that
``strength`` picks, and denoised from there with the prompt (classifier-free guidance as in
text-to-image). ``strength=0`` returns the init image (through the VAE); ``strength=1`` ignores
it. No extra weights: any SD 1.x / 2.x text-to-image repository works::

    import torch
    from PIL import Image
    from pipeyard import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", custom_pipeline="img2img_stable_diffusion"
    )
    sketch = Image.open("sketch.png").convert("RGB").resize((512, 512))
    image = pipe("a fantasy landscape, trending on artstation", image=sketch, strength=0.75,
                 guidance_scale=7.5, generator=torch.Generator().manual_seed(0)).images[0]

``image`` is a PIL image (or a list), or a ``(B, 3, H, W)`` tensor in [-1, 1]; H and W must be
multiples of 8.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from pipeyard import StableDiffusionPipeline, StableDiffusionPipelineOutput, preprocess_image, randn_tensor


class StableDiffusionImg2ImgCommunityPipeline(StableDiffusionPipeline):
    """Stable Diffusion image-to-image with the text-to-image components (VAE, CLIP, UNet, scheduler)."""

    def encode_image(self, image: Any, batch_size: int, dtype: torch.dtype) -> torch.Tensor:
        """VAE latents (the posterior mean, scaled) of ``image``, one per output image."""
        pixels = preprocess_image(image).to(device=self.device, dtype=self.vae.dtype)
        if pixels.shape[-1] % 8 or pixels.shape[-2] % 8:
            raise ValueError(f"image size {tuple(pixels.shape[-2:])} must be a multiple of 8 on both sides")
        latents = self.vae.encode(pixels).latent_dist.mode() * self.vae.config.scaling_factor
        if batch_size % latents.shape[0]:
            raise ValueError(f"{latents.shape[0]} init images cannot be spread over {batch_size} outputs")
        return latents.repeat_interleave(batch_size // latents.shape[0], dim=0).to(dtype)

    def strength_timesteps(self, num_inference_steps: int, strength: float) -> torch.Tensor:
        """The last ``strength`` share of the schedule; tells the scheduler where it starts."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        order = getattr(self.scheduler, "order", 1)
        kept = min(int(num_inference_steps * strength), num_inference_steps)
        if kept == 0:
            return self.scheduler.timesteps[:0]
        start = (num_inference_steps - kept) * order
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(start)
        return self.scheduler.timesteps[start:]

    def noise_latents(self, latents: torch.Tensor, timesteps: torch.Tensor, generator: Any) -> torch.Tensor:
        """``latents`` noised to ``timesteps[0]`` (unchanged when no step is left)."""
        if len(timesteps) == 0:
            return latents
        noise = randn_tensor(tuple(latents.shape), generator=generator, device=self.device, dtype=latents.dtype)
        return self.scheduler.add_noise(latents, noise, timesteps[:1].repeat(latents.shape[0]))

    def guided_prediction(
        self, latents: torch.Tensor, t: Any, embeds: torch.Tensor, guidance_scale: float
    ) -> torch.Tensor:
        """The UNet's noise prediction, with classifier-free guidance when ``guidance_scale > 1``."""
        guided = guidance_scale > 1
        model_input = self.scheduler.scale_model_input(torch.cat([latents] * 2) if guided else latents, t)
        prediction = self.unet(model_input, t, encoder_hidden_states=embeds).sample
        if not guided:
            return prediction
        uncond, text = prediction.chunk(2)
        return uncond + guidance_scale * (text - uncond)

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        prompt: str | list[str],
        image: Any,
        strength: float = 0.8,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> StableDiffusionPipelineOutput | tuple[Any, Any]:
        """Turn ``image`` towards ``prompt``.

        Args:
            prompt: one prompt or a list.
            image: the init image(s): PIL, or a tensor in [-1, 1]; one, or one per prompt.
            strength: 0..1, the share of the schedule that is run (0 returns the init image).
            num_inference_steps: steps of the full schedule (``strength`` of them are run).
            guidance_scale: classifier-free guidance weight; ``<= 1`` turns guidance off.
            negative_prompt: what to steer away from.
            num_images_per_prompt: images per prompt.
            eta: DDIM noise weight (other schedulers ignore it).
            generator: makes the added noise reproducible.
            output_type: ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"``.
            return_dict: return a ``StableDiffusionPipelineOutput`` rather than a tuple.
        """
        batch = (len(prompt) if isinstance(prompt, list) else 1) * num_images_per_prompt
        guided = guidance_scale > 1
        embeds, negative = self.encode_prompt(prompt, self.device, num_images_per_prompt, guided, negative_prompt)
        embeds = torch.cat([negative, embeds]) if guided else embeds
        timesteps = self.strength_timesteps(num_inference_steps, strength)
        latents = self.noise_latents(self.encode_image(image, batch, embeds.dtype), timesteps, generator)
        accepted = inspect.signature(self.scheduler.step).parameters
        extra = {k: v for k, v in {"eta": eta, "generator": generator}.items() if k in accepted}
        for t in self.progress_bar(timesteps):
            prediction = self.guided_prediction(latents, t, embeds, guidance_scale)
            latents = self.scheduler.step(prediction, t, latents, **extra).prev_sample
        return self.decode_latents_to_output(latents, output_type, return_dict, self.device, embeds.dtype)
