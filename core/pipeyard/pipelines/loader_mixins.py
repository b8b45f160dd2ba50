"""The loader mixins of diffusers' Stable Diffusion pipelines, for code that inherits them.

Pipelines written for diffusers derive from ``TextualInversionLoaderMixin``,
``StableDiffusionLoraLoaderMixin``, ``IPAdapterMixin`` and ``FromSingleFileMixin`` and, inside
``__call__``, reach through them even when nothing was loaded: ``maybe_convert_prompt`` on
every prompt, ``self._lora_scale`` and ``scale_lora_layers`` when ``cross_attention_kwargs``
holds a ``"scale"``. That path works here and changes nothing, as in diffusers with nothing
loaded.

Loading extra weights (LoRA, textual inversion embeddings, IP-Adapters, single-file
checkpoints) is not implemented: those methods raise
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
    """IP-Adapter image prompts. Loading adapters is not supported yet."""

    def load_ip_adapter(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(self, "load_ip_adapter", "run the pipeline without ip_adapter_image, or use diffusers")

    def set_ip_adapter_scale(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(self, "set_ip_adapter_scale", "no IP-Adapter can be loaded in pipeyard")

    def unload_ip_adapter(self, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(self, "unload_ip_adapter", "no IP-Adapter can be loaded in pipeyard")


class FromSingleFileMixin:
    """Loading a pipeline from one ``.ckpt`` / ``.safetensors`` checkpoint: not supported yet."""

    @classmethod
    def from_single_file(cls, *args: Any, **kwargs: Any) -> NoReturn:
        _unsupported(cls, "from_single_file", "load a folder in diffusers' layout with from_pretrained "
                     "(convert the checkpoint once with diffusers' conversion script)")


#: diffusers' older name of :class:`StableDiffusionLoraLoaderMixin`, still imported by community files.
LoraLoaderMixin = StableDiffusionLoraLoaderMixin
