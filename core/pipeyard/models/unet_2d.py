"""UNet2DModel: the unconditional UNet of DDPM-family pipelines (``google/ddpm-*``).

Wiring: ``conv_in`` -> time embedding (sinusoidal or Gaussian-Fourier, then an MLP, plus an
optional class embedding) -> down blocks (keeping skips) -> mid block -> up blocks (consuming
skips) -> ``conv_norm_out``, SiLU, ``conv_out``. With Fourier embeddings the output is divided
by the noise level (score-SDE parameterisation).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import errors
from ..configuration import register_to_config
from ..modeling import ModelMixin
from . import direct
from .activations import activation
from .attention import AttentionSlicingMixin, rename_legacy_attention_keys
from .embeddings import GaussianFourierProjection, SinusoidalTimestepProjection, TimestepEmbedding
from .fused import opened
from .outputs import UNet2DOutput
from .resnet import shared_time_projections
from .unet_blocks import BlockArgs, build_block, check_block_types
from .validation import check_sample, require_choice, timesteps_for_batch

DOWN_TYPES = ("DownBlock2D", "AttnDownBlock2D")
UP_TYPES = ("UpBlock2D", "AttnUpBlock2D")
MID_TYPES = ("UNetMidBlock2D",)


class UNet2DModel(AttentionSlicingMixin, ModelMixin):
    """Unconditional 2-d UNet, weight-compatible with diffusers' ``UNet2DModel``.

    Example::

        unet = UNet2DModel.from_pretrained("google/ddpm-cifar10-32")
        noise_pred = unet(sample, timestep=999).sample
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] | None = None,
        in_channels: int = 3,
        out_channels: int = 3,
        center_input_sample: bool = False,
        time_embedding_type: str = "positional",
        time_embedding_dim: int | None = None,
        freq_shift: int = 0,
        flip_sin_to_cos: bool = True,
        down_block_types: tuple[str, ...] = ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        mid_block_type: str | None = "UNetMidBlock2D",
        up_block_types: tuple[str, ...] = ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        block_out_channels: tuple[int, ...] = (224, 448, 672, 896),
        layers_per_block: int = 2,
        mid_block_scale_factor: float = 1,
        downsample_padding: int = 1,
        downsample_type: str = "conv",
        upsample_type: str = "conv",
        dropout: float = 0.0,
        act_fn: str = "silu",
        attention_head_dim: int | None = 8,
        norm_num_groups: int = 32,
        attn_norm_num_groups: int | None = None,
        norm_eps: float = 1e-5,
        resnet_time_scale_shift: str = "default",
        add_attention: bool = True,
        class_embed_type: str | None = None,
        num_class_embeds: int | None = None,
        num_train_timesteps: int | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self._check_config(name, down_block_types, up_block_types, block_out_channels)
        require_choice(name, "time_embedding_type", time_embedding_type, ("positional", "fourier"))
        require_choice(name, "downsample_type", downsample_type, ("conv",))
        require_choice(name, "upsample_type", upsample_type, ("conv",))
        require_choice(name, "class_embed_type", class_embed_type, (None,))
        self.sample_size = sample_size
        first = block_out_channels[0]
        time_embed_dim = time_embedding_dim or first * 4
        self.conv_in = nn.Conv2d(in_channels, first, kernel_size=3, padding=1)
        if time_embedding_type == "fourier":
            self.time_proj: nn.Module = GaussianFourierProjection(first, scale=16)
            timestep_input_dim = 2 * first
        else:
            self.time_proj = SinusoidalTimestepProjection(first, flip_sin_to_cos, freq_shift)
            timestep_input_dim = first
        self.time_embedding = TimestepEmbedding(timestep_input_dim, time_embed_dim)
        self.class_embedding = nn.Embedding(num_class_embeds, time_embed_dim) if num_class_embeds else None
        shared = BlockArgs(
            in_channels=0, out_channels=0, temb_channels=time_embed_dim, eps=norm_eps, act_fn=act_fn,
            groups=norm_num_groups, time_scale_shift=resnet_time_scale_shift, dropout=dropout,
            downsample_padding=downsample_padding, attention_head_dim=attention_head_dim, temb_activated=True,
        )
        self.resnet_time_act = activation(act_fn, name)  # applied once per call for every resnet
        self.down_blocks = nn.ModuleList(self._down_blocks(shared, layers_per_block))
        self.up_blocks = nn.ModuleList()  # registered before mid_block: diffusers' attn_processors order
        self.mid_block = self._mid_block(shared) if mid_block_type else None
        self.up_blocks.extend(self._up_blocks(shared, layers_per_block))
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, first, eps=norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(first, out_channels, kernel_size=3, padding=1)
        self._time_projections = shared_time_projections(self)

    # ------------------------------------------------------------------ building

    @staticmethod
    def _check_config(name: str, down: tuple[str, ...], up: tuple[str, ...], channels: tuple[int, ...]) -> None:
        if len(down) != len(up) or len(down) != len(channels):
            raise errors.ModelConfigError(
                name, "down_block_types/up_block_types/block_out_channels", (len(down), len(up), len(channels)),
                "the same number of down blocks, up blocks and block_out_channels",
            )
        check_block_types("down", down, DOWN_TYPES)
        check_block_types("up", up, UP_TYPES)

    def _down_blocks(self, shared: BlockArgs, layers: int) -> list[nn.Module]:
        channels = self.config.block_out_channels
        blocks = []
        for i, block_type in enumerate(self.config.down_block_types):
            args = _with(shared, in_channels=channels[max(i - 1, 0)], out_channels=channels[i],
                         num_layers=layers, add_sampler=i < len(channels) - 1,
                         attention_head_dim=self.config.attention_head_dim or channels[i])
            blocks.append(build_block("down", block_type, args, DOWN_TYPES))
        return blocks

    def _mid_block(self, shared: BlockArgs) -> nn.Module:
        config = self.config
        check_block_types("mid", [config.mid_block_type], MID_TYPES)
        groups = config.attn_norm_num_groups
        if groups is None and config.resnet_time_scale_shift == "default":
            groups = config.norm_num_groups
        channels = config.block_out_channels[-1]
        args = _with(shared, in_channels=channels, out_channels=channels,
                     output_scale_factor=config.mid_block_scale_factor,
                     attention_head_dim=config.attention_head_dim or channels, attention_groups=groups,
                     add_attention=config.add_attention)
        return build_block("mid", config.mid_block_type, args, MID_TYPES)

    def _up_blocks(self, shared: BlockArgs, layers: int) -> list[nn.Module]:
        reversed_channels = list(reversed(self.config.block_out_channels))
        blocks = []
        for i, block_type in enumerate(self.config.up_block_types):
            out = reversed_channels[i]
            args = _with(shared, in_channels=reversed_channels[min(i + 1, len(reversed_channels) - 1)],
                         out_channels=out, prev_output_channel=reversed_channels[max(i - 1, 0)],
                         num_layers=layers + 1, add_sampler=i < len(reversed_channels) - 1,
                         attention_head_dim=self.config.attention_head_dim or out)
            blocks.append(build_block("up", block_type, args, UP_TYPES))
        return blocks

    @classmethod
    def _rename_checkpoint_keys(cls, keys: list[str]) -> dict[str, str]:
        """Checkpoints of diffusers < 0.14 name attention weights query/key/value/proj_attn."""
        return rename_legacy_attention_keys(keys)

    # ------------------------------------------------------------------ forward

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple[torch.Tensor]:
        """Predict the noise (or the model's target) for ``sample`` at ``timestep``.

        Args:
            sample: noisy images ``(B, in_channels, H, W)``, ``H``/``W`` divisible by
                :attr:`downsampling_factor`.
            timestep: python number (cast to int64, as diffusers does), 0-d tensor, or 1-d
                tensor of 1 or ``B`` values.
            class_labels: ``(B,)`` class ids, required iff the config has ``num_class_embeds``.

        Raises:
            InputShapeError, MissingModelInputError, ModelInputError.
        """
        check_sample(type(self).__name__, sample, self.config.in_channels, self.downsampling_factor)
        if self.config.center_input_sample:
            sample = 2 * sample - 1.0
        timesteps = timesteps_for_batch(type(self).__name__, timestep, sample, torch.long)
        emb = direct.activation(self.resnet_time_act, self._embed(timesteps, class_labels))
        with opened((self._time_projections, emb)):
            hidden = self._blocks(direct.conv2d(self.conv_in, sample), emb)
        hidden = direct.group_norm(self.conv_norm_out, hidden)
        hidden = direct.conv2d(self.conv_out, direct.activation(self.conv_act, hidden))
        if self.config.time_embedding_type == "fourier":
            hidden = hidden / timesteps.reshape(-1, 1, 1, 1)
        return UNet2DOutput(sample=hidden) if return_dict else (hidden,)

    def _blocks(self, hidden: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        skips: tuple[torch.Tensor, ...] = (hidden,)
        for down_block in self.down_blocks:
            hidden, block_skips = direct.call(down_block, hidden_states=hidden, temb=emb)
            skips += block_skips
        if self.mid_block is not None:
            hidden = direct.call(self.mid_block, hidden, emb)
        for up_block in self.up_blocks:
            count = len(up_block.resnets)
            hidden = direct.call(up_block, hidden, skips[-count:], emb)
            skips = skips[:-count]
        return hidden

    def _embed(self, timesteps: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        emb = self.time_embedding(self.time_proj(timesteps).to(dtype=self.dtype))
        if self.class_embedding is None:
            if class_labels is not None:
                raise errors.ModelInputError(
                    f"{type(self).__name__} got class_labels but has no class embedding (num_class_embeds is None)"
                )
            return emb
        if class_labels is None:
            raise errors.MissingModelInputError(type(self).__name__, "class_labels", "the config sets num_class_embeds")
        return emb + self.class_embedding(class_labels).to(dtype=self.dtype)


def _with(args: BlockArgs, **changes: Any) -> BlockArgs:
    from dataclasses import replace

    return replace(args, **changes)
