"""Text conditioning for latent diffusion: prompts -> CLIP text embeddings.

Shared by :class:`~pipeyard.StableDiffusionPipeline` and community pipelines built on it. The
steps (tokenize to the tokenizer's ``model_max_length``, encode, repeat per image) follow
diffusers exactly so that embeddings are bit-identical.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger(__name__)

Prompt = str | list[str]


def prompt_batch_size(prompt: Prompt | None, prompt_embeds: torch.Tensor | None) -> int:
    """How many prompts there are: 1 for a string, the list length, or the embeddings' batch."""
    if isinstance(prompt, str):
        return 1
    if isinstance(prompt, list):
        return len(prompt)
    assert prompt_embeds is not None
    return prompt_embeds.shape[0]


def tokenize(tokenizer: Any, texts: Prompt, max_length: int | None = None) -> Any:
    """Token ids padded (and truncated) to ``max_length`` (default: the tokenizer's maximum)."""
    return tokenizer(
        texts, padding="max_length", max_length=max_length or tokenizer.model_max_length,
        truncation=True, return_tensors="pt",
    )


def warn_if_truncated(tokenizer: Any, texts: Prompt, ids: torch.Tensor) -> None:
    """Log the words CLIP will never see because the prompt is longer than its context."""
    untruncated = tokenizer(texts, padding="longest", return_tensors="pt").input_ids
    if untruncated.shape[-1] >= ids.shape[-1] and not torch.equal(ids, untruncated):
        removed = tokenizer.batch_decode(untruncated[:, tokenizer.model_max_length - 1 : -1])
        logger.warning(
            "this part of the prompt was truncated (CLIP reads at most %d tokens): %s",
            tokenizer.model_max_length, removed,
        )


def run_text_encoder(
    text_encoder: Any, tokens: Any, device: torch.device, clip_skip: int | None = None
) -> torch.Tensor:
    """Last hidden state of the text encoder (or the one ``clip_skip`` layers earlier, normed)."""
    uses_mask = getattr(text_encoder.config, "use_attention_mask", False)
    mask = tokens.attention_mask.to(device) if uses_mask else None
    ids = tokens.input_ids.to(device)
    if clip_skip is None:
        return text_encoder(ids, attention_mask=mask)[0]
    hidden = text_encoder(ids, attention_mask=mask, output_hidden_states=True)[-1][-(clip_skip + 1)]
    return final_layer_norm(text_encoder)(hidden)


def final_layer_norm(text_encoder: Any) -> Any:
    """The CLIP text encoder's last layer norm, which ``clip_skip`` applies to an earlier layer.

    transformers 4's ``CLIPTextModel`` keeps it at ``text_model.final_layer_norm``;
    transformers 5's has no ``text_model`` and holds it directly (diffusers 0.42 reaches
    ``text_model`` and fails there). Both layouts work here.

    Raises:
        ComponentError: the text encoder has neither (not a CLIP text model).
    """
    inner = getattr(text_encoder, "text_model", text_encoder)
    norm = getattr(inner, "final_layer_norm", None)
    if norm is None:
        from .. import errors

        raise errors.ComponentError(
            f"clip_skip needs a CLIP text encoder with a final_layer_norm; {type(text_encoder).__name__} has "
            f"none: drop clip_skip, or use a CLIPTextModel"
        )
    return norm


def repeat_per_image(embeds: torch.Tensor, num_images_per_prompt: int) -> torch.Tensor:
    """``(b, seq, dim)`` -> ``(b * n, seq, dim)``, each prompt's row repeated ``n`` times in place."""
    batch, seq_len, _ = embeds.shape
    embeds = embeds.repeat(1, num_images_per_prompt, 1)
    return embeds.view(batch * num_images_per_prompt, seq_len, -1)


def negative_texts(negative_prompt: Prompt | None, batch_size: int) -> list[str]:
    """The unconditional texts: empty strings, one negative prompt for all, or one per prompt."""
    if negative_prompt is None:
        return [""] * batch_size
    if isinstance(negative_prompt, str):
        return [negative_prompt] * batch_size
    return list(negative_prompt)


def encode_prompt(
    text_encoder: Any,
    tokenizer: Any,
    prompt: Prompt | None,
    device: torch.device,
    num_images_per_prompt: int,
    do_classifier_free_guidance: bool,
    negative_prompt: Prompt | None = None,
    prompt_embeds: torch.Tensor | None = None,
    negative_prompt_embeds: torch.Tensor | None = None,
    clip_skip: int | None = None,
    fallback_dtype: torch.dtype | None = None,
    convert_prompt: Callable[[Prompt], Prompt] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Embeddings for the prompts and, with guidance, for the negative prompts.

    ``convert_prompt`` rewrites texts before tokenizing (textual inversion's
    ``maybe_convert_prompt``).

    Returns:
        ``(prompt_embeds, negative_prompt_embeds)``, each ``(batch * num_images_per_prompt, seq,
        dim)``; the second is ``None`` without classifier-free guidance (unless given).
    """
    batch_size = prompt_batch_size(prompt, prompt_embeds)
    convert = convert_prompt or (lambda texts: texts)
    if prompt_embeds is None:
        prompt = convert(prompt)
        tokens = tokenize(tokenizer, prompt)
        warn_if_truncated(tokenizer, prompt, tokens.input_ids)
        prompt_embeds = run_text_encoder(text_encoder, tokens, device, clip_skip)
    dtype = text_encoder.dtype if text_encoder is not None else (fallback_dtype or prompt_embeds.dtype)
    prompt_embeds = repeat_per_image(prompt_embeds.to(dtype=dtype, device=device), num_images_per_prompt)
    if do_classifier_free_guidance and negative_prompt_embeds is None:
        tokens = tokenize(tokenizer, convert(negative_texts(negative_prompt, batch_size)), prompt_embeds.shape[1])
        negative_prompt_embeds = run_text_encoder(text_encoder, tokens, device)
    if do_classifier_free_guidance:
        negative_prompt_embeds = repeat_per_image(
            negative_prompt_embeds.to(dtype=dtype, device=device), num_images_per_prompt
        )
    return prompt_embeds, negative_prompt_embeds
