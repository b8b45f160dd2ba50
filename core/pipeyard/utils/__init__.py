"""Small helpers in the shape diffusers-written pipelines use them.

Community pipelines written for diffusers reach for ``deprecate``, ``logging``,
``replace_example_docstring``, ``PIL_INTERPOLATION``, LoRA scaling helpers, availability checks
and the repository file-name constants. Each lives in the module of its responsibility; this
package resolves them lazily so ``import pipeyard.utils`` imports neither torch nor PIL.

Example::

    from pipeyard.utils import deprecate, logging

    logger = logging.get_logger(__name__)
    deprecate("old_argument", "1.0.0", "Pass `new_argument` instead.")
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module of this package (or of pipeyard) that defines it.
_LAZY_NAMES: dict[str, str] = {
    "BaseOutput": "pipeyard.outputs",
    "CONFIG_NAME": ".file_names",
    "ONNX_EXTERNAL_WEIGHTS_NAME": ".file_names",
    "ONNX_WEIGHTS_NAME": ".file_names",
    "PIL_INTERPOLATION": ".pil",
    "SAFETENSORS_WEIGHTS_NAME": ".file_names",
    "SAFE_WEIGHTS_INDEX_NAME": ".file_names",
    "SCHEDULER_CONFIG_NAME": ".file_names",
    "USE_PEFT_BACKEND": ".lora",
    "WEIGHTS_INDEX_NAME": ".file_names",
    "WEIGHTS_NAME": ".file_names",
    "deprecate": ".deprecation",
    "is_accelerate_available": ".availability",
    "is_torch_available": ".availability",
    "is_torch_xla_available": ".availability",
    "is_transformers_available": ".availability",
    "logging": ".logging",
    "randn_tensor": "pipeyard.torch_utils",
    "replace_example_docstring": ".docstrings",
    "scale_lora_layers": ".lora",
    "unscale_lora_layers": ".lora",
}

__all__ = sorted(_LAZY_NAMES)


def __getattr__(name: str) -> Any:
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pipeyard.utils' has no attribute {name!r}")
    module = importlib.import_module(module_name, __name__)
    value = module if name == "logging" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES})
