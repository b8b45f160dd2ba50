"""The loader mixins of diffusers' Stable Diffusion pipelines, for code that inherits them.

Pipelines written for diffusers derive from ``TextualInversionLoaderMixin``,
``StableDiffusionLoraLoaderMixin``, ``IPAdapterMixin`` and ``FromSingleFileMixin`` and, inside
``__call__``, reach through them even when nothing was loaded: ``maybe_convert_prompt`` on
every prompt, ``self._lora_scale`` and ``scale_lora_layers`` when ``cross_attention_kwargs``
holds a ``"scale"``. That path works here and changes nothing, as in diffusers with nothing
loaded.

IP-Adapters (the base kind) load from a local folder. Loading other extra weights (LoRA,
textual inversion embeddings, single-file checkpoints) is not implemented: those methods raise
:class:`~pipeyard.errors.UnsupportedFeatureError`, naming the method and what to do instead.
"""

from __future__ import annotations

from typing import Any, NoReturn

from .. import errors

# diffusers' switch between PEFT's LoRA layers and its older patched projections (False here:
# code written for diffusers takes the older branch, which changes nothing) and its scale helpers.
from ..utils.lora import USE_PEFT_BACKEND, scale_lora_layers, unscale_lora_layers  # noqa: F401


def _unsupported(owner: Any, feature: str, fix: str) -> NoReturn:
    name = owner.__name__ if isinstance(owner, type) else type(owner).__name__
    raise errors.UnsupportedFeatureError(feature, name, fix)


def adjust_lora_scale_text_encoder(text_encoder: Any, lora_scale: float = 1.0) -> None:
    """diffusers' pre-PEFT text-encoder LoRA scaling: patched projections get ``lora_scale``.

    pipeyard never patches the text encoder's projections, so there is nothing to adjust;
    modules that carry a ``lora_scale`` attribute (a patched projection) get the new value.
    """
    if text_encoder is None:
        return
    for module in text_encoder.modules():
        if hasattr(module, "lora_linear_layer") and hasattr(module, "lora_scale"):
            module.lora_scale = lora_scale


# ---------------------------------------------------------------------- mixins


class TextualInversionLoaderMixin:
    """Textual inversion: prompts are rewritten for multi-vector tokens the tokenizer knows.

    Loading embeddings (:meth:`load_textual_inversion`) is not supported yet.
    """

    def maybe_convert_prompt(self, prompt: str | list[str], tokenizer: Any) -> str | list[str]:
        """The prompt(s) with each multi-vector token ``<tok>`` spelled ``<tok> <tok>_1 ...``.

        Unchanged when the tokenizer holds no such token (nothing loaded).
        """
        if isinstance(prompt, list):
            return [self._maybe_convert_prompt(p, tokenizer) for p in prompt]
        return self._maybe_convert_prompt(prompt, tokenizer)

    def _maybe_convert_prompt(self, prompt: str, tokenizer: Any) -> str:
        added = getattr(tokenizer, "added_tokens_encoder", {})
        for token in tokenizer.tokenize(prompt):
            if token not in added:
                continue
            spelled, index = token, 1
            while f"{token}_{index}" in added:
                spelled += f" {token}_{index}"
                index += 1
            prompt = prompt.replace(token, spelled)
        return prompt

    def load_textual_inversion(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(self, "load_textual_inversion", "add the tokens and embeddings to the tokenizer and "
                     "text encoder yourself (tokenizer.add_tokens, text_encoder.resize_token_embeddings)")

    def unload_textual_inversion(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(self, "unload_textual_inversion", "nothing can have been loaded by pipeyard")


class StableDiffusionLoraLoaderMixin:
    """LoRA for the UNet and text encoder. With nothing loaded, the scale plumbing is a no-op.

    Loading, fusing and saving LoRA weights is not supported yet.
    """

    _lora_loadable_modules = ("unet", "text_encoder")
    num_fused_loras = 0

    @property
    def lora_scale(self) -> float:
        """The LoRA scale of the current call (``cross_attention_kwargs["scale"]``), 1.0 by default."""
        return getattr(self, "_lora_scale", 1.0)

    def load_lora_weights(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(self, "load_lora_weights", "merge the LoRA into the UNet / text encoder weights "
                     "before loading, or use diffusers for this pipeline")

    @classmethod
    def lora_state_dict(cls, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(cls, "lora_state_dict", "read the file with safetensors.torch.load_file")

    @classmethod
    def save_lora_weights(cls, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(cls, "save_lora_weights", "save the tensors with safetensors.torch.save_file")

    def unload_lora_weights(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(self, "unload_lora_weights", "nothing can have been loaded by pipeyard")

    def fuse_lora(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(self, "fuse_lora", "merge the LoRA into the weights before loading")

    def unfuse_lora(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(self, "unfuse_lora", "nothing can have been fused by pipeyard")

    def set_adapters(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(self, "set_adapters", "pipeyard loads no LoRA adapters")

    def get_active_adapters(self) -> list[str]:
        """No adapter is ever active: pipeyard loads none."""
        return []


class IPAdapterMixin:
    """IP-Adapter image prompts: load base IP-Adapters from a local folder, scale, unload.

    See :mod:`.ip_adapter_loading` for what is read; :mod:`.ip_adapter_embeds` for the image
    embeddings the pipeline then computes from ``ip_adapter_image``.
    """

    def load_ip_adapter(
        self,
        pretrained_model_name_or_path_or_dict: Any,
        subfolder: str | list[str] | None,
        weight_name: str | list[str],
        image_encoder_folder: str | None = "image_encoder",
        **kwargs: Any,
    ) -> None:
        """Load one IP-Adapter (or a list) into the UNet, and the image encoder it needs.

        Args:
            pretrained_model_name_or_path_or_dict: a local folder (or a list, one per adapter).
            subfolder, weight_name: where the ``.safetensors`` file lies in it.
            image_encoder_folder: the image encoder's folder, relative to ``subfolder`` (unless it
                holds a ``/``); loaded when the pipeline has no ``image_encoder``; ``None`` skips it.

        Raises:
            UnsupportedFeatureError: a Hub repository, a dict, a pickle file, or a projection
                other than the base IP-Adapter's.
        """
        from .ip_adapter_loading import install_ip_adapters, read_ip_adapter_file

        sources = _per_adapter(pretrained_model_name_or_path_or_dict)
        subfolders, names = _per_adapter(subfolder, len(sources)), _per_adapter(weight_name, len(sources))
        if any(isinstance(source, dict) for source in sources):
            _unsupported(self, "load_ip_adapter(a state dict)", "save the adapter as a .safetensors file in a folder")
        owner = type(self).__name__
        adapters = [read_ip_adapter_file(*place, owner) for place in zip(sources, subfolders, names)]
        if image_encoder_folder is not None and getattr(self, "image_encoder", None) is None:
            self._load_image_encoder(sources[0], subfolders[0], image_encoder_folder)
        install_ip_adapters(self.unet, adapters, [str(name) for name in names], owner)  # type: ignore[attr-defined]

    def _load_image_encoder(self, source: Any, subfolder: str | None, folder: str) -> None:
        from pathlib import Path

        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        where = Path(source, folder) if "/" in folder else Path(source, subfolder or "", folder)
        encoder = CLIPVisionModelWithProjection.from_pretrained(where, local_files_only=True)
        unet = self.unet  # type: ignore[attr-defined]
        self.register_modules(image_encoder=encoder.to(device=unet.device, dtype=unet.dtype))  # type: ignore[attr-defined]
        if getattr(self, "feature_extractor", None) is None:
            size = encoder.config.image_size
            self.register_modules(feature_extractor=CLIPImageProcessor(size=size, crop_size=size))  # type: ignore[attr-defined]

    def set_ip_adapter_scale(self, scale: float | list[float]) -> None:
        """The weight of the image prompt: one for all adapters, or one per adapter."""
        from ..models.ip_adapter import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0

        for processor in self.unet.attn_processors.values():  # type: ignore[attr-defined]
            if isinstance(processor, (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0)):
                scales = scale if isinstance(scale, list) else [scale] * len(processor.scale)
                if len(scales) != len(processor.scale):
                    raise errors.AttentionProcessorError(
                        type(self).__name__, "set_ip_adapter_scale",
                        f"{len(scales)} scales for {len(processor.scale)} loaded IP-Adapters", "pass one scale per adapter",
                    )
                processor.scale = list(scales)

    def unload_ip_adapter(self) -> None:
        """Remove the adapters: default processors, no image projection (the image encoder stays)."""
        from ..models.attention_processor import AttnProcessor2_0

        unet = self.unet  # type: ignore[attr-defined]
        unet.set_attn_processor(AttnProcessor2_0())
        unet.encoder_hid_proj = None
        unet.register_to_config(encoder_hid_dim_type=None)


def _per_adapter(value: Any, count: int | None = None) -> list[Any]:
    values = list(value) if isinstance(value, list) else [value] * (count or 1)
    if count is not None and len(values) != count:
        raise errors.BatchSizeMismatchError(
            "subfolder / weight_name", len(values), count, "pass one value for all adapters, or one per adapter",
        )
    return values


class FromSingleFileMixin:
    """Loading a pipeline from one ``.ckpt`` / ``.safetensors`` checkpoint: not supported yet."""

    @classmethod
    def from_single_file(cls, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(cls, "from_single_file", "load a folder in diffusers' layout with from_pretrained "
                     "(convert the checkpoint once with diffusers' conversion script)")


#: diffusers' older name of :class:`StableDiffusionLoraLoaderMixin`, still imported by community files.
LoraLoaderMixin = StableDiffusionLoraLoaderMixin
