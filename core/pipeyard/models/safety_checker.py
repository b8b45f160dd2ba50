"""StableDiffusionSafetyChecker: flags and blacks out images close to known unsafe concepts.

The ``safety_checker`` folder of Stable Diffusion repos is a *transformers* checkpoint
(``CLIPConfig`` + weights), so this class is a transformers ``PreTrainedModel`` and loads with
transformers' ``from_pretrained`` (``torch_dtype``, ``variant``, ``subfolder`` as usual). Weight
names: ``vision_model.*`` (a CLIP vision tower), ``visual_projection``, ``concept_embeds``,
``special_care_embeds`` and their per-concept thresholds ``*_weights``.

Scoring (per image, as the original): cosine similarity of the projected image embedding to
each of 3 "special care" and 17 concept embeddings, minus the concept's threshold, rounded to
3 decimals. Once a special-care score is positive, 0.01 is added to every later score. An
image with any positive concept score is flagged and replaced by a black image.

Importing this module imports transformers; ``import pipeyard`` does not import it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import CLIPConfig, CLIPVisionModel, PreTrainedModel

logger = logging.getLogger(__name__)

NUM_CONCEPTS = 17
NUM_SPECIAL_CARE = 3
SPECIAL_CARE_ADJUSTMENT = 0.01


def cosine_similarity(image_embeds: torch.Tensor, concept_embeds: torch.Tensor) -> torch.Tensor:
    """``(B, D) x (C, D) -> (B, C)`` cosine similarities."""
    return nn.functional.normalize(image_embeds) @ nn.functional.normalize(concept_embeds).t()


def flag_unsafe(
    special_similarity: np.ndarray,
    concept_similarity: np.ndarray,
    special_thresholds: np.ndarray,
    concept_thresholds: np.ndarray,
) -> list[bool]:
    """One flag per image from float32 similarities and thresholds (see the module docstring)."""
    batch = special_similarity.shape[0]
    adjustment = np.zeros(batch, dtype=np.float32)
    for k in range(special_similarity.shape[1]):
        score = np.round(special_similarity[:, k] - special_thresholds[k] + adjustment, 3)
        adjustment = np.where(score > 0, np.float32(SPECIAL_CARE_ADJUSTMENT), adjustment).astype(np.float32)
    scores = np.round(concept_similarity - concept_thresholds[None, :] + adjustment[:, None], 3)
    return [bool(row.any()) for row in scores > 0]


def black_out(images: Any, flags: list[bool]) -> Any:
    """A copy of ``images`` (tensor, array or list of either) with flagged entries zeroed."""
    if not any(flags):
        return images
    if isinstance(images, (list, tuple)):
        return [_zeros_like(img) if flag else img for img, flag in zip(images, flags)]
    images = images.clone() if torch.is_tensor(images) else np.array(images, copy=True)
    for index, flag in enumerate(flags):
        if flag:
            images[index] = 0
    return images


def _zeros_like(image: Any) -> Any:
    return torch.zeros_like(image) if torch.is_tensor(image) else np.zeros(np.shape(image))


class StableDiffusionSafetyChecker(PreTrainedModel):
    """CLIP vision tower + projection + concept embeddings, weight-compatible with diffusers'.

    Example::

        checker = StableDiffusionSafetyChecker.from_pretrained(repo, subfolder="safety_checker")
        images, has_nsfw_concept = checker(clip_input=pixel_values, images=images)
    """

    config_class = CLIPConfig
    main_input_name = "clip_input"
    _no_split_modules = ["CLIPEncoderLayer"]

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__(config)
        dim = config.projection_dim
        self.vision_model = CLIPVisionModel(config.vision_config)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, dim, bias=False)
        self.concept_embeds = nn.Parameter(torch.ones(NUM_CONCEPTS, dim), requires_grad=False)
        self.special_care_embeds = nn.Parameter(torch.ones(NUM_SPECIAL_CARE, dim), requires_grad=False)
        self.concept_embeds_weights = nn.Parameter(torch.ones(NUM_CONCEPTS), requires_grad=False)
        self.special_care_embeds_weights = nn.Parameter(torch.ones(NUM_SPECIAL_CARE), requires_grad=False)
        self.post_init()

    @torch.no_grad()
    def forward(self, clip_input: torch.Tensor, images: Any) -> tuple[Any, list[bool]]:
        """Score ``clip_input`` (CLIP-preprocessed pixel values) and black out flagged ``images``.

        Returns:
            ``(images, has_nsfw_concepts)``: images of the same kind as given (flagged ones
            zeroed, in a copy) and one bool per image.
        """
        image_embeds = self.visual_projection(self.vision_model(clip_input)[1])
        flags = flag_unsafe(
            _as_float32(cosine_similarity(image_embeds, self.special_care_embeds)),
            _as_float32(cosine_similarity(image_embeds, self.concept_embeds)),
            _as_float32(self.special_care_embeds_weights),
            _as_float32(self.concept_embeds_weights),
        )
        if any(flags):
            logger.warning(
                "Potential NSFW content was detected in %d image(s); they are replaced by black images.", sum(flags)
            )
        return black_out(images, flags), flags


def _as_float32(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().float().numpy()
