# /// script
# requires-python = ">=3.10"
# dependencies = ["torch>=2.1", "transformers>=4.44"]
#
# [tool.pipeyard]
# requires-core = ">=0.1"
# summary = "Stable Diffusion steered by the gradient of CLIP image-text similarity on cutouts of the predicted image."
# tags = ["clip-guidance", "stable-diffusion", "text-to-image"]
# ///
"""CLIP-guided Stable Diffusion.

At every denoising step the pipeline predicts the clean image, decodes it, takes random
cutouts (or one resized view), embeds them with a CLIP image encoder and measures their
spherical distance to the CLIP embedding of the prompt. The gradient of that distance with
respect to the latents nudges the noise prediction (DDIM, PNDM, DPM-Solver: alpha-space
schedulers) or the latents themselves (LMS, Euler: sigma-space schedulers) towards images CLIP
finds closer to the text. The CLIP model and its image processor are passed by the caller::

    import torch
    from transformers import CLIPImageProcessor, CLIPModel
    from pipeyard import DiffusionPipeline

    clip_model_id = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    feature_extractor = CLIPImageProcessor.from_pretrained(clip_model_id)
    clip_model = CLIPModel.from_pretrained(clip_model_id, torch_dtype=torch.float16)

    guided_pipeline = DiffusionPipeline.from_pretrained(
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        custom_pipeline="clip_guided_stable_diffusion",
        clip_model=clip_model,
        feature_extractor=feature_extractor,
        torch_dtype=torch.float16,
    )
    guided_pipeline.enable_attention_slicing()
    guided_pipeline = guided_pipeline.to("cuda")

    prompt = "fantasy book cover, full moon, fantasy forest landscape, golden vector elements"
    generator = torch.Generator(device="cuda").manual_seed(0)
    images = []
    for i in range(4):
        image = guided_pipeline(
            prompt,
            num_inference_steps=50,
            guidance_scale=7.5,
            clip_guidance_scale=100,
            num_cutouts=4,
            use_cutouts=False,
            generator=generator,
        ).images[0]
        images.append(image)

Notation: ``x_t`` latents, ``eps`` the UNet's noise prediction, ``a_t`` the cumulative alpha
(``alphas_cumprod[t]``), ``sigma`` the sigma-space noise level, ``x0`` the predicted clean latents.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F

from pipeyard import DiffusionPipeline, StableDiffusionPipelineOutput, randn_tensor

Generator = torch.Generator | list[torch.Generator] | None


def spherical_distance_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance between the unit vectors along ``x`` and ``y`` (last dim)."""
    x = F.normalize(x, dim=-1)
    y = F.normalize(y, dim=-1)
    chord = (x - y).norm(dim=-1)
    return 2 * torch.arcsin(chord / 2) ** 2


def random_cutouts(
    images: torch.Tensor, cut_size: int, num_cutouts: int, cut_power: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``num_cutouts`` random square crops of every image, each pooled to ``cut_size``.

    Returns ``(num_cutouts * batch, channels, cut_size, cut_size)``, cutout-major: rows
    ``k * batch ... (k + 1) * batch - 1`` are cutout ``k`` of each image.
    """
    height, width = images.shape[2:4]
    largest, smallest = min(height, width), min(height, width, cut_size)
    cutouts = []
    for _ in range(num_cutouts):
        fraction = torch.rand([], generator=generator) ** cut_power
        size = int(fraction * (largest - smallest) + smallest)
        top = int(torch.randint(0, height - size + 1, (), generator=generator))
        left = int(torch.randint(0, width - size + 1, (), generator=generator))
        crop = images[:, :, top : top + size, left : left + size]
        cutouts.append(F.adaptive_avg_pool2d(crop, cut_size))
    return torch.cat(cutouts)


def _features(output: Any) -> torch.Tensor:
    """CLIP ``get_*_features`` returns a tensor (transformers 4) or an output with ``pooler_output`` (5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class CLIPGuidedStableDiffusion(DiffusionPipeline):
    """Stable Diffusion text-to-image with CLIP guidance.

    Args:
        vae, text_encoder, tokenizer, unet, scheduler: the Stable Diffusion components.
        clip_model: a transformers ``CLIPModel`` that scores images against the prompt.
        feature_extractor: the ``CLIPImageProcessor`` of ``clip_model`` (size, mean and std).
    """

    def __init__(
        self, vae: Any, clip_model: Any, text_encoder: Any, tokenizer: Any, unet: Any, scheduler: Any,
        feature_extractor: Any,
    ) -> None:
        super().__init__()
        self.register_modules(
            vae=vae, clip_model=clip_model, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
            scheduler=scheduler, feature_extractor=feature_extractor,
        )
        for frozen in (text_encoder, clip_model):
            frozen.requires_grad_(False)

    # ------------------------------------------------------------------ helpers

    @property
    def cut_out_size(self) -> int:
        """Side of the square images the CLIP image encoder takes."""
        size = self.feature_extractor.size
        return size if isinstance(size, int) else size["shortest_edge"]

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def _clip_normalize(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.feature_extractor.image_mean, device=images.device, dtype=images.dtype)
        std = torch.tensor(self.feature_extractor.image_std, device=images.device, dtype=images.dtype)
        return (images - mean[:, None, None]) / std[:, None, None]

    def _text_embeddings(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            texts, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        )
        return self.text_encoder(tokens.input_ids.to(self.device))[0]

    def _clip_text_embeddings(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            texts, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        )
        features = _features(self.clip_model.get_text_features(tokens.input_ids.to(self.device)))
        return features / features.norm(p=2, dim=-1, keepdim=True)

    def _uses_sigmas(self) -> bool:
        """Sigma-space schedulers (LMS, Euler) start from noise scaled by a sigma > 1."""
        return float(self.scheduler.init_noise_sigma) > 1.0

    def _step_kwargs(self, generator: Generator, eta: float) -> dict[str, Any]:
        accepted = inspect.signature(self.scheduler.step).parameters
        kwargs: dict[str, Any] = {}
        if "eta" in accepted:
            kwargs["eta"] = eta
        if "generator" in accepted:
            kwargs["generator"] = generator
        return kwargs

    # ------------------------------------------------------------------ CLIP guidance

    def _clip_loss(
        self, images: torch.Tensor, clip_text: torch.Tensor, num_cutouts: int, use_cutouts: bool,
        cutout_generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Spherical distance between CLIP embeddings of (cutouts of) ``images`` and the prompt."""
        batch = images.shape[0]
        if use_cutouts:
            views = random_cutouts(images, self.cut_out_size, num_cutouts, generator=cutout_generator)
        else:
            views = F.interpolate(images, size=(self.cut_out_size,) * 2, mode="bilinear", antialias=True)
        views = self._clip_normalize(views).to(self.clip_model.dtype)
        embeds = _features(self.clip_model.get_image_features(pixel_values=views)).float()
        embeds = embeds / embeds.norm(p=2, dim=-1, keepdim=True)
        if not use_cutouts:
            return spherical_distance_loss(embeds, clip_text.float()).mean()
        distances = spherical_distance_loss(embeds, clip_text.float().repeat(num_cutouts, 1))
        return distances.view(num_cutouts, batch).mean(0).sum()

    @torch.enable_grad()
    def cond_fn(
        self, latents: torch.Tensor, t: Any, index: int, text_embeddings: torch.Tensor,
        noise_pred_original: torch.Tensor, clip_text: torch.Tensor, clip_guidance_scale: float,
        num_cutouts: int, use_cutouts: bool = True, cutout_generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(noise_pred, latents)`` moved along the gradient of the CLIP loss."""
        latents = latents.detach().requires_grad_()
        eps = self.unet(self.scheduler.scale_model_input(latents, t), t, encoder_hidden_states=text_embeddings).sample
        if self._uses_sigmas():
            sigma = self.scheduler.sigmas[index]
            sample = latents - sigma * eps  # 1. x0 = x_t - sigma * eps
        else:
            a_t = self.scheduler.alphas_cumprod[int(t)].to(latents.device)
            x0 = (latents - (1 - a_t) ** 0.5 * eps) / a_t**0.5  # 1. x0 from the DDPM forward process
            fac = (1 - a_t) ** 0.5
            sample = x0 * fac + latents * (1 - fac)  # 2. blend towards x0 as noise shrinks
        images = self.vae.decode(sample / self.vae.config.scaling_factor).sample
        images = (images / 2 + 0.5).clamp(0, 1)
        loss = self._clip_loss(images, clip_text, num_cutouts, use_cutouts, cutout_generator) * clip_guidance_scale
        grads = -torch.autograd.grad(loss, latents)[0]  # 3. towards higher similarity
        if self._uses_sigmas():
            return noise_pred_original, latents.detach() + grads * sigma**2
        return noise_pred_original - (1 - a_t) ** 0.5 * grads, latents.detach()

    # ------------------------------------------------------------------ the call

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        height: int = 512,
        width: int = 512,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        clip_guidance_scale: float = 100.0,
        clip_prompt: str | list[str] | None = None,
        num_cutouts: int = 4,
        use_cutouts: bool = True,
        generator: Generator = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> StableDiffusionPipelineOutput | tuple[Any, None]:
        """Generate images from ``prompt`` with classifier-free and CLIP guidance.

        Args:
            prompt: one prompt or a list.
            height, width: image size in pixels, multiples of 8.
            guidance_scale: classifier-free guidance weight (``<= 1`` turns it off).
            clip_guidance_scale: weight of the CLIP gradient (0 turns CLIP guidance off).
            clip_prompt: text CLIP compares against (default: ``prompt``).
            num_cutouts: random cutouts per image and step when ``use_cutouts``.
            use_cutouts: score random cutouts (True) or the whole image resized (False).
            generator: a ``torch.Generator`` (or one per image) for the noise and the cutouts.
            output_type: ``"pil"``, ``"np"`` or ``"pt"``.

        Raises:
            ValueError: unknown prompt type, size not a multiple of 8, unknown output_type.
        """
        prompts = self._check_call(prompt, height, width, output_type)
        batch = len(prompts) * num_images_per_prompt
        text = self._text_embeddings(prompts).repeat_interleave(num_images_per_prompt, dim=0)
        clip_text = None
        if clip_guidance_scale > 0:
            clip_texts = [clip_prompt] * len(prompts) if isinstance(clip_prompt, str) else (clip_prompt or prompts)
            clip_text = self._clip_text_embeddings(clip_texts).repeat_interleave(num_images_per_prompt, dim=0)
        do_cfg = guidance_scale > 1.0
        embeddings = torch.cat([self._text_embeddings([""] * batch), text]) if do_cfg else text
        shape = (batch, self.unet.config.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=embeddings.dtype)
        latents = latents.to(self.device) * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        cutout_generator = generator[0] if isinstance(generator, list) else generator
        step_kwargs = self._step_kwargs(generator, eta)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = torch.cat([latents] * 2) if do_cfg else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            noise_pred = self.unet(model_input, t, encoder_hidden_states=embeddings).sample
            if do_cfg:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + guidance_scale * (cond - uncond)
            if clip_guidance_scale > 0:
                noise_pred, latents = self.cond_fn(
                    latents, t, i, text, noise_pred, clip_text, clip_guidance_scale, num_cutouts, use_cutouts,
                    cutout_generator if cutout_generator is None or cutout_generator.device.type == "cpu" else None,
                )
            latents = self.scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
        images = self._to_output(latents, output_type)
        return StableDiffusionPipelineOutput(images=images, nsfw_content_detected=None) if return_dict else (images, None)

    def _check_call(self, prompt: Any, height: int, width: int, output_type: str) -> list[str]:
        if isinstance(prompt, str):
            prompt = [prompt]
        if not isinstance(prompt, list):
            raise ValueError(f"prompt must be a string or a list of strings, got {type(prompt).__name__}")
        if height % 8 != 0 or width % 8 != 0:
            raise ValueError(f"height and width must be multiples of 8, got {height} and {width}")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"unknown output_type {output_type!r}; use 'pil', 'np' or 'pt'")
        return prompt

    def _to_output(self, latents: torch.Tensor, output_type: str) -> Any:
        images = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        images = (images / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            return images
        array = images.cpu().permute(0, 2, 3, 1).float().numpy()
        return array if output_type == "np" else self.numpy_to_pil(array)
