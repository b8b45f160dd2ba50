"""StableDiffusionInpaintPipeline: re-draw the masked part of an image under a prompt.

Two kinds of UNet, told apart by ``unet.config.in_channels``::

    9 (an inpainting UNet)  each step's input is [latents, mask, masked-image latents]: the
                            model sees what to keep
    4 (a text-to-image UNet) after each step the unmasked area is replaced by the input
                            image's latents noised to the next timestep (latent blending)

Mask convention: white (>= 0.5) is re-drawn, black is kept; ``mask_processor`` turns any mask
image into a binary ``(b, 1, h, w)`` tensor. ``strength`` < 1 starts from the image noised
part-way (like image-to-image); 1.0 from pure noise. With the same components, seeds and
arguments the images equal diffusers' ``StableDiffusionInpaintPipeline`` (tests check 1e-4 with
PNDM and DDIM, both UNet kinds).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import PIL.Image
import torch

from .. import errors
from ..models.autoencoder_asym_kl import AsymmetricAutoencoderKL
from .call_checks import Generator, check_generators
from .image_processing import LATENT_OUTPUT_TYPES, check_output_type
from .image_processor import PipelineImageInput, VaeImageProcessor
from .outputs import StableDiffusionPipelineOutput
from .prompt_encoding import Prompt, prompt_batch_size
from .sampling import retrieve_timesteps
from .stable_diffusion import StableDiffusionPipeline, StepCallback
from .stable_diffusion_img2img import (
    StableDiffusionImg2ImgPipeline,
    _repeat_to_batch,
    check_old_call_kwargs,
    check_strength,
    retrieve_latents,
)

__all__ = ["StableDiffusionInpaintPipeline", "retrieve_latents", "retrieve_timesteps"]

logger = logging.getLogger(__name__)

#: tensors a ``callback_on_step_end`` may read and replace in an inpainting call
INPAINT_CALLBACK_TENSOR_INPUTS = ("latents", "prompt_embeds", "negative_prompt_embeds", "mask", "masked_image_latents")


class StableDiffusionInpaintPipeline(StableDiffusionPipeline):
    """Inpainting with Stable Diffusion 1.x / 2.x, diffusers' interface.

    Loads inpainting repositories (9-channel UNet) and text-to-image ones (4 channels, the
    unmasked area is blended back each step). Subclasses written for diffusers find
    ``mask_processor``, :meth:`prepare_mask_latents`, :meth:`prepare_latents` (inpainting
    form), :meth:`get_timesteps` and :meth:`_encode_vae_image` as they expect.

    Example::

        pipe = StableDiffusionInpaintPipeline.from_pretrained("stabilityai/stable-diffusion-2-inpainting")
        image = pipe("a cat on a bench", image=photo, mask_image=mask).images[0]
    """

    _callback_tensor_inputs = list(INPAINT_CALLBACK_TENSOR_INPUTS)

    get_timesteps = StableDiffusionImg2ImgPipeline.get_timesteps

    def __init__(
        self,
        vae: Any,
        text_encoder: Any,
        tokenizer: Any,
        unet: Any,
        scheduler: Any,
        safety_checker: Any,
        feature_extractor: Any,
        image_encoder: Any = None,
        requires_safety_checker: bool = True,
    ) -> None:
        if scheduler is not None and getattr(scheduler.config, "skip_prk_steps", True) is False:
            logger.warning(
                "the scheduler config has skip_prk_steps=False, which inpainting cannot use; using skip_prk_steps=True. "
                "Update scheduler/scheduler_config.json"
            )
            scheduler = type(scheduler).from_config({**dict(scheduler.config), "skip_prk_steps": True})
        super().__init__(
            vae, text_encoder, tokenizer, unet, scheduler, safety_checker, feature_extractor, image_encoder,
            requires_safety_checker,
        )
        #: masks -> binary (b, 1, h, w) tensors: grayscale, not normalized, 0 / 1 around 0.5
        self.mask_processor = VaeImageProcessor(
            vae_scale_factor=self.vae_scale_factor, do_normalize=False, do_binarize=True, do_convert_grayscale=True
        )

    # ------------------------------------------------------------------ steps of a call

    def _encode_vae_image(self, image: torch.Tensor, generator: Generator) -> torch.Tensor:
        """Sampled VAE latents of ``image`` times ``scaling_factor`` (one generator per row for a list)."""
        if isinstance(generator, list):
            latents = torch.cat([
                retrieve_latents(self.vae.encode(image[i:i + 1]), generator=generator[i]) for i in range(image.shape[0])
            ])
        else:
            latents = retrieve_latents(self.vae.encode(image), generator=generator)
        return self.vae.config.scaling_factor * latents

    def prepare_latents(  # type: ignore[override]
        self,
        batch_size: int,
        num_channels_latents: int,
        height: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: Generator,
        latents: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
        timestep: torch.Tensor | None = None,
        is_strength_max: bool = True,
        return_noise: bool = False,
        return_image_latents: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Starting latents: noise (``is_strength_max``), or ``image``'s latents noised to
        ``timestep``; a given ``latents`` is taken as the noise.

        Returns:
            ``(latents,)``, then the noise if ``return_noise``, then the image latents if
            ``return_image_latents``.

        Raises:
            BatchSizeMismatchError: a generator list of another length.
            PipelineInputError: ``strength`` < 1 without ``image`` or ``timestep``.
        """
        from ..torch_utils import randn_tensor

        factor = self.vae_scale_factor
        shape = (batch_size, num_channels_latents, int(height) // factor, int(width) // factor)
        check_generators(generator, batch_size, "batch_size * num_images_per_prompt")
        if (image is None or timestep is None) and not is_strength_max:
            raise errors.PipelineInputError(
                "with strength < 1 the starting latents mix the image with noise: pass image= and timestep= "
                "to prepare_latents"
            )
        image_latents = None
        if return_image_latents or (latents is None and not is_strength_max):
            image = image.to(device=device, dtype=dtype)
            image_latents = image if image.shape[1] == 4 else self._encode_vae_image(image, generator)
            image_latents = image_latents.repeat(batch_size // image_latents.shape[0], 1, 1, 1)
        if latents is None:
            noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
            if is_strength_max:
                latents = noise * self.scheduler.init_noise_sigma
            else:
                latents = self.scheduler.add_noise(image_latents, noise, timestep)
        else:
            if tuple(latents.shape) != shape:
                raise errors.PipelineInputError(
                    f"latents have shape {tuple(latents.shape)} but this call needs {shape} "
                    f"(batch * num_images_per_prompt, channels, height // {factor}, width // {factor})"
                )
            noise = latents.to(device)
            latents = noise * self.scheduler.init_noise_sigma
        outputs: tuple[torch.Tensor, ...] = (latents,)
        if return_noise:
            outputs += (noise,)
        if return_image_latents:
            outputs += (image_latents,)
        return outputs

    def prepare_mask_latents(
        self,
        mask: torch.Tensor,
        masked_image: torch.Tensor,
        batch_size: int,
        height: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: Generator,
        do_classifier_free_guidance: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask at latent size and the masked image's latents (encoded unless already 4-channel),
        repeated to ``batch_size`` and doubled for guidance.

        Raises:
            BatchSizeMismatchError: a mask or image count that does not divide ``batch_size``.
        """
        factor = self.vae_scale_factor
        mask = torch.nn.functional.interpolate(mask, size=(height // factor, width // factor))
        mask = mask.to(device=device, dtype=dtype)
        masked_image = masked_image.to(device=device, dtype=dtype)
        if masked_image.shape[1] == 4:
            masked_image_latents = masked_image
        else:
            masked_image_latents = self._encode_vae_image(masked_image, generator=generator)
        mask = _repeat_to_batch(mask, batch_size, "mask_image")
        masked_image_latents = _repeat_to_batch(masked_image_latents, batch_size, "image")
        if do_classifier_free_guidance:
            mask = torch.cat([mask] * 2)
            masked_image_latents = torch.cat([masked_image_latents] * 2)
        return mask, masked_image_latents.to(device=device, dtype=dtype)

    def check_inputs(  # type: ignore[override]
        self,
        prompt: Prompt | None,
        image: Any,
        mask_image: Any,
        height: int,
        width: int,
        strength: float,
        callback_steps: int | None,
        output_type: str,
        negative_prompt: Prompt | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        ip_adapter_image: Any = None,
        ip_adapter_image_embeds: list[torch.Tensor] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] | None = None,
        padding_mask_crop: int | None = None,
    ) -> None:
        """Refuse unusable arguments before any work (diffusers' inpainting signature).

        Raises:
            PipelineInputError (and its subclasses): among them, ``padding_mask_crop`` with an
            image or mask that is not a PIL image, or an ``output_type`` other than ``"pil"``.
        """
        check_strength(strength)
        if height % self.vae_scale_factor != 0 or width % self.vae_scale_factor != 0:
            raise errors.ImageSizeError(height, width, self.vae_scale_factor)
        if padding_mask_crop is not None:
            _check_mask_crop_inputs(image, mask_image, output_type)
        super().check_inputs(
            prompt, 8, 8, callback_steps, negative_prompt, prompt_embeds, negative_prompt_embeds,
            ip_adapter_image, ip_adapter_image_embeds, callback_on_step_end_tensor_inputs,
        )

    # ------------------------------------------------------------------ the call

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        prompt: Prompt | None = None,
        image: PipelineImageInput | None = None,
        mask_image: PipelineImageInput | None = None,
        masked_image_latents: torch.Tensor | None = None,
        height: int | None = None,
        width: int | None = None,
        padding_mask_crop: int | None = None,
        strength: float = 1.0,
        num_inference_steps: int = 50,
        timesteps: list[int] | None = None,
        sigmas: list[float] | None = None,
        guidance_scale: float = 7.5,
        negative_prompt: Prompt | None = None,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: Generator = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        ip_adapter_image: PipelineImageInput | None = None,
        ip_adapter_image_embeds: list[torch.Tensor] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
        clip_skip: int | None = None,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        **kwargs: Any,
    ) -> StableDiffusionPipelineOutput | tuple[Any, Any]:
        """Re-draw the white part of ``mask_image`` in ``image`` under ``prompt``.

        Args:
            image: the image to inpaint (PIL, numpy or torch in [0, 1]).
            mask_image: white (>= 0.5) is re-drawn, black kept; any size (resized).
            masked_image_latents: precomputed latents of the masked image (9-channel UNets).
            height, width: output size (default: the UNet's).
            strength: 0..1; below 1 the start is the image noised part-way.
            latents: the starting noise, ``(batch, 4, height / 8, width / 8)``.
            padding_mask_crop: inpaint only the box around the mask's white area, grown by this
                many pixels (and to the output's aspect ratio), at full ``height`` x ``width``,
                then paste it back into ``image``. Needs PIL ``image`` and ``mask_image`` and
                ``output_type="pil"``.
            the others: as for :class:`StableDiffusionPipeline`, ``ip_adapter_image`` /
                ``ip_adapter_image_embeds`` included (needs ``load_ip_adapter``).

        Returns:
            ``.images`` and ``.nsfw_content_detected`` (or the tuple of both).

        Raises:
            PipelineInputError (and its subclasses): bad arguments, before any work.
            UnetChannelsError: a UNet with neither 4 nor 9 input channels.
            ComponentError: an image prompt without an IP-Adapter loaded.
        """
        owner = type(self).__name__
        check_old_call_kwargs(kwargs, owner)
        callback_on_step_end_tensor_inputs = getattr(callback_on_step_end, "tensor_inputs", callback_on_step_end_tensor_inputs)
        height, width = height or self.default_size()[0], width or self.default_size()[1]
        self.check_inputs(
            prompt, image, mask_image, height, width, strength, None, output_type, negative_prompt, prompt_embeds,
            negative_prompt_embeds, ip_adapter_image, ip_adapter_image_embeds, callback_on_step_end_tensor_inputs,
            padding_mask_crop,
        )
        if image is None or mask_image is None:
            raise errors.PipelineInputError(f"{owner} needs the image to inpaint and its mask: pass image= and mask_image=")
        check_output_type(output_type, LATENT_OUTPUT_TYPES)
        num_channels_unet = self.unet.config.in_channels
        if num_channels_unet not in (4, 9):
            raise errors.UnetChannelsError(owner, num_channels_unet)
        total = prompt_batch_size(prompt, prompt_embeds) * num_images_per_prompt
        check_generators(generator, total, "len(prompts) * num_images_per_prompt")
        self._start_call(guidance_scale, 0.0, clip_skip, cross_attention_kwargs)
        device = self._execution_device
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_images_per_prompt, self.do_classifier_free_guidance, negative_prompt,
            prompt_embeds, negative_prompt_embeds, (cross_attention_kwargs or {}).get("scale"), clip_skip,
        )
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
        _, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device, timesteps, sigmas)
        timesteps, num_inference_steps = self.get_timesteps(num_inference_steps, strength, device)
        if num_inference_steps < 1:
            raise errors.PipelineInputError(
                f"strength={strength} of num_inference_steps={len(self.scheduler.timesteps)} leaves no denoising step: "
                f"raise strength or num_inference_steps"
            )
        crops_coords, resize_mode = None, "default"
        if padding_mask_crop is not None:
            crops_coords = self.mask_processor.get_crop_region(mask_image, width, height, pad=padding_mask_crop)
            resize_mode = "fill"
        init_image = self.image_processor.preprocess(
            image, height=height, width=width, crops_coords=crops_coords, resize_mode=resize_mode
        ).to(dtype=torch.float32)
        blend = num_channels_unet == 4
        prepared = self.prepare_latents(
            total, self.vae.config.latent_channels, height, width, prompt_embeds.dtype, device, generator, latents,
            image=init_image, timestep=timesteps[:1].repeat(total), is_strength_max=strength == 1.0,
            return_noise=True, return_image_latents=blend,
        )
        latents, noise = prepared[0], prepared[1]
        image_latents = prepared[2] if blend else None
        mask_condition = self.mask_processor.preprocess(
            mask_image, height=height, width=width, resize_mode=resize_mode, crops_coords=crops_coords
        )
        masked_image = init_image * (mask_condition < 0.5) if masked_image_latents is None else masked_image_latents
        mask, masked_image_latents = self.prepare_mask_latents(
            mask_condition, masked_image, total, height, width, prompt_embeds.dtype, device, generator,
            self.do_classifier_free_guidance,
        )
        if not blend:
            _check_condition_channels(self.unet.config.in_channels, latents, mask, masked_image_latents)
        tensors = {
            "latents": latents, "prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds,
            "mask": mask, "masked_image_latents": masked_image_latents,
        }
        unet_kwargs = {
            **self._unet_kwargs(total, device, latents.dtype),
            **self.ip_adapter_unet_kwargs(
                ip_adapter_image, ip_adapter_image_embeds, device, total, self.do_classifier_free_guidance
            ),
        }
        self._inpaint_loop(
            tensors, timesteps, num_inference_steps, unet_kwargs,
            self.prepare_extra_step_kwargs(generator, eta), image_latents, noise,
            callback_on_step_end, callback_on_step_end_tensor_inputs,
        )
        output = self.decode_latents_to_output(
            tensors["latents"], output_type, True, device, tensors["prompt_embeds"].dtype,
            self._mask_conditioned_decode(init_image, mask_condition, total, device, masked_image_latents.dtype),
        )
        if padding_mask_crop is not None:
            output.images = [
                self.image_processor.apply_overlay(mask_image, image, inpainted, crops_coords)
                for inpainted in output.images
            ]
        self.maybe_free_model_hooks()
        return output if return_dict else (output.images, output.nsfw_content_detected)

    def _mask_conditioned_decode(
        self, init_image: torch.Tensor, mask_condition: torch.Tensor, batch: int, device: torch.device,
        dtype: torch.dtype,
    ) -> dict[str, torch.Tensor]:
        """``vae.decode`` keywords: the image and mask for an :class:`AsymmetricAutoencoderKL`
        (its decoder keeps the unmasked area sharp), none for other VAEs.

        One image and mask serve every image of the batch (diffusers 0.42.1 fails there with a
        ``KeyError``); ``batch`` is the number of images decoded.
        """
        if not isinstance(self.vae, AsymmetricAutoencoderKL):
            return {}
        condition = {"image": init_image, "mask": mask_condition}
        return {
            name: (tensor.expand(batch, *tensor.shape[1:]) if tensor.shape[0] == 1 else tensor).to(device, dtype)
            for name, tensor in condition.items()
        }

    def _inpaint_loop(
        self,
        tensors: dict[str, Any],
        timesteps: torch.Tensor,
        num_inference_steps: int,
        unet_kwargs: dict[str, Any],
        extra_step_kwargs: dict[str, Any],
        image_latents: torch.Tensor | None,
        noise: torch.Tensor,
        callback: StepCallback | None,
        callback_inputs: Sequence[str],
    ) -> None:
        """The sampling loop: the 9-channel UNet gets mask and masked-image latents with its
        input; with a 4-channel one (``image_latents`` given) the kept area is blended back."""
        order = getattr(self.scheduler, "order", 1)
        num_warmup_steps = len(timesteps) - num_inference_steps * order
        self._num_timesteps = len(timesteps)
        guided = self.do_classifier_free_guidance
        with self.progress_bar(total=num_inference_steps) as bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                latents = tensors["latents"]
                model_input = self.scheduler.scale_model_input(torch.cat([latents] * 2) if guided else latents, t)
                if image_latents is None:
                    model_input = torch.cat([model_input, tensors["mask"], tensors["masked_image_latents"]], dim=1)
                noise_pred = self.unet(
                    model_input, t, encoder_hidden_states=tensors["prompt_embeds"], **unet_kwargs
                ).sample
                if guided:
                    uncond, text = noise_pred.chunk(2)
                    noise_pred = uncond + self.guidance_scale * (text - uncond)
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                if image_latents is not None:
                    keep = tensors["mask"].chunk(2)[0] if guided else tensors["mask"]
                    proper = image_latents
                    if i < len(timesteps) - 1:
                        proper = self.scheduler.add_noise(image_latents, noise, torch.tensor([timesteps[i + 1]]))
                    latents = (1 - keep) * proper + keep * latents
                tensors["latents"] = latents
                if callback is not None:
                    returned = callback(self, i, t, {k: tensors[k] for k in callback_inputs})
                    tensors.update({k: v for k, v in returned.items() if k in INPAINT_CALLBACK_TENSOR_INPUTS})
                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % order == 0):
                    bar.update()


def _check_mask_crop_inputs(image: Any, mask_image: Any, output_type: str) -> None:
    """``padding_mask_crop`` works on PIL images and pastes into one: refuse anything else, as diffusers does."""
    for name, value in (("image", image), ("mask_image", mask_image)):
        if not isinstance(value, PIL.Image.Image):
            raise errors.PipelineInputError(
                f"padding_mask_crop needs {name} as one PIL image, got {type(value).__name__}: convert it "
                f"(VaeImageProcessor.numpy_to_pil) or leave padding_mask_crop unset"
            )
    if output_type != "pil":
        raise errors.PipelineInputError(
            f"padding_mask_crop pastes the result into the PIL image, so output_type must be 'pil', got {output_type!r}"
        )


def _check_condition_channels(
    unet_channels: int, latents: torch.Tensor, mask: torch.Tensor, masked_image_latents: torch.Tensor
) -> None:
    got = latents.shape[1] + mask.shape[1] + masked_image_latents.shape[1]
    if got != unet_channels:
        raise errors.PipelineInputError(
            f"the inpainting UNet takes {unet_channels} input channels but latents ({latents.shape[1]}) + mask "
            f"({mask.shape[1]}) + masked_image_latents ({masked_image_latents.shape[1]}) give {got}: pass a "
            f"single-channel mask_image and 4-channel masked_image_latents (or none)"
        )
