"""Image prompts for IP-Adapter: the image encoder's embeddings, laid out as the UNet wants them.

A pipeline with an IP-Adapter loaded (:meth:`~.loader_mixins.IPAdapterMixin.load_ip_adapter`)
turns ``ip_adapter_image`` into one tensor per adapter, ``(batch, images, embed_dim)`` (or
``(batch, images, tokens, width)`` for projections that read hidden states), with the
unconditional half first under classifier-free guidance, and passes them to the UNet as
``added_cond_kwargs={"image_embeds": [...]}``. The names and layouts are diffusers' (community
pipelines call :meth:`encode_image` and :meth:`prepare_ip_adapter_image_embeds` themselves).
"""

from __future__ import annotations

from typing import Any

import torch

from .. import errors


class IPAdapterImageEmbedsMixin:
    """``encode_image`` and ``prepare_ip_adapter_image_embeds`` for Stable Diffusion pipelines."""

    image_encoder: Any
    feature_extractor: Any
    unet: Any

    def encode_image(
        self, image: Any, device: torch.device | str, num_images_per_prompt: int, output_hidden_states: bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image embeddings, unconditional ones)``, each repeated ``num_images_per_prompt`` times.

        The unconditional embeddings are zeros; with ``output_hidden_states`` both are the image
        encoder's second-to-last hidden states instead, the unconditional ones of a black image.

        Raises:
            ComponentError: the pipeline has no ``image_encoder`` (or no ``feature_extractor``
                for images that are not tensors yet).
        """
        if self.image_encoder is None:
            raise errors.ComponentError(
                f"{type(self).__name__}.encode_image needs an image_encoder (a CLIPVisionModelWithProjection): "
                f"load an IP-Adapter with its image encoder, or pass image_encoder= to the pipeline"
            )
        dtype = next(self.image_encoder.parameters()).dtype
        if not isinstance(image, torch.Tensor):
            if self.feature_extractor is None:
                raise errors.ComponentError(
                    f"{type(self).__name__}.encode_image needs a feature_extractor (a CLIPImageProcessor) to turn "
                    f"images into pixel values: pass feature_extractor= or give tensors of pixel values"
                )
            image = self.feature_extractor(image, return_tensors="pt").pixel_values
        image = image.to(device=device, dtype=dtype)
        if output_hidden_states:
            states = self.image_encoder(image, output_hidden_states=True).hidden_states[-2]
            uncond = self.image_encoder(torch.zeros_like(image), output_hidden_states=True).hidden_states[-2]
            return (states.repeat_interleave(num_images_per_prompt, dim=0),
                    uncond.repeat_interleave(num_images_per_prompt, dim=0))
        embeds = self.image_encoder(image).image_embeds.repeat_interleave(num_images_per_prompt, dim=0)
        return embeds, torch.zeros_like(embeds)

    def prepare_ip_adapter_image_embeds(
        self,
        ip_adapter_image: Any,
        ip_adapter_image_embeds: list[torch.Tensor] | None,
        device: torch.device | str,
        num_images_per_prompt: int,
        do_classifier_free_guidance: bool,
    ) -> list[torch.Tensor]:
        """One embedding tensor per loaded IP-Adapter, ``num_images_per_prompt`` rows (twice
        that, unconditional first, under guidance), from images or from precomputed embeddings
        (which then hold the unconditional half first when guided).

        Raises:
            BatchSizeMismatchError: a number of images other than the number of adapters loaded.
        """
        positive, negative = [], []
        if ip_adapter_image_embeds is None:
            images = ip_adapter_image if isinstance(ip_adapter_image, list) else [ip_adapter_image]
            layers = self._image_projection_layers()
            if len(images) != len(layers):
                raise errors.BatchSizeMismatchError(
                    "ip_adapter_image", len(images), len(layers),
                    "pass one image (or one list of images) per loaded IP-Adapter",
                )
            for image, layer in zip(images, layers):
                hidden = type(layer).__name__ != "ImageProjection"  # other projections read hidden states
                embeds, uncond = self.encode_image(image, device, 1, hidden)
                positive.append(embeds[None, :])
                negative.append(uncond[None, :])
        else:
            for embeds in ip_adapter_image_embeds:
                if do_classifier_free_guidance:
                    uncond, embeds = embeds.chunk(2)
                    negative.append(uncond)
                positive.append(embeds)
        prepared = []
        for i, embeds in enumerate(positive):
            embeds = torch.cat([embeds] * num_images_per_prompt, dim=0)
            if do_classifier_free_guidance:
                embeds = torch.cat([torch.cat([negative[i]] * num_images_per_prompt, dim=0), embeds], dim=0)
            prepared.append(embeds.to(device=device))
        return prepared

    def ip_adapter_unet_kwargs(
        self,
        ip_adapter_image: Any,
        ip_adapter_image_embeds: list[torch.Tensor] | None,
        device: torch.device | str,
        batch_size: int,
        do_classifier_free_guidance: bool,
    ) -> dict[str, Any]:
        """The UNet keywords an image prompt adds to a call: ``{"added_cond_kwargs": {"image_embeds":
        [...]}}`` for ``batch_size`` images (all prompts times ``num_images_per_prompt``), or ``{}``
        when neither ``ip_adapter_image`` nor ``ip_adapter_image_embeds`` is given.

        The one path the text-to-image, image-to-image and inpainting pipelines share.

        Raises:
            ComponentError, BatchSizeMismatchError: as :meth:`prepare_ip_adapter_image_embeds`.
        """
        if ip_adapter_image is None and ip_adapter_image_embeds is None:
            return {}
        image_embeds = self.prepare_ip_adapter_image_embeds(
            ip_adapter_image, ip_adapter_image_embeds, device, batch_size, do_classifier_free_guidance
        )
        return {"added_cond_kwargs": {"image_embeds": image_embeds}}

    def _image_projection_layers(self) -> list[Any]:
        projection = getattr(self.unet, "encoder_hid_proj", None)
        if projection is None:
            raise errors.ComponentError(
                f"{type(self).__name__}: ip_adapter_image needs an IP-Adapter loaded into the UNet: call "
                f"pipe.load_ip_adapter(...) first"
            )
        return list(projection.image_projection_layers)
