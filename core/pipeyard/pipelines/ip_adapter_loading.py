"""Loading IP-Adapter weights (diffusers' layout) into a UNet and a pipeline.

An IP-Adapter file holds two groups of tensors::

    image_proj.proj.weight / .bias, image_proj.norm.weight / .bias   the image projection
    ip_adapter.<k>.to_k_ip.weight, ip_adapter.<k>.to_v_ip.weight     per cross-attention layer

``<k>`` counts every attention layer of the UNet in ``attn_processors`` order, so the
cross-attention layers (``attn2``) are 1, 3, 5, ... The projection of IP-Adapter (base,
``ip-adapter_sd15.safetensors``) is an :class:`~pipeyard.models.embeddings.ImageProjection`
making 4 image tokens; the other projections (Plus, Full, FaceID) are refused for now. Only
local folders and safetensors files are read; the file is checked before any tensor is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .. import errors
from ..checkpoints import load_checkpoint_file, read_checkpoint_shapes

#: image tokens the base IP-Adapter projection makes
BASE_IMAGE_TOKENS = 4


def read_ip_adapter_file(
    folder: str | os.PathLike[str], subfolder: str | None, weight_name: str, owner: str = "IPAdapterMixin"
) -> dict[str, dict]:
    """``{"image_proj": {...}, "ip_adapter": {...}}`` from ``folder/subfolder/weight_name``.

    Raises:
        UnsupportedFeatureError: not a local folder (the Hub is not read here), or a ``.bin``
            (pickle) file.
        EntryNotFoundError: the file is missing.
    """
    root = Path(folder)
    if not root.is_dir():
        raise errors.UnsupportedFeatureError(
            f"load_ip_adapter({os.fspath(folder)!r})", owner,
            "it reads a local folder only (not a Hub repository): download the adapter's repository and pass its path",
        )
    path = root.joinpath(*(part for part in (subfolder, weight_name) if part))
    if not path.name.endswith(".safetensors"):
        raise errors.UnsupportedFeatureError(
            f"load_ip_adapter(weight_name={weight_name!r})", owner,
            "use the adapter's .safetensors file (pickle .bin files are not read)",
        )
    if not path.is_file():
        raise errors.EntryNotFoundError(os.fspath(path.parent), path.name, hint="pass the adapter file's name as weight_name")
    read_checkpoint_shapes(path, "safetensors")  # checks the file before reading tensors
    groups: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    for key, tensor in load_checkpoint_file(path, "safetensors", torch.device("cpu"), None, {}):
        group, _, rest = key.partition(".")
        if group in groups:
            groups[group][rest] = tensor
    return groups


def image_projection(state_dict: dict[str, torch.Tensor], where: str, owner: str = "IPAdapterMixin") -> torch.nn.Module:
    """The base IP-Adapter image projection, with its weights.

    Raises:
        UnsupportedFeatureError: another kind of projection (IP-Adapter Plus, Full, FaceID).
    """
    from ..models.embeddings import ImageProjection

    if "proj.weight" not in state_dict:
        raise errors.UnsupportedFeatureError(
            f"load_ip_adapter of {where}", owner,
            "only the base IP-Adapter image projection (image_proj.proj / image_proj.norm) is implemented; "
            "IP-Adapter Plus, Full and FaceID projections are not",
        )
    weight = state_dict["proj.weight"]
    layer = ImageProjection(
        image_embed_dim=weight.shape[-1], cross_attention_dim=weight.shape[0] // BASE_IMAGE_TOKENS,
        num_image_text_embeds=BASE_IMAGE_TOKENS,
    )
    layer.load_state_dict({
        "image_embeds.weight": weight, "image_embeds.bias": state_dict["proj.bias"],
        "norm.weight": state_dict["norm.weight"], "norm.bias": state_dict["norm.bias"],
    })
    return layer


def install_ip_adapters(unet: Any, adapters: list[dict[str, dict]], names: list[str], owner: str = "IPAdapterMixin") -> None:
    """Give ``unet`` the image projections and an IP-Adapter processor on every ``attn2``
    (plain processors on the others), weights from ``adapters``; dtype and device follow the UNet's."""
    from ..models.attention_processor import AttnProcessor2_0
    from ..models.embeddings import MultiIPAdapterImageProjection
    from ..models.ip_adapter import IPAdapterAttnProcessor2_0

    layers = [image_projection(adapter["image_proj"], name, owner) for adapter, name in zip(adapters, names)]
    tokens = [layer.num_image_text_embeds for layer in layers]
    processors: dict[str, Any] = {}
    key_id = 1
    for key, layer in _attention_layers(unet):
        if not key.endswith("attn2.processor"):
            processors[key] = AttnProcessor2_0()
            continue
        processor = IPAdapterAttnProcessor2_0(layer.to_k.out_features, layer.to_k.in_features, tokens, 1.0)
        weights = {}
        for i, adapter in enumerate(adapters):
            for part in ("to_k_ip", "to_v_ip"):
                weights[f"{part}.{i}.weight"] = _ip_weight(adapter["ip_adapter"], f"{key_id}.{part}.weight", names[i])
        processor.load_state_dict(weights)
        processors[key] = processor
        key_id += 2
    unet.set_attn_processor(processors)
    unet.encoder_hid_proj = MultiIPAdapterImageProjection(layers)
    unet.register_to_config(encoder_hid_dim_type="ip_image_proj")
    unet.to(device=unet.device, dtype=unet.dtype)


def _attention_layers(unet: Any) -> list[tuple[str, Any]]:
    from ..models.attention import Attention

    return [(f"{name}.processor", module) for name, module in unet.named_modules() if isinstance(module, Attention)]


def _ip_weight(state_dict: dict[str, torch.Tensor], key: str, where: str) -> torch.Tensor:
    if key not in state_dict:
        raise errors.StateDictMismatchError("IPAdapterAttnProcessor2_0", where, [f"ip_adapter.{key}"], [])
    return state_dict[key]
