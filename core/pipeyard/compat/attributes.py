"""Attribute paths of the libraries of today that diffusers-written files still take.

transformers 5 moved ``CLIPTextModel.text_model.{embeddings, encoder, final_layer_norm}`` up
onto the model itself; files copied from diffusers 0.42 still reach
``text_encoder.text_model.final_layer_norm`` (``clip_skip``) and
``text_encoder.text_model.encoder.layers`` (prompt weighting, LoRA), and fail there, as
diffusers itself does. In a hosted diffusers-written module, :mod:`.rewrite` turns every read of
``<expr>.text_model`` into ``text_model_of(<expr>)``: the attribute when it exists, else the
model itself for a transformers 5 CLIP text model (its own old ``text_model``: same submodules,
same forward). The objects are not changed, and nothing outside that module sees a difference.
"""

from __future__ import annotations

from typing import Any


def text_model_of(encoder: Any) -> Any:
    """``encoder.text_model``, or ``encoder`` itself when it is a transformers 5 ``CLIPTextModel``.

    Raises:
        AttributeError: neither (the error of ``encoder.text_model`` itself).
    """
    try:
        return encoder.text_model
    except AttributeError:
        cls = type(encoder)
        flat_clip = cls.__name__ == "CLIPTextModel" and cls.__module__.startswith("transformers.")
        if flat_clip and hasattr(encoder, "final_layer_norm"):
            return encoder
        raise
