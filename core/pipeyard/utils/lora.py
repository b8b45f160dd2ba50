"""LoRA scaling helpers in the shape pipelines call them around the text encoder.

pipeyard has no PEFT backend (``USE_PEFT_BACKEND`` is False), so pipelines take their
non-PEFT path. :func:`scale_lora_layers` and :func:`unscale_lora_layers` still work on any
module tree: they scale the layers that carry a LoRA (those with PEFT's tuner-layer methods
``scale_layer`` / ``unscale_layer`` / ``set_scale``) and leave a model without any untouched.
"""

from __future__ import annotations

from typing import Any

#: Whether LoRA weights are handled through PEFT: never in pipeyard.
USE_PEFT_BACKEND = False


def _lora_layers(model: Any) -> list[Any]:
    """The sub-modules of ``model`` that behave as LoRA tuner layers."""
    modules = model.modules() if hasattr(model, "modules") else ()
    return [m for m in modules if callable(getattr(m, "scale_layer", None))]


def scale_lora_layers(model: Any, weight: float | None) -> None:
    """Multiply the LoRA contribution of every LoRA layer in ``model`` by ``weight``.

    None or 1.0 (and a model without LoRA layers, or None) change nothing.
    """
    if weight is None or weight == 1.0 or model is None:
        return
    for layer in _lora_layers(model):
        layer.scale_layer(weight)


def unscale_lora_layers(model: Any, weight: float | None = None) -> None:
    """Undo :func:`scale_lora_layers`; ``weight=0`` resets every active adapter's scale to 1.

    None or 1.0 changes nothing.
    """
    if weight is None or weight == 1.0 or model is None:
        return
    for layer in _lora_layers(model):
        if weight != 0:
            layer.unscale_layer(weight)
        else:
            for adapter in getattr(layer, "active_adapters", ()):
                layer.set_scale(adapter, 1.0)
