"""The encoder and decoder of the KL autoencoder (latent diffusion's VAE).

Encoder: ``conv_in`` -> down blocks (stride-2, right/bottom padded) -> mid block (resnet,
single-head self-attention, resnet) -> group norm, SiLU -> ``conv_out`` to ``2 * latent_channels``
moments (mean and log-variance). The decoder mirrors it from ``latent_channels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from .. import errors
from .unet_blocks import BlockArgs, build_block, check_block_types

ENCODER_TYPES = ("DownEncoderBlock2D",)
DECODER_TYPES = ("UpDecoderBlock2D",)


def _vae_args(norm_num_groups: int, act_fn: str, add_attention: bool) -> BlockArgs:
    return BlockArgs(
        in_channels=0, out_channels=0, temb_channels=None, eps=1e-6, act_fn=act_fn, groups=norm_num_groups,
        downsample_padding=0, attention_groups=norm_num_groups, add_attention=add_attention,
    )


def _mid_block(shared: BlockArgs, channels: int) -> nn.Module:
    args = replace(shared, in_channels=channels, out_channels=channels, attention_head_dim=channels)
    return build_block("mid", "UNetMidBlock2D", args)


class Encoder(nn.Module):
    """Images ``(B, in_channels, H, W)`` -> moments ``(B, 2 * out_channels, H / f, W / f)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        down_block_types: Sequence[str],
        block_out_channels: Sequence[int],
        layers_per_block: int,
        norm_num_groups: int,
        act_fn: str,
        mid_block_add_attention: bool = True,
    ) -> None:
        super().__init__()
        check_block_types("down", down_block_types, ENCODER_TYPES)
        shared = _vae_args(norm_num_groups, act_fn, mid_block_add_attention)
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.down_blocks = nn.ModuleList(
            build_block("down", block_type, replace(
                shared, in_channels=block_out_channels[max(i - 1, 0)], out_channels=block_out_channels[i],
                num_layers=layers_per_block, add_sampler=i < len(block_out_channels) - 1,
            ), ENCODER_TYPES)
            for i, block_type in enumerate(down_block_types)
        )
        self.mid_block = _mid_block(shared, block_out_channels[-1])
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, block_out_channels[-1], eps=1e-6)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[-1], 2 * out_channels, kernel_size=3, padding=1)

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        hidden = self.conv_in(sample)
        for down_block in self.down_blocks:
            hidden, _ = down_block(hidden)
        hidden = self.mid_block(hidden)
        return self.conv_out(self.conv_act(self.conv_norm_out(hidden)))


class Decoder(nn.Module):
    """Latents ``(B, in_channels, h, w)`` -> images ``(B, out_channels, h * f, w * f)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        up_block_types: Sequence[str],
        block_out_channels: Sequence[int],
        layers_per_block: int,
        norm_num_groups: int,
        act_fn: str,
        mid_block_add_attention: bool = True,
    ) -> None:
        super().__init__()
        check_block_types("up", up_block_types, DECODER_TYPES)
        shared = _vae_args(norm_num_groups, act_fn, mid_block_add_attention)
        channels = list(reversed(block_out_channels))
        self.conv_in = nn.Conv2d(in_channels, channels[0], kernel_size=3, padding=1)
        self.mid_block = _mid_block(shared, channels[0])
        self.up_blocks = nn.ModuleList(
            build_block("up", block_type, replace(
                shared, in_channels=channels[max(i - 1, 0)], out_channels=channels[i],
                num_layers=layers_per_block + 1, add_sampler=i < len(channels) - 1,
            ), DECODER_TYPES)
            for i, block_type in enumerate(up_block_types)
        )
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, block_out_channels[0], eps=1e-6)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, kernel_size=3, padding=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        hidden = self.mid_block(self.conv_in(latents))
        for up_block in self.up_blocks:
            hidden = up_block(hidden)
        return self.conv_out(self.conv_act(self.conv_norm_out(hidden)))


# ---------------------------------------------------------------------- the asymmetric decoder

#: The condition encoder halves the masked image 3 times after two full-size layers (16 / 2).
CONDITION_STRIDE = 16


class MaskConditionEncoder(nn.Module):
    """The masked image -> feature maps at 1, 1/2, 1/4 and 1/8 of its size, keyed by shape.

    Asymmetric VQGAN (Zhu et al. 2023, arXiv:2306.04632) conditions the decoder on the kept part
    of the image. Layer ``k`` widens to ``min(base * 2**k, widest)`` channels, the last to
    ``widest``; the first two keep the size, the others halve it (4x4, stride 2). Each output
    (before its ReLU) is kept under its shape; a later output of the same shape replaces an
    earlier one.
    """

    def __init__(self, in_channels: int, base_channels: int, widest_channels: int) -> None:
        super().__init__()
        levels = CONDITION_STRIDE.bit_length() - 1
        widths = [min(base_channels * 2**k, widest_channels) for k in range(levels)] + [widest_channels]
        layers, previous = [], in_channels
        for k, width in enumerate(widths):
            full_size = k < 2
            layers.append(nn.Conv2d(previous, width, kernel_size=3 if full_size else 4, stride=1 if full_size else 2,
                                    padding=1))
            previous = width
        self.layers = nn.Sequential(*layers)

    def forward(self, masked_image: torch.Tensor) -> dict[tuple[int, ...], torch.Tensor]:
        features: dict[tuple[int, ...], torch.Tensor] = {}
        hidden = masked_image
        for layer in self.layers:
            hidden = layer(hidden)
            features[tuple(hidden.shape)] = hidden
            hidden = torch.relu(hidden)
        return features


class MaskConditionDecoder(Decoder):
    """The :class:`Decoder` of the asymmetric VAE: given the image and its mask, the kept area
    (mask 0) of every up block's input, and of the output, comes from the image's features.

    Without ``image`` and ``mask`` it decodes exactly like :class:`Decoder`.
    """

    def __init__(self, in_channels: int, out_channels: int, up_block_types: Sequence[str],
                 block_out_channels: Sequence[int], layers_per_block: int, norm_num_groups: int,
                 act_fn: str) -> None:
        super().__init__(in_channels, out_channels, up_block_types, block_out_channels, layers_per_block,
                         norm_num_groups, act_fn)
        self.condition_encoder = MaskConditionEncoder(out_channels, block_out_channels[0], block_out_channels[-1])

    def forward(  # type: ignore[override]
        self, latents: torch.Tensor, image: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if image is None or mask is None:
            return super().forward(latents)
        features = self.condition_encoder((1 - mask) * image)
        hidden = self.mid_block(self.conv_in(latents))
        for up_block in self.up_blocks:
            scaled_mask = nn.functional.interpolate(mask, size=hidden.shape[-2:], mode="nearest")
            hidden = up_block(_paste_kept_area(hidden, features, scaled_mask))
        hidden = _paste_kept_area(hidden, features, mask)
        return self.conv_out(self.conv_act(self.conv_norm_out(hidden)))


def _paste_kept_area(
    hidden: torch.Tensor, features: dict[tuple[int, ...], torch.Tensor], mask: torch.Tensor
) -> torch.Tensor:
    """``hidden`` where the mask is 1 (re-drawn), the image's feature map of the same shape elsewhere."""
    feature = features.get(tuple(hidden.shape))
    if feature is None:
        raise errors.InputShapeError(
            "MaskConditionDecoder", "the decoder's hidden state",
            f"one of the condition encoder's shapes {sorted(features)} (the image and mask must be the "
            f"size of the decoded output, and block_out_channels must fit the condition encoder)",
            hidden.shape,
        )
    return hidden * mask + feature * (1 - mask)
