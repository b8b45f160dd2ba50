"""StableDiffusionImg2ImgPipeline: re-draw an image under a prompt (SDEdit, Meng et al., 2021).

The walk of one call::

    image --VAE encode (sampled)--> latents * scaling_factor
    skip the first (1 - strength) of the schedule; noise the latents to the first kept timestep
    denoise over the kept timesteps exactly like text-to-image
    decode -> safety checker -> output_type

``strength`` 1.0 starts from pure noise (the image only fixes the size and the noise draw);
0.0 runs no step and gives the image back through the VAE. With the same components, seeds
and arguments the images equal diffusers' ``StableDiffusionImg2ImgPipeline`` (tests check
1e-4 with PNDM and DDIM).

The module also offers the helpers diffusers-written files import from the module of the
same name: :func:`retrieve_latents`, :func:`retrieve_timesteps` and the deprecated
:func:`preprocess`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch

from .. import errors
from ..utils.pil import PIL_INTERPOLATION
from .call_checks import Generator, check_generators
from .image_processing import LATENT_OUTPUT_TYPES, check_output_type
from .image_processor import PipelineImageInput
from .outputs import StableDiffusionPipelineOutput
from .prompt_encoding import Prompt, prompt_batch_size
from .sampling import retrieve_timesteps
from .stable_diffusion import StableDiffusionPipeline, StepCallback

__all__ = ["StableDiffusionImg2ImgPipeline", "preprocess", "retrieve_latents", "retrieve_timesteps"]

#: ``__call__`` keywords diffusers accepts only for old callers; pipeyard names the replacement
_OLD_CALL_KWARGS = {"callback": "callback_on_step_end", "callback_steps": "callback_on_step_end"}


def retrieve_latents(encoder_output: Any, generator: Generator = None, sample_mode: str = "sample") -> torch.Tensor:
    """The latents of a VAE ``encode`` output: sampled (``"sample"``) or the mode (``"argmax"``)
    of its ``latent_dist``, or its ``latents`` for encoders that return them directly.

    Raises:
        EncoderLatentsError (an AttributeError too): the output has neither.
    """
    distribution = getattr(encoder_output, "latent_dist", None)
    if distribution is not None and sample_mode == "sample":
        return distribution.sample(generator)
    if distribution is not None and sample_mode == "argmax":
        return distribution.mode()
    if hasattr(encoder_output, "latents"):
        return encoder_output.latents
    raise errors.EncoderLatentsError(type(encoder_output).__name__, sample_mode)


def preprocess(image: PIL.Image.Image | list[PIL.Image.Image] | torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Deprecated (in diffusers too): PIL image(s) -> a ``(b, 3, h, w)`` tensor in [-1, 1], sizes
    rounded down to a multiple of 8; tensors pass through (a list is concatenated).

    Use ``pipe.image_processor.preprocess(image)`` instead.
    """
    warnings.warn(
        "preprocess() is deprecated (in diffusers too); use pipe.image_processor.preprocess(image)",
        FutureWarning, stacklevel=2,
    )
    if isinstance(image, torch.Tensor):
        return image
    images = [image] if isinstance(image, PIL.Image.Image) else list(image)
    if isinstance(images[0], torch.Tensor):
        return torch.cat(images, dim=0)
    width, height = (size - size % 8 for size in images[0].size)
    arrays = [np.array(i.resize((width, height), resample=PIL_INTERPOLATION["lanczos"]))[None, :] for i in images]
    array = np.concatenate(arrays, axis=0).astype(np.float32) / 255.0
    return torch.from_numpy(2.0 * array.transpose(0, 3, 1, 2) - 1.0)


def check_strength(strength: float) -> None:
    """``strength`` must lie in [0, 1].

    Raises:
        StrengthError: it does not.
    """
    if not 0 <= strength <= 1:
        raise errors.StrengthError(strength)


def check_old_call_kwargs(kwargs: dict[str, Any], owner: str) -> None:
    """Refuse ``__call__`` keywords pipeyard does not take (diffusers' deprecated ``callback`` ...).

    Raises:
        PipelineInputError: naming each keyword and what to use instead.
    """
    if not kwargs:
        return
    hints = [f"{k} (use {_OLD_CALL_KWARGS[k]})" if k in _OLD_CALL_KWARGS else k for k in sorted(kwargs)]
    raise errors.PipelineInputError(
        f"{owner}.__call__ got unexpected keyword arguments: {', '.join(errors.clip(h) for h in hints)}"
    )


class StableDiffusionImg2ImgPipeline(StableDiffusionPipeline):
    """Image-to-image generation with Stable Diffusion 1.x / 2.x, diffusers' interface.

    Loads the same repositories as :class:`StableDiffusionPipeline` (the components are the
    same); subclasses written for diffusers find :meth:`get_timesteps`, :meth:`prepare_latents`
    (image form) and :meth:`check_inputs` (with ``strength``) as they expect.

    Example::

        pipe = StableDiffusionImg2ImgPipeline.from_pretrained("runwayml/stable-diffusion-v1-5")
        image = pipe("a fantasy landscape", image=sketch, strength=0.75).images[0]
    """

    def get_timesteps(
        self, num_inference_steps: int, strength: float, device: torch.device | str | None
    ) -> tuple[torch.Tensor, int]:
        """The tail of the scheduler's timesteps that ``strength`` keeps, and how many steps it has.

        Tells the scheduler where it starts (``set_begin_index``) when it can be told.
        """
        kept = min(int(num_inference_steps * strength), num_inference_steps)
        start = max(num_inference_steps - kept, 0)
        order = getattr(self.scheduler, "order", 1)
        timesteps = self.scheduler.timesteps[start * order:]
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(start * order)
        return timesteps, num_inference_steps - start

    def prepare_latents(  # type: ignore[override]
        self,
        image: torch.Tensor,
        timestep: torch.Tensor,
        batch_size: int,
        num_images_per_prompt: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: Generator = None,
    ) -> torch.Tensor:
        """Encode ``image`` (or take 4-channel latents as they are), repeat it to the batch and
        noise it to ``timestep``.

        Raises:
            PipelineInputError: ``image`` is not a tensor, or its batch does not divide the
                batch of ``batch_size * num_images_per_prompt`` images.
            BatchSizeMismatchError: a generator list of another length.
        """
        from ..torch_utils import randn_tensor

        if not isinstance(image, torch.Tensor):
            raise errors.PipelineInputError(
                f"prepare_latents needs the preprocessed image as a torch tensor (batch, channels, height, width), "
                f"got {type(image).__name__}: pass pipe.image_processor.preprocess(image)"
            )
        image = image.to(device=device, dtype=dtype)
        batch_size = batch_size * num_images_per_prompt
        if image.shape[1] == 4:
            init_latents = image
        else:
            check_generators(generator, batch_size, "batch_size * num_images_per_prompt")
            if isinstance(generator, list):
                image = _repeat_to_batch(image, batch_size, "image")
                init_latents = torch.cat(
                    [retrieve_latents(self.vae.encode(image[i:i + 1]), generator=generator[i]) for i in range(batch_size)]
                )
            else:
                init_latents = retrieve_latents(self.vae.encode(image), generator=generator)
            init_latents = self.vae.config.scaling_factor * init_latents
        if batch_size > init_latents.shape[0] and batch_size % init_latents.shape[0] == 0:
            warnings.warn(
                f"{batch_size} images are asked for but only {init_latents.shape[0]} input images were given; "
                f"repeating them is deprecated (in diffusers too): pass one image per prompt",
                FutureWarning, stacklevel=2,
            )
        init_latents = _repeat_to_batch(init_latents, batch_size, "image")
        noise = randn_tensor(init_latents.shape, generator=generator, device=device, dtype=dtype)
        return self.scheduler.add_noise(init_latents, noise, timestep)

    def check_inputs(  # type: ignore[override]
        self,
        prompt: Prompt | None,
        strength: float,
        callback_steps: int | None,
        negative_prompt: Prompt | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        ip_adapter_image: Any = None,
        ip_adapter_image_embeds: list[torch.Tensor] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] | None = None,
    ) -> None:
        """Refuse unusable arguments before any work (diffusers' img2img signature).

        Raises:
            PipelineInputError (and its subclasses).
        """
        check_strength(strength)
        # the size comes from the image here, so the parent's size check gets a valid one
        super().check_inputs(
            prompt, 8, 8, callback_steps, negative_prompt, prompt_embeds, negative_prompt_embeds,
            ip_adapter_image, ip_adapter_image_embeds, callback_on_step_end_tensor_inputs,
        )

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        prompt: Prompt | None = None,
        image: PipelineImageInput | None = None,
        strength: float = 0.8,
        num_inference_steps: int = 50,
        timesteps: list[int] | None = None,
        sigmas: list[float] | None = None,
        guidance_scale: float = 7.5,
        negative_prompt: Prompt | None = None,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: Generator = None,
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
        """Re-draw ``image`` under ``prompt``.

        Args:
            prompt: one prompt or a list; or pass ``prompt_embeds`` instead.
            image: the starting image(s): PIL, numpy or torch in [0, 1] (see
                :class:`~.image_processor.VaeImageProcessor`), or 4-channel latents.
            strength: 0..1, how much of the schedule runs, i.e. how far from ``image`` to go.
            num_inference_steps: steps of the full schedule (``strength`` of them run).
            timesteps, sigmas: a custom schedule, for schedulers that take one.
            guidance_scale, negative_prompt, num_images_per_prompt, eta, generator,
            prompt_embeds, negative_prompt_embeds, output_type, return_dict,
            cross_attention_kwargs, clip_skip, callback_on_step_end,
            callback_on_step_end_tensor_inputs: as for :class:`StableDiffusionPipeline`.
            ip_adapter_image, ip_adapter_image_embeds: an image prompt or its precomputed
                embeddings, as for :class:`StableDiffusionPipeline` (needs ``load_ip_adapter``).

        Returns:
            ``.images`` and ``.nsfw_content_detected`` (or the tuple of both).

        Raises:
            PipelineInputError (and its subclasses): bad arguments, before any work.
            ComponentError: an image prompt without an IP-Adapter loaded.
        """
        check_old_call_kwargs(kwargs, type(self).__name__)
        callback_on_step_end_tensor_inputs = getattr(callback_on_step_end, "tensor_inputs", callback_on_step_end_tensor_inputs)
        self.check_inputs(
            prompt, strength, None, negative_prompt, prompt_embeds, negative_prompt_embeds,
            ip_adapter_image, ip_adapter_image_embeds, callback_on_step_end_tensor_inputs,
        )
        if image is None:
            raise errors.PipelineInputError(f"{type(self).__name__} needs an image to start from: pass image=...")
        check_output_type(output_type, LATENT_OUTPUT_TYPES)
        batch_size = prompt_batch_size(prompt, prompt_embeds)
        check_generators(generator, batch_size * num_images_per_prompt, "len(prompts) * num_images_per_prompt")
        self._start_call(guidance_scale, 0.0, clip_skip, cross_attention_kwargs)
        device = self._execution_device
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_images_per_prompt, self.do_classifier_free_guidance, negative_prompt,
            prompt_embeds, negative_prompt_embeds, (cross_attention_kwargs or {}).get("scale"), clip_skip,
        )
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
        pixels = self.image_processor.preprocess(image)
        _, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device, timesteps, sigmas)
        timesteps, num_inference_steps = self.get_timesteps(num_inference_steps, strength, device)
        if len(timesteps) == 0:
            raise errors.PipelineInputError(
                f"strength={strength} of num_inference_steps={len(self.scheduler.timesteps)} leaves no timestep to "
                f"start from (diffusers returns an empty batch here): raise strength or num_inference_steps"
            )
        latents = self.prepare_latents(
            pixels, timesteps[:1].repeat(batch_size * num_images_per_prompt), batch_size, num_images_per_prompt,
            prompt_embeds.dtype, device, generator,
        )
        tensors = {"latents": latents, "prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
        unet_kwargs = {
            **self._unet_kwargs(batch_size * num_images_per_prompt, device, latents.dtype),
            **self.ip_adapter_unet_kwargs(
                ip_adapter_image, ip_adapter_image_embeds, device, batch_size * num_images_per_prompt,
                self.do_classifier_free_guidance,
            ),
        }
        self._denoise(
            tensors, num_inference_steps, unet_kwargs, self.prepare_extra_step_kwargs(generator, eta),
            callback_on_step_end, callback_on_step_end_tensor_inputs, timesteps=timesteps,
        )
        output = self.decode_latents_to_output(
            tensors["latents"], output_type, return_dict, device, tensors["prompt_embeds"].dtype
        )
        self.maybe_free_model_hooks()
        return output


# ---------------------------------------------------------------------- helpers


def _repeat_to_batch(tensor: torch.Tensor, batch_size: int, what: str) -> torch.Tensor:
    """``tensor`` repeated along the batch axis to ``batch_size`` rows (a multiple of its own)."""
    if tensor.shape[0] >= batch_size:
        return tensor
    if batch_size % tensor.shape[0] != 0:
        raise errors.BatchSizeMismatchError(
            what, tensor.shape[0], batch_size,
            f"pass one {what} for all prompts, or a number of them that divides len(prompts) * num_images_per_prompt",
        )
    return torch.cat([tensor] * (batch_size // tensor.shape[0]), dim=0)
