# /// script
# requires-python = ">=3.10"
# dependencies = ["torch>=2.1", "transformers>=4.44"]
#
# [tool.pipeyard]
# requires-core = ">=0.1"
# summary = "Stable Diffusion with long prompts (past 77 tokens, in 75-token windows) and (word:1.3) emphasis."
# tags = ["long-prompt", "prompt-weighting", "stable-diffusion", "text-to-image"]
# ///
"""Long-prompt weighting for Stable Diffusion: prompts of any length, with per-word emphasis.

CLIP reads 77 tokens (75 words' worth between its begin and end tokens), so the plain pipeline
drops the rest of a long prompt. Here the prompt's tokens are cut into windows of 75, each
window is wrapped in its own begin/end tokens and encoded on its own, and the encodings are
concatenated: the UNet's cross-attention reads them all. The negative prompt is padded to the
same number of windows.

Emphasis syntax (weights multiply the words' embeddings; the mean of the whole embedding is
then restored so that overall scale stays what the UNet expects, unless that mean is too close
to zero to divide by: then the weighted embedding is kept as it is):

- ``(word)``: x1.1, ``((word))``: x1.21, ``[word]``: /1.1
- ``(several words:1.3)``: an explicit weight
- ``\\(`` and ``\\)`` (or ``\\[``, ``\\]``): literal brackets

::

    import torch
    from pipeyard import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", custom_pipeline="lpw_stable_diffusion"
    )
    prompt = "a (cosy:1.3) cabin in a [foggy] pine forest, " + "warm window light, " * 30
    image = pipe(prompt, negative_prompt="(blurry:1.4), low quality", num_inference_steps=30,
                 generator=torch.Generator().manual_seed(0)).images[0]

A prompt without brackets that fits in 77 tokens gives exactly the plain pipeline's image.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from pipeyard import StableDiffusionPipeline, StableDiffusionPipelineOutput

#: one token of the emphasis syntax: an escape, a bracket, ":<weight>)", or plain text
_ATTENTION_TOKEN = re.compile(r"\\[()\[\]\\]|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:")
#: what ``(word)`` multiplies by; ``[word]`` divides by it
EMPHASIS = 1.1


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split ``text`` into ``(piece, weight)`` pairs following the emphasis syntax.

    Unclosed brackets apply to the end of the text; neighbouring pieces of equal weight merge.

    >>> parse_prompt_attention("a (cat:1.5) and [dog]")
    [('a ', 1.0), ('cat', 1.5), (' and ', 1.0), ('dog', 0.9090909090909091)]
    """
    pieces: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _ATTENTION_TOKEN.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            pieces.append([token[1:], 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open:
            scale_from(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            scale_from(round_open.pop(), EMPHASIS)
        elif token == "]" and square_open:
            scale_from(square_open.pop(), 1 / EMPHASIS)
        else:
            pieces.append([token, 1.0])
    for start in round_open:
        scale_from(start, EMPHASIS)
    for start in square_open:
        scale_from(start, 1 / EMPHASIS)
    return _merge_equal_weights(pieces)


def _merge_equal_weights(pieces: list[list[Any]]) -> list[tuple[str, float]]:
    merged: list[tuple[str, float]] = []
    for text, weight in pieces:
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + text, weight)
        elif text:
            merged.append((text, weight))
    return merged or [("", 1.0)]


def weighted_token_ids(tokenizer: Any, text: str) -> tuple[list[int], list[float]]:
    """Token ids of ``text`` without begin/end tokens, and each token's emphasis weight."""
    ids: list[int] = []
    weights: list[float] = []
    for piece, weight in parse_prompt_attention(text):
        piece_ids = tokenizer(piece, add_special_tokens=False).input_ids
        ids += piece_ids
        weights += [weight] * len(piece_ids)
    return ids, weights


def chunk_windows(
    ids: list[int], weights: list[float], num_chunks: int, bos: int, eos: int, pad: int, window: int = 75
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(num_chunks, window + 2)`` ids, each window as ``BOS, tokens, EOS, pads``; weights alike (1 on specials)."""
    chunk_ids, chunk_weights = [], []
    for k in range(num_chunks):
        part, part_w = ids[k * window:(k + 1) * window], weights[k * window:(k + 1) * window]
        fill = window - len(part)
        chunk_ids.append([bos, *part, eos, *[pad] * fill])
        chunk_weights.append([1.0, *part_w, 1.0, *[1.0] * fill])
    return torch.tensor(chunk_ids), torch.tensor(chunk_weights)


def mean_ratio_is_meaningful(ratio: torch.Tensor, weights: torch.Tensor) -> bool:
    """Whether ``mean(embeds) / mean(embeds * weights)`` can restore the mean.

    Were all embedding values of one sign, the ratio would lie between ``1 / max(weights)`` and
    ``1 / min(weights)``. Outside that range (or with weights <= 0) the mean is a near-cancelling
    sum, close to zero: the ratio is noise, often huge or infinite (a text encoder ending in a
    LayerNorm without bias gives a mean of exactly zero), so the weighted embedding is kept as it is.
    """
    low, high = float(weights.min()), float(weights.max())
    if low <= 0 or not bool(torch.isfinite(ratio).all()):
        return False
    slack = 1e-4  # float rounding at the bounds
    return bool(((ratio >= (1 - slack) / high) & (ratio <= (1 + slack) / low)).all())


class LongPromptWeightingStableDiffusionPipeline(StableDiffusionPipeline):
    """Stable Diffusion that reads prompts past 77 tokens and honours ``(word:1.3)`` emphasis."""

    def encode_windows(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Encode ``(num_chunks, 77)`` windows, concatenate them, apply weights, restore the mean."""
        hidden = self.text_encoder(ids.to(self.device))[0]  # (num_chunks, 77, dim)
        embeds = hidden.reshape(1, -1, hidden.shape[-1])
        weights = weights.reshape(1, -1, 1).to(embeds)
        previous_mean = embeds.float().mean(dim=(-2, -1))
        weighted = embeds * weights
        if torch.all(weights == 1):
            return weighted
        ratio = previous_mean / weighted.float().mean(dim=(-2, -1))
        if not mean_ratio_is_meaningful(ratio, weights):
            return weighted  # a mean near zero: dividing by it would blow the embedding up (inf, NaN)
        return weighted * ratio.to(embeds.dtype)

    @torch.no_grad()
    def long_prompt_embeddings(self, prompts: list[str], negatives: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted embeddings of ``prompts`` and ``negatives``, all with the same number of windows."""
        tok = self.tokenizer
        window = tok.model_max_length - 2
        parsed = [weighted_token_ids(tok, text) for text in [*prompts, *negatives]]
        num_chunks = max(1, *(math.ceil(len(ids) / window) for ids, _ in parsed))
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        encoded = [
            self.encode_windows(*chunk_windows(ids, w, num_chunks, tok.bos_token_id, tok.eos_token_id, pad, window))
            for ids, w in parsed
        ]
        return torch.cat(encoded[:len(prompts)]), torch.cat(encoded[len(prompts):])

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        **kwargs: Any,
    ) -> StableDiffusionPipelineOutput | tuple[Any, Any]:
        """Generate images from (long, weighted) prompts.

        Args:
            prompt: one prompt or a list, of any length, with the emphasis syntax.
            negative_prompt: one for all prompts or one per prompt, same syntax.
            **kwargs: anything else ``StableDiffusionPipeline.__call__`` takes (``guidance_scale``,
                ``num_inference_steps``, ``generator``, ``output_type``, ...), except
                ``prompt_embeds`` / ``negative_prompt_embeds``.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if negative_prompt is None or isinstance(negative_prompt, str):
            negatives = [negative_prompt or ""] * len(prompts)
        else:
            negatives = list(negative_prompt)
        if len(negatives) != len(prompts):
            raise ValueError(
                f"{len(negatives)} negative prompts for {len(prompts)} prompts: pass one, or one per prompt"
            )
        embeds, negative_embeds = self.long_prompt_embeddings(prompts, negatives)
        return super().__call__(prompt_embeds=embeds, negative_prompt_embeds=negative_embeds, **kwargs)
