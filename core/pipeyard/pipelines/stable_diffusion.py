"""StableDiffusionPipeline: text-to-image with a latent diffusion model (Rombach et al., 2022).

The walk of one call::

    prompts --CLIP text encoder--> embeddings (and negative ones, for classifier-free guidance)
    noise latents * init_noise_sigma
    for t in scheduler.timesteps:  noise_pred = unet(scale_model_input(latents), t, embeddings)
                                   guided = uncond + guidance_scale * (text - uncond)
                                   latents = scheduler.step(guided, t, latents).prev_sample
    images = vae.decode(latents / scaling_factor) -> safety checker -> output_type

Works with SD 1.x and 2.x repositories (epsilon or v-prediction, the scheduler decides) and any
scheduler with the diffusers interface.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .. import errors
from .base import DiffusionPipeline
from .call_checks import Generator, check_generators
from .image_processing import LATENT_OUTPUT_TYPES, check_output_type
from .image_processor import VaeImageProcessor
from .ip_adapter_embeds import IPAdapterImageEmbedsMixin
from .loader_mixins import (
    FromSingleFileMixin,
    IPAdapterMixin,
    StableDiffusionLoraLoaderMixin,
    TextualInversionLoaderMixin,
    adjust_lora_scale_text_encoder,
)
from .outputs import StableDiffusionPipelineOutput
from .prompt_encoding import Prompt, encode_prompt, prompt_batch_size
from .sampling import guidance_scale_embedding, rescale_noise_cfg, retrieve_timesteps, step_kwargs
from .stable_diffusion_mixin import StableDiffusionMixin

logger = logging.getLogger(__name__)

StepCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]

#: tensors a ``callback_on_step_end`` may read and replace
CALLBACK_TENSOR_INPUTS = ("latents", "prompt_embeds", "negative_prompt_embeds")

__all__ = ["StableDiffusionPipeline", "rescale_noise_cfg", "retrieve_timesteps", "step_kwargs"]


def _deprecated(what: str, instead: str) -> None:
    """The FutureWarning diffusers gives for a helper it keeps for old pipelines (same category)."""
    warnings.warn(f"{what} is deprecated (in diffusers too); use {instead}", FutureWarning, stacklevel=3)


class StableDiffusionPipeline(
    DiffusionPipeline,
    StableDiffusionMixin,
    TextualInversionLoaderMixin,
    StableDiffusionLoraLoaderMixin,
    IPAdapterMixin,
    IPAdapterImageEmbedsMixin,
    FromSingleFileMixin,
):
    """Text-to-image generation with Stable Diffusion 1.x / 2.x.

    Subclasses written for diffusers find the helpers they call with diffusers' signatures and
    results: :meth:`encode_prompt`, :meth:`prepare_latents`, :meth:`check_inputs`,
    :meth:`prepare_extra_step_kwargs`, :meth:`run_safety_checker`, :meth:`decode_latents`,
    :meth:`get_guidance_scale_embedding`, ``image_processor``, ``vae_scale_factor`` and the
    per-call properties (``guidance_scale``, ``do_classifier_free_guidance``, ``clip_skip``, ...).

    Example::

        pipe = DiffusionPipeline.from_pretrained("runwayml/stable-diffusion-v1-5", torch_dtype=torch.float16)
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        pipe = pipe.to("cuda")
        image = pipe("a photo of an astronaut riding a horse", num_inference_steps=20).images[0]
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->unet->vae"
    _optional_components = ("safety_checker", "feature_extractor", "image_encoder")
    _exclude_from_cpu_offload = ("safety_checker",)
    _callback_tensor_inputs = list(CALLBACK_TENSOR_INPUTS)
    # per-call state, readable through the properties below (these are the values before a call)
    _guidance_scale = 7.5
    _guidance_rescale = 0.0
    _clip_skip: int | None = None
    _cross_attention_kwargs: dict[str, Any] | None = None
    _interrupt = False
    _num_timesteps = 0

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
        super().__init__()
        scheduler = _updated_scheduler(scheduler)
        if safety_checker is None and requires_safety_checker:
            logger.warning(
                "%s runs without a safety checker (safety_checker=None): do not expose unfiltered "
                "results in public services; load the repository's safety_checker to keep it on",
                type(self).__name__,
            )
        if safety_checker is not None and feature_extractor is None:
            raise errors.ComponentError(
                f"{type(self).__name__} has a safety_checker but no feature_extractor to prepare its "
                f"input: pass feature_extractor=CLIPImageProcessor(...), or safety_checker=None"
            )
        self.register_modules(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            safety_checker=safety_checker, feature_extractor=feature_extractor, image_encoder=image_encoder,
        )
        #: how much smaller the latents are than the image (8 for every SD VAE)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 8
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.register_to_config(requires_safety_checker=requires_safety_checker)

    # ------------------------------------------------------------------ per-call properties

    @property
    def guidance_scale(self) -> float:
        """The guidance scale of the current (or last) call."""
        return self._guidance_scale

    @property
    def guidance_rescale(self) -> float:
        """The ``guidance_rescale`` of the current (or last) call."""
        return self._guidance_rescale

    @property
    def clip_skip(self) -> int | None:
        """The ``clip_skip`` of the current (or last) call."""
        return self._clip_skip

    @property
    def cross_attention_kwargs(self) -> dict[str, Any] | None:
        """The ``cross_attention_kwargs`` of the current (or last) call."""
        return self._cross_attention_kwargs

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Whether the current call runs the UNet on unconditional and text embeddings (not for
        guidance-distilled UNets, which take the scale as ``timestep_cond``)."""
        return self._guidance_scale > 1 and getattr(self.unet.config, "time_cond_proj_dim", None) is None

    @property
    def num_timesteps(self) -> int:
        """Number of timesteps of the current (or last) call."""
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        """Set ``pipe._interrupt = True`` (from a step callback) to skip the remaining steps."""
        return self._interrupt

    def default_size(self) -> tuple[int, int]:
        """``(height, width)`` the UNet was trained for: its ``sample_size`` times the VAE factor."""
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else (size[0], size[1])
        return height * self.vae_scale_factor, width * self.vae_scale_factor

    # ------------------------------------------------------------------ steps of a call

    def encode_prompt(
        self,
        prompt: Prompt | None,
        device: torch.device,
        num_images_per_prompt: int,
        do_classifier_free_guidance: bool,
        negative_prompt: Prompt | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        lora_scale: float | None = None,
        clip_skip: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prompt and negative-prompt embeddings, repeated for ``num_images_per_prompt``.

        Args:
            lora_scale: recorded as ``self._lora_scale`` (no LoRA layers exist to scale).
            clip_skip: use the hidden state this many layers before the last (final-normed).

        Returns:
            ``(prompt_embeds, negative_prompt_embeds)``; the second is None without guidance
            (unless given).
        """
        if lora_scale is not None:
            self._lora_scale = lora_scale
            adjust_lora_scale_text_encoder(self.text_encoder, lora_scale)
        return encode_prompt(
            self.text_encoder, self.tokenizer, prompt, device, num_images_per_prompt,
            do_classifier_free_guidance, negative_prompt, prompt_embeds, negative_prompt_embeds,
            clip_skip, fallback_dtype=self.unet.dtype if self.unet is not None else None,
            convert_prompt=lambda texts: self.maybe_convert_prompt(texts, self.tokenizer),
        )

    def _encode_prompt(
        self,
        prompt: Prompt | None,
        device: torch.device,
        num_images_per_prompt: int,
        do_classifier_free_guidance: bool,
        negative_prompt: Prompt | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        lora_scale: float | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Deprecated form of :meth:`encode_prompt`: one tensor, ``[negative, prompt]`` concatenated."""
        _deprecated("_encode_prompt()", "encode_prompt(), which returns (prompt_embeds, negative_prompt_embeds)")
        embeds, negative = self.encode_prompt(
            prompt, device, num_images_per_prompt, do_classifier_free_guidance, negative_prompt,
            prompt_embeds, negative_prompt_embeds, lora_scale, **kwargs,
        )
        return embeds if negative is None else torch.cat([negative, embeds])

    def prepare_latents(
        self,
        batch_size: int,
        num_channels_latents: int,
        height: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: Generator,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Starting latents (drawn, or the caller's) scaled by the scheduler's ``init_noise_sigma``.

        Raises:
            BatchSizeMismatchError: a generator list not of length ``batch_size``.
            PipelineInputError: ``latents`` of another shape than this call needs.
        """
        from ..torch_utils import randn_tensor

        factor = self.vae_scale_factor
        shape = (batch_size, num_channels_latents, int(height) // factor, int(width) // factor)
        check_generators(generator, batch_size, "batch_size * num_images_per_prompt")
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise errors.PipelineInputError(
                f"latents have shape {tuple(latents.shape)} but this call needs {shape} "
                f"(batch * num_images_per_prompt, channels, height // {factor}, width // {factor})"
            )
        else:
            latents = latents.to(device)
        return latents * self.scheduler.init_noise_sigma

    def prepare_extra_step_kwargs(self, generator: Generator, eta: float) -> dict[str, Any]:
        """``eta`` and ``generator`` for the scheduler's ``step``, when it takes them."""
        return step_kwargs(self.scheduler, generator, eta)

    def get_guidance_scale_embedding(
        self, w: torch.Tensor, embedding_dim: int = 512, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """``timestep_cond`` for guidance-distilled UNets: see :func:`~.sampling.guidance_scale_embedding`."""
        return guidance_scale_embedding(w, embedding_dim, dtype)

    def run_safety_checker(
        self, image: torch.Tensor | np.ndarray, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor | np.ndarray, list[bool] | None]:
        """Black out images the safety checker flags; ``None`` flags when there is no checker.

        ``image``: decoded images, a tensor in [-1, 1] or a numpy array ``(b, h, w, c)`` in [0, 1].
        """
        if self.safety_checker is None:
            return image, None
        if torch.is_tensor(image):
            pil_images = self.image_processor.postprocess(image, output_type="pil")
        else:
            pil_images = self.image_processor.numpy_to_pil(image)
        clip_input = self.feature_extractor(pil_images, return_tensors="pt").to(device)
        return self.safety_checker(images=image, clip_input=clip_input.pixel_values.to(dtype))

    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """Deprecated: latents -> ``(b, h, w, c)`` float32 numpy images in [0, 1] (no safety check)."""
        _deprecated("decode_latents()", "vae.decode(...) then image_processor.postprocess(...)")
        image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        return self.image_processor.pt_to_numpy(self.image_processor.denormalize(image))

    @torch.no_grad()
    def decode_latents_to_output(
        self,
        latents: torch.Tensor,
        output_type: str = "pil",
        return_dict: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        decode_kwargs: dict[str, Any] | None = None,
    ) -> StableDiffusionPipelineOutput | tuple[Any, Any]:
        """The last step of a call: decode denoised latents, run the safety checker, convert.

        Public for pipelines that run their own denoising loop (image-to-image, say) and end
        like ``__call__``.

        Args:
            latents: denoised latents ``(batch, 4, height / 8, width / 8)``, as the UNet sees them
                (they are divided by the VAE's ``scaling_factor`` here).
            output_type: ``"pil"``, ``"np"``, ``"pt"``, or ``"latent"`` to return ``latents``
                unchanged (no decoding, no safety check).
            return_dict: return a :class:`StableDiffusionPipelineOutput` rather than a tuple.
            device, dtype: where and in which dtype the safety checker's input goes (default:
                the pipeline's device, the latents' dtype); pass the prompt embeddings' dtype.
            decode_kwargs: extra keywords for ``vae.decode`` (inpainting passes the image and
                mask to an :class:`~pipeyard.AsymmetricAutoencoderKL`).

        Returns:
            ``.images`` and ``.nsfw_content_detected`` (``None`` without a safety checker or
            with ``"latent"``), or the tuple of both.

        Example:
            >>> latents = pipe(prompt, output_type="latent").images  # doctest: +SKIP
            >>> image = pipe.decode_latents_to_output(latents).images[0]  # doctest: +SKIP
        """
        check_output_type(output_type, LATENT_OUTPUT_TYPES)
        if output_type == "latent":
            image, has_nsfw = latents, None
        else:
            device = device if device is not None else self.device
            dtype = dtype if dtype is not None else latents.dtype
            image = self.vae.decode(latents / self.vae.config.scaling_factor, **(decode_kwargs or {})).sample
            image, has_nsfw = self.run_safety_checker(image, device, dtype)
        do_denormalize = None if has_nsfw is None else [not flagged for flagged in has_nsfw]
        images = self.image_processor.postprocess(image, output_type=output_type, do_denormalize=do_denormalize)
        if not return_dict:
            return images, has_nsfw
        return StableDiffusionPipelineOutput(images=images, nsfw_content_detected=has_nsfw)

    def check_inputs(
        self,
        prompt: Prompt | None,
        height: int,
        width: int,
        callback_steps: int | None = None,
        negative_prompt: Prompt | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        ip_adapter_image: Any = None,
        ip_adapter_image_embeds: list[torch.Tensor] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] | None = None,
    ) -> None:
        """Refuse unusable arguments before any work, with what to change (diffusers' signature).

        Raises:
            ImageSizeError, ConflictingInputsError, BatchSizeMismatchError, PipelineInputError.
        """
        if height % 8 != 0 or width % 8 != 0:
            raise errors.ImageSizeError(height, width, 8)
        if callback_steps is not None and (not isinstance(callback_steps, int) or callback_steps <= 0):
            raise errors.PipelineInputError(
                f"callback_steps must be a positive integer, got {callback_steps!r}: call the callback every "
                f"callback_steps steps, e.g. callback_steps=1"
            )
        unknown = [k for k in callback_on_step_end_tensor_inputs or () if k not in self._callback_tensor_inputs]
        if unknown:
            raise errors.PipelineInputError(
                f"callback_on_step_end_tensor_inputs {unknown} are not available; choose from "
                f"{list(self._callback_tensor_inputs)}"
            )
        _check_prompt_inputs(prompt, prompt_embeds)
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise errors.ConflictingInputsError("negative_prompt", "negative_prompt_embeds")
        batch_size = prompt_batch_size(prompt, prompt_embeds)
        if isinstance(negative_prompt, list) and len(negative_prompt) != batch_size:
            raise errors.BatchSizeMismatchError(
                "negative_prompt", len(negative_prompt), batch_size,
                "pass one negative prompt (a string) for all prompts, or a list with one per prompt",
            )
        _check_embeds_match(prompt_embeds, negative_prompt_embeds, batch_size)
        _check_ip_adapter_inputs(ip_adapter_image, ip_adapter_image_embeds)

    # ------------------------------------------------------------------ the call

    @torch.no_grad()
    def __call__(
        self,
        prompt: Prompt | None = None,
        height: int | None = None,
        width: int | None = None,
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
        ip_adapter_image: Any = None,
        ip_adapter_image_embeds: list[torch.Tensor] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
        guidance_rescale: float = 0.0,
        clip_skip: int | None = None,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        cuda_graph: bool | None = None,
    ) -> StableDiffusionPipelineOutput | tuple[Any, Any]:
        """Generate images from text.

        Args:
            prompt: one prompt or a list; or pass ``prompt_embeds`` instead.
            height, width: image size in pixels, multiples of 8 (default: the UNet's size).
            num_inference_steps: denoising steps.
            timesteps, sigmas: a custom schedule instead of ``num_inference_steps``, for
                schedulers whose ``set_timesteps`` takes one (see :func:`retrieve_timesteps`).
            guidance_scale: classifier-free guidance weight; ``<= 1`` turns guidance off. A
                guidance-distilled UNet (``time_cond_proj_dim``) gets it as ``timestep_cond``.
            negative_prompt: what to steer away from: one for all prompts or one per prompt.
            ip_adapter_image, ip_adapter_image_embeds: an image prompt (one image, or list, per
                loaded IP-Adapter), or its precomputed embeddings (see
                :meth:`prepare_ip_adapter_image_embeds`); needs :meth:`load_ip_adapter` first.
            num_images_per_prompt: images generated for each prompt.
            eta: DDIM noise weight (schedulers without ``eta`` ignore it).
            generator: one ``torch.Generator``, or a list with one per image
                (``batch * num_images_per_prompt``).
            latents: starting noise, ``(batch * num_images_per_prompt, 4, height / 8, width / 8)``.
            prompt_embeds, negative_prompt_embeds: precomputed text embeddings.
            output_type: ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"``.
            return_dict: return a :class:`StableDiffusionPipelineOutput` rather than a tuple.
            cross_attention_kwargs: passed to the UNet's attention processors; its ``"scale"``
                is the LoRA scale.
            guidance_rescale: 0..1, rescales guided predictions (helps zero-terminal-SNR models).
            clip_skip: use the text encoder's hidden state this many layers before the last.
            callback_on_step_end: ``fn(pipe, step, timestep, tensors) -> dict`` after every step
                (or a :class:`~pipeyard.PipelineCallback`); returned tensors replace the
                pipeline's. Setting ``pipe._interrupt = True`` in it skips the remaining steps.
            callback_on_step_end_tensor_inputs: which tensors the callback receives.
            cuda_graph: ``True`` replays the UNet from CUDA graphs from now on (see
                :meth:`enable_cuda_graph`), ``False`` turns them off, ``None`` leaves them as set.

        Returns:
            ``.images`` and ``.nsfw_content_detected`` (or the tuple of both).

        Raises:
            PipelineInputError (and its subclasses): bad arguments, before any work.
        """
        callback_on_step_end_tensor_inputs = getattr(callback_on_step_end, "tensor_inputs", callback_on_step_end_tensor_inputs)
        height, width = height or self.default_size()[0], width or self.default_size()[1]
        self.check_inputs(
            prompt, height, width, None, negative_prompt, prompt_embeds, negative_prompt_embeds,
            ip_adapter_image, ip_adapter_image_embeds, callback_on_step_end_tensor_inputs,
        )
        check_output_type(output_type, LATENT_OUTPUT_TYPES)
        self._apply_cuda_graph_option(cuda_graph)
        batch_size = prompt_batch_size(prompt, prompt_embeds) * num_images_per_prompt
        check_generators(generator, batch_size, "len(prompts) * num_images_per_prompt")
        self._start_call(guidance_scale, guidance_rescale, clip_skip, cross_attention_kwargs)
        device = self._execution_device
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_images_per_prompt, self.do_classifier_free_guidance, negative_prompt,
            prompt_embeds, negative_prompt_embeds, (cross_attention_kwargs or {}).get("scale"), clip_skip,
        )
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device, timesteps, sigmas)
        latents = self.prepare_latents(
            batch_size, self.unet.config.in_channels, height, width, prompt_embeds.dtype, device, generator, latents
        )
        tensors = {"latents": latents, "prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
        unet_kwargs = {
            **self._unet_kwargs(batch_size, device, latents.dtype),
            **self.ip_adapter_unet_kwargs(
                ip_adapter_image, ip_adapter_image_embeds, device, batch_size, self.do_classifier_free_guidance
            ),
        }
        self._denoise(
            tensors, num_inference_steps, unet_kwargs, self.prepare_extra_step_kwargs(generator, eta),
            callback_on_step_end, callback_on_step_end_tensor_inputs,
        )
        output = self.decode_latents_to_output(
            tensors["latents"], output_type, return_dict, device, tensors["prompt_embeds"].dtype
        )
        self.maybe_free_model_hooks()
        return output

    def _start_call(
        self, guidance_scale: float, guidance_rescale: float, clip_skip: int | None,
        cross_attention_kwargs: dict[str, Any] | None,
    ) -> None:
        """Record this call's settings where the properties (and subclasses) read them."""
        self._guidance_scale = guidance_scale
        self._guidance_rescale = guidance_rescale
        self._clip_skip = clip_skip
        self._cross_attention_kwargs = cross_attention_kwargs
        self._interrupt = False

    def _unet_kwargs(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        """Extra UNet inputs of this call: ``timestep_cond`` for a guidance-distilled UNet, and
        ``cross_attention_kwargs`` other than the LoRA ``"scale"`` (only what is set, so plain
        calls stay plain)."""
        kwargs: dict[str, Any] = {}
        embedding_dim = getattr(self.unet.config, "time_cond_proj_dim", None)
        if embedding_dim is not None:
            w = torch.tensor(self.guidance_scale - 1).repeat(batch_size)
            kwargs["timestep_cond"] = self.get_guidance_scale_embedding(w, embedding_dim=embedding_dim).to(
                device=device, dtype=dtype
            )
        # "scale" is the LoRA scale, read by encode_prompt; with no LoRA layers the UNet has no use for it
        attention_kwargs = {k: v for k, v in (self.cross_attention_kwargs or {}).items() if k != "scale"}
        if attention_kwargs:
            kwargs["cross_attention_kwargs"] = attention_kwargs
        return kwargs

    def _denoise(
        self,
        tensors: dict[str, Any],
        num_inference_steps: int,
        unet_kwargs: dict[str, Any],
        extra_step_kwargs: dict[str, Any],
        callback: StepCallback | None,
        callback_inputs: Sequence[str],
        timesteps: torch.Tensor | None = None,
    ) -> None:
        """The sampling loop; updates ``tensors["latents"]`` (and what the callback replaces).

        ``timesteps``: the part of the scheduler's timesteps to run (default: all of them).
        """
        timesteps = self.scheduler.timesteps if timesteps is None else timesteps
        order = getattr(self.scheduler, "order", 1)
        num_warmup_steps = len(timesteps) - num_inference_steps * order
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=num_inference_steps) as bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                noise_pred = self._predict_noise(tensors["latents"], t, tensors["prompt_embeds"], unet_kwargs)
                tensors["latents"] = self.scheduler.step(
                    noise_pred, t, tensors["latents"], **extra_step_kwargs, return_dict=False
                )[0]
                if callback is not None:
                    returned = callback(self, i, t, {k: tensors[k] for k in callback_inputs})
                    tensors.update({k: v for k, v in returned.items() if k in CALLBACK_TENSOR_INPUTS})
                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % order == 0):
                    bar.update()

    def _predict_noise(
        self, latents: torch.Tensor, t: Any, prompt_embeds: torch.Tensor, unet_kwargs: dict[str, Any]
    ) -> torch.Tensor:
        """The UNet's prediction for ``latents`` at ``t``, with classifier-free guidance applied."""
        guided = self.do_classifier_free_guidance
        model_input = torch.cat([latents] * 2) if guided else latents
        model_input = self.scheduler.scale_model_input(model_input, t)
        noise_pred = self.unet(model_input, t, encoder_hidden_states=prompt_embeds, **unet_kwargs).sample
        if not guided:
            return noise_pred
        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
        noise_pred = noise_pred_uncond + self._guidance_scale * (noise_pred_text - noise_pred_uncond)
        if self.guidance_rescale > 0.0:
            noise_pred = rescale_noise_cfg(noise_pred, noise_pred_text, guidance_rescale=self.guidance_rescale)
        return noise_pred

# ---------------------------------------------------------------------- helpers


def _updated_scheduler(scheduler: Any) -> Any:
    """A scheduler rebuilt with ``steps_offset=1`` and ``clip_sample=False`` when its config is outdated.

    Early SD repositories shipped configs that skew the timesteps and clip latents; diffusers
    corrects them the same way, so outputs match.
    """
    if scheduler is None:
        return None
    config = scheduler.config
    fixes = {}
    if getattr(config, "steps_offset", 1) != 1:
        fixes["steps_offset"] = 1
    if getattr(config, "clip_sample", False) is True:
        fixes["clip_sample"] = False
    if not fixes:
        return scheduler
    logger.warning(
        "the scheduler config is outdated (%s); using %s instead. Update scheduler/scheduler_config.json",
        {k: config[k] for k in fixes}, fixes,
    )
    return type(scheduler).from_config({**dict(config), **fixes})


def _check_prompt_inputs(prompt: Any, prompt_embeds: torch.Tensor | None) -> None:
    if prompt is not None and prompt_embeds is not None:
        raise errors.ConflictingInputsError("prompt", "prompt_embeds")
    if prompt is None and prompt_embeds is None:
        raise errors.ConflictingInputsError("prompt", "prompt_embeds", both=False)
    if prompt is not None and not isinstance(prompt, (str, list)):
        raise errors.PipelineInputError(f"prompt must be a string or a list of strings, got {type(prompt).__name__}")


def _check_embeds_match(
    prompt_embeds: torch.Tensor | None, negative_prompt_embeds: torch.Tensor | None, batch_size: int
) -> None:
    if negative_prompt_embeds is None:
        return
    if prompt_embeds is not None and prompt_embeds.shape != negative_prompt_embeds.shape:
        raise errors.PipelineInputError(
            f"prompt_embeds {tuple(prompt_embeds.shape)} and negative_prompt_embeds "
            f"{tuple(negative_prompt_embeds.shape)} must have the same shape"
        )
    if negative_prompt_embeds.shape[0] != batch_size:
        raise errors.BatchSizeMismatchError(
            "negative_prompt_embeds", negative_prompt_embeds.shape[0], batch_size,
            "pass negative embeddings with one row per prompt",
        )



def _check_ip_adapter_inputs(ip_adapter_image: Any, ip_adapter_image_embeds: Any) -> None:
    if ip_adapter_image is not None and ip_adapter_image_embeds is not None:
        raise errors.ConflictingInputsError("ip_adapter_image", "ip_adapter_image_embeds")
    if ip_adapter_image_embeds is None:
        return
    if not isinstance(ip_adapter_image_embeds, list):
        raise errors.PipelineInputError(
            f"ip_adapter_image_embeds must be a list of tensors (one per IP-Adapter), got "
            f"{type(ip_adapter_image_embeds).__name__}"
        )
    if ip_adapter_image_embeds and ip_adapter_image_embeds[0].ndim not in (3, 4):
        raise errors.PipelineInputError(
            f"ip_adapter_image_embeds must hold 3-d or 4-d tensors, got {ip_adapter_image_embeds[0].ndim}-d"
        )
