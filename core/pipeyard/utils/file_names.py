"""File names of diffusers-format repositories, under the names diffusers-written code imports."""

from __future__ import annotations

from ..constants import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME, SCHEDULER_CONFIG_NAME, WEIGHTS_NAME

#: The shard index of sharded ``.bin`` weights.
WEIGHTS_INDEX_NAME = f"{WEIGHTS_NAME}.index.json"
#: The shard index of sharded safetensors weights.
SAFE_WEIGHTS_INDEX_NAME = f"{SAFETENSORS_WEIGHTS_NAME}.index.json"
#: ONNX exports (pipeyard reads none; the names exist for code that builds paths with them).
ONNX_WEIGHTS_NAME = "model.onnx"
ONNX_EXTERNAL_WEIGHTS_NAME = "weights.pb"

__all__ = [
    "CONFIG_NAME",
    "ONNX_EXTERNAL_WEIGHTS_NAME",
    "ONNX_WEIGHTS_NAME",
    "SAFETENSORS_WEIGHTS_NAME",
    "SAFE_WEIGHTS_INDEX_NAME",
    "SCHEDULER_CONFIG_NAME",
    "WEIGHTS_INDEX_NAME",
    "WEIGHTS_NAME",
]
