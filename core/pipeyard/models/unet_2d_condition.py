"""UNet2DConditionModel: the text-conditioned UNet of Stable Diffusion 1.x and 2.x.

Wiring as :mod:`.unet_2d`, with spatial transformers that cross-attend to
``encoder_hidden_states`` (the text encoder's output) in the ``CrossAttn*`` blocks and the
mid block. SD 2 configs add ``use_linear_projection`` and per-block ``attention_head_dim``.

A naming quirk kept for checkpoint compatibility: in diffusers configs ``attention_head_dim``
is the number of heads per block (SD 1.x: 8). ``num_attention_heads``, when set, takes its
place with the name that says what it is.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

import torch
from torch import nn

from .. import errors
from ..configuration import register_to_config
from ..modeling import ModelMixin
from . import direct
from .activations import activation
from .attention import Attention, AttentionSlicingMixin
from .embeddings import SinusoidalTimestepProjection, TimestepEmbedding
from .fused import PerCallProjections, opened
from .outputs import UNet2DConditionOutput
from .resnet import shared_time_projections
from .unet_blocks import BlockArgs, build_block, check_block_types
from .validation import check_sample, per_block, require_choice, require_defaults, timesteps_for_batch

DOWN_TYPES = ("CrossAttnDownBlock2D", "DownBlock2D")
UP_TYPES = ("CrossAttnUpBlock2D", "UpBlock2D")
MID_TYPES = ("UNetMidBlock2DCrossAttn",)

# Options diffusers knows that pipeyard accepts only at their default (SDXL, unCLIP, LCM, ...).
_UNSUPPORTED_DEFAULTS: dict[str, Any] = {
    "dual_cross_attention": False,
    "class_embed_type": None,
    "addition_embed_type": None,
    "addition_time_embed_dim": None,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "reverse_transformer_layers_per_block": None,
    "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0,
    "time_embedding_type": "positional",
    "time_embedding_act_fn": None,
    "timestep_post_act": None,
    "projection_class_embeddings_input_dim": None,
    "attention_type": "default",
    "class_embeddings_concat": False,
    "cross_attention_norm": None,
}


class UNet2DConditionModel(AttentionSlicingMixin, ModelMixin):
    """Conditional 2-d UNet, weight-compatible with diffusers' ``UNet2DConditionModel``.

    Example::

        unet = UNet2DConditionModel.from_pretrained("runwayml/stable-diffusion-v1-5", subfolder="unet")
        noise_pred = unet(latents, t, encoder_hidden_states=text_embeddings).sample
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] | None = None,
        in_channels: int = 4,
        out_channels: int = 4,
        center_input_sample: bool = False,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D",
        ),
        mid_block_type: str | None = "UNetMidBlock2DCrossAttn",
        up_block_types: tuple[str, ...] = (
            "UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
        ),
        only_cross_attention: bool | tuple[bool, ...] = False,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int | tuple[int, ...] = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1,
        dropout: float = 0.0,
        act_fn: str = "silu",
        norm_num_groups: int | None = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int | tuple[int, ...] = 1280,
        transformer_layers_per_block: int | tuple[int, ...] | tuple[tuple[int, ...], ...] = 1,
        reverse_transformer_layers_per_block: tuple[tuple[int, ...], ...] | None = None,
        encoder_hid_dim: int | None = None,
        encoder_hid_dim_type: str | None = None,
        attention_head_dim: int | tuple[int, ...] = 8,
        num_attention_heads: int | tuple[int, ...] | None = None,
        dual_cross_attention: bool = False,
        use_linear_projection: bool = False,
        class_embed_type: str | None = None,
        addition_embed_type: str | None = None,
        addition_time_embed_dim: int | None = None,
        num_class_embeds: int | None = None,
        upcast_attention: bool = False,
        resnet_time_scale_shift: str = "default",
        resnet_skip_time_act: bool = False,
        resnet_out_scale_factor: float = 1.0,
        time_embedding_type: str = "positional",
        time_embedding_dim: int | None = None,
        time_embedding_act_fn: str | None = None,
        timestep_post_act: str | None = None,
        time_cond_proj_dim: int | None = None,
        conv_in_kernel: int = 3,
        conv_out_kernel: int = 3,
        projection_class_embeddings_input_dim: int | None = None,
        attention_type: str = "default",
        class_embeddings_concat: bool = False,
        mid_block_only_cross_attention: bool | None = None,
        cross_attention_norm: str | None = None,
        addition_embed_type_num_heads: int = 64,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        require_defaults(name, {key: self.config[key] for key in _UNSUPPORTED_DEFAULTS}, _UNSUPPORTED_DEFAULTS)
        require_choice(name, "mid_block_type", mid_block_type, (*MID_TYPES, None))
        self._check_block_lists(name)
        self.sample_size = sample_size
        first = block_out_channels[0]
        time_embed_dim = time_embedding_dim or first * 4
        self.conv_in = nn.Conv2d(in_channels, first, kernel_size=conv_in_kernel, padding=(conv_in_kernel - 1) // 2)
        self.time_proj = SinusoidalTimestepProjection(first, flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(first, time_embed_dim, act_fn, cond_proj_dim=time_cond_proj_dim)
        self.class_embedding = nn.Embedding(num_class_embeds, time_embed_dim) if num_class_embeds else None
        shared = BlockArgs(
            in_channels=0, out_channels=0, temb_channels=time_embed_dim, eps=norm_eps, act_fn=act_fn,
            groups=norm_num_groups or 32, time_scale_shift=resnet_time_scale_shift, dropout=dropout,
            downsample_padding=downsample_padding, use_linear_projection=use_linear_projection, temb_activated=True,
            upcast_attention=upcast_attention,
        )
        self.resnet_time_act = activation(act_fn, name)  # applied once per call for every resnet
        # IP-Adapter's image projection, installed by load_ip_adapter (config encoder_hid_dim_type "ip_image_proj")
        self.encoder_hid_proj: nn.Module | None = None
        per = self._per_block_settings(name)
        self.down_blocks = nn.ModuleList(self._down_blocks(shared, per))
        self.up_blocks = nn.ModuleList()  # registered before mid_block: diffusers' attn_processors order
        self.mid_block = self._mid_block(shared, per) if mid_block_type else None
        self.up_blocks.extend(self._up_blocks(shared, per))
        self.conv_norm_out: nn.GroupNorm | None = None
        self.conv_act: nn.Module | None = None
        if norm_num_groups is not None:
            self.conv_norm_out = nn.GroupNorm(norm_num_groups, first, eps=norm_eps)
            self.conv_act = activation(act_fn, name)
        self.conv_out = nn.Conv2d(first, out_channels, kernel_size=conv_out_kernel, padding=(conv_out_kernel - 1) // 2)
        self._time_projections, self._context_projections = self._per_call_projections()

    # ------------------------------------------------------------------ building

    def _per_call_projections(self) -> tuple[PerCallProjections, PerCallProjections | None]:
        """One matmul per call for all resnets' time projections, one for all cross-attention
        keys/values (when every cross-attention reads the same context width)."""
        times = shared_time_projections(self)
        cross = [m for m in self.modules() if isinstance(m, Attention) and m.is_cross_attention]
        if len({layer.to_k.in_features for layer in cross}) != 1:
            return times, None
        return times, PerCallProjections(cross, ["to_k", "to_v"], takes_part=Attention.uses_fast_path)

    def _check_block_lists(self, name: str) -> None:
        config = self.config
        counts = (len(config.down_block_types), len(config.up_block_types), len(config.block_out_channels))
        if len(set(counts)) != 1:
            raise errors.ModelConfigError(
                name, "down_block_types/up_block_types/block_out_channels", counts,
                "the same number of down blocks, up blocks and block_out_channels",
            )
        check_block_types("down", config.down_block_types, DOWN_TYPES)
        check_block_types("up", config.up_block_types, UP_TYPES)

    def _per_block_settings(self, name: str) -> dict[str, list[Any]]:
        """Config values that may be one per down block, expanded to lists (down-block order)."""
        config = self.config
        count = len(config.down_block_types)
        heads = config.num_attention_heads or config.attention_head_dim
        return {
            "heads": per_block(name, "num_attention_heads", heads, count),
            "layers": per_block(name, "layers_per_block", config.layers_per_block, count),
            "cross_dim": per_block(name, "cross_attention_dim", config.cross_attention_dim, count),
            "depth": per_block(name, "transformer_layers_per_block", config.transformer_layers_per_block, count),
            "only_cross": per_block(name, "only_cross_attention", config.only_cross_attention, count),
        }

    def _down_blocks(self, shared: BlockArgs, per: dict[str, list[Any]]) -> list[nn.Module]:
        channels = self.config.block_out_channels
        blocks = []
        for i, block_type in enumerate(self.config.down_block_types):
            args = replace(
                shared, in_channels=channels[max(i - 1, 0)], out_channels=channels[i], num_layers=per["layers"][i],
                add_sampler=i < len(channels) - 1, num_attention_heads=per["heads"][i],
                cross_attention_dim=per["cross_dim"][i], transformer_layers=per["depth"][i],
                only_cross_attention=per["only_cross"][i],
            )
            blocks.append(build_block("down", block_type, args, DOWN_TYPES))
        return blocks

    def _mid_block(self, shared: BlockArgs, per: dict[str, list[Any]]) -> nn.Module:
        channels = self.config.block_out_channels[-1]
        args = replace(
            shared, in_channels=channels, out_channels=channels, output_scale_factor=self.config.mid_block_scale_factor,
            num_attention_heads=per["heads"][-1], cross_attention_dim=per["cross_dim"][-1],
            transformer_layers=per["depth"][-1],
        )
        return build_block("mid", self.config.mid_block_type, args, MID_TYPES)

    def _up_blocks(self, shared: BlockArgs, per: dict[str, list[Any]]) -> list[nn.Module]:
        rev = {key: list(reversed(values)) for key, values in per.items()}
        channels = list(reversed(self.config.block_out_channels))
        blocks = []
        for i, block_type in enumerate(self.config.up_block_types):
            args = replace(
                shared, in_channels=channels[min(i + 1, len(channels) - 1)], out_channels=channels[i],
                prev_output_channel=channels[max(i - 1, 0)], num_layers=rev["layers"][i] + 1,
                add_sampler=i < len(channels) - 1, num_attention_heads=rev["heads"][i],
                cross_attention_dim=rev["cross_dim"][i], transformer_layers=rev["depth"][i],
                only_cross_attention=rev["only_cross"][i],
            )
            blocks.append(build_block("up", block_type, args, UP_TYPES))
        return blocks

    # ------------------------------------------------------------------ forward

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor | None,
        class_labels: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        added_cond_kwargs: dict[str, Any] | None = None,
        down_block_additional_residuals: tuple[torch.Tensor, ...] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> UNet2DConditionOutput | tuple[torch.Tensor]:
        """Predict the noise for ``sample`` at ``timestep``, conditioned on ``encoder_hidden_states``.

        Args:
            sample: latents ``(B, in_channels, H, W)``, ``H``/``W`` divisible by
                :attr:`downsampling_factor`.
            timestep: python number, 0-d tensor, or 1-d tensor of 1 or ``B`` values.
            encoder_hidden_states: ``(B, tokens, cross_attention_dim)`` text embeddings.
            down_block_additional_residuals, mid_block_additional_residual: added to the skip
                connections and to the mid block's output (ControlNet).
            encoder_attention_mask: ``(B, tokens)``, 1 = attend, 0 = ignore (cross-attention).
            attention_mask: ``(B, keys)``, the same for self-attention; every self-attention
                layer gets it, so its length must fit them (diffusers' rule).
            cross_attention_kwargs: passed to every attention processor that takes them by name
                (``scale``, the LoRA scale, is taken out first, as diffusers does).
            timestep_cond: ``(B, time_cond_proj_dim)``, added to the timestep embedding (latent
                consistency models' guidance embedding); only for a UNet with ``time_cond_proj_dim``.
            added_cond_kwargs: accepted for call compatibility with diffusers; must be None
                (or empty).

        Raises:
            InputShapeError, MissingModelInputError, ModelInputError.
        """
        self._check_inputs(sample, encoder_hidden_states)
        context = self._context_with_image_tokens(encoder_hidden_states, added_cond_kwargs)
        if cross_attention_kwargs is not None and "scale" in cross_attention_kwargs:
            cross_attention_kwargs = {k: v for k, v in cross_attention_kwargs.items() if k != "scale"}
        self_mask, mask = _as_bias(attention_mask, sample.dtype), _as_bias(encoder_attention_mask, sample.dtype)
        if self.config.center_input_sample:
            sample = 2 * sample - 1.0
        residuals = (down_block_additional_residuals, mid_block_additional_residual)
        timesteps = timesteps_for_batch(type(self).__name__, timestep, sample, None)
        emb = self._embed(timesteps, sample, class_labels, timestep_cond)
        emb = direct.activation(self.resnet_time_act, emb)  # what every resnet's time projection reads
        shared_context = self._context_projections if torch.is_tensor(context) else None
        with opened((self._time_projections, emb), (shared_context, context)):
            inputs = _BlockInputs(emb, context, mask, cross_attention_kwargs, self_mask)
            hidden = self._blocks(direct.conv2d(self.conv_in, sample), inputs, residuals)
        if self.conv_norm_out is not None and self.conv_act is not None:
            hidden = direct.activation(self.conv_act, direct.group_norm(self.conv_norm_out, hidden))
        hidden = direct.conv2d(self.conv_out, hidden)
        return UNet2DConditionOutput(sample=hidden) if return_dict else (hidden,)

    def _blocks(
        self,
        hidden: torch.Tensor,
        inputs: _BlockInputs,
        residuals: tuple[tuple[torch.Tensor, ...] | None, torch.Tensor | None],
    ) -> torch.Tensor:
        """Down blocks, mid block, up blocks (with ControlNet ``residuals`` added if given).

        Blocks are called with diffusers' argument names, so a block whose ``forward`` a
        community pipeline replaced gets what it expects.
        """
        down_residuals, mid_residual = residuals
        hidden, skips = self._down(hidden, inputs)
        if down_residuals is not None:
            skips = tuple(skip + extra for skip, extra in zip(skips, down_residuals, strict=True))
        if self.mid_block is not None:
            if getattr(self.mid_block, "has_cross_attention", False):
                hidden = direct.call(self.mid_block, hidden, inputs.emb, **inputs.attention())
            else:
                hidden = direct.call(self.mid_block, hidden, inputs.emb)
        if mid_residual is not None:
            hidden = hidden + mid_residual
        for up_block in self.up_blocks:
            count = len(up_block.resnets)
            block_skips, skips = skips[-count:], skips[:-count]
            if getattr(up_block, "has_cross_attention", False):
                hidden = direct.call(
                    up_block, hidden_states=hidden, temb=inputs.emb, res_hidden_states_tuple=block_skips,
                    upsample_size=None, **inputs.attention(),
                )
            else:
                hidden = direct.call(
                    up_block, hidden_states=hidden, temb=inputs.emb, res_hidden_states_tuple=block_skips,
                    upsample_size=None,
                )
        return hidden

    def _down(self, hidden: torch.Tensor, inputs: _BlockInputs) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        skips: tuple[torch.Tensor, ...] = (hidden,)
        for down_block in self.down_blocks:
            if getattr(down_block, "has_cross_attention", False):
                hidden, block_skips = direct.call(down_block, hidden_states=hidden, temb=inputs.emb, **inputs.attention())
            else:
                hidden, block_skips = direct.call(down_block, hidden_states=hidden, temb=inputs.emb)
            skips += block_skips
        return hidden, skips

    def _check_inputs(self, sample: torch.Tensor, context: torch.Tensor | None) -> None:
        name = type(self).__name__
        check_sample(name, sample, self.config.in_channels, self.downsampling_factor)
        if context is None:
            raise errors.MissingModelInputError(
                name, "encoder_hidden_states", "pass the text encoder's hidden states (batch, tokens, dim)"
            )
        if context.ndim != 3 or context.shape[0] != sample.shape[0]:
            expected = f"(batch={sample.shape[0]}, tokens, dim)"
            raise errors.InputShapeError(name, "encoder_hidden_states", expected, context.shape)

    def _context_with_image_tokens(
        self, encoder_hidden_states: torch.Tensor, added_cond_kwargs: dict[str, Any] | None
    ) -> Any:
        """The cross-attention context: the text tokens, or with an IP-Adapter loaded
        (``encoder_hid_proj``), ``(text tokens, [image tokens per adapter])`` from
        ``added_cond_kwargs["image_embeds"]``, as diffusers' UNet builds it.

        Raises:
            MissingModelInputError: an IP-Adapter is loaded and no ``image_embeds`` came.
            ModelInputError: ``added_cond_kwargs`` without an IP-Adapter loaded.
        """
        if self.encoder_hid_proj is None or self.config.get("encoder_hid_dim_type") != "ip_image_proj":
            self._refuse_unsupported(added_cond_kwargs=added_cond_kwargs)
            return encoder_hidden_states
        if not added_cond_kwargs or "image_embeds" not in added_cond_kwargs:
            raise errors.MissingModelInputError(
                type(self).__name__, 'added_cond_kwargs["image_embeds"]',
                "an IP-Adapter is loaded (encoder_hid_dim_type='ip_image_proj'): pass the image embeddings, "
                "e.g. from pipe.prepare_ip_adapter_image_embeds(...)",
            )
        return encoder_hidden_states, self.encoder_hid_proj(added_cond_kwargs["image_embeds"])

    def _refuse_unsupported(self, **arguments: Any) -> None:
        given = sorted(name for name, value in arguments.items() if not _is_empty(value))
        if given:
            raise errors.ModelInputError(
                f"{type(self).__name__} does not support {', '.join(given)} yet; pass None (the default)"
            )

    def _embed(
        self, timesteps: torch.Tensor, sample: torch.Tensor, class_labels: torch.Tensor | None,
        timestep_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        emb = self.time_embedding(self.time_proj(timesteps).to(dtype=sample.dtype), timestep_cond)
        if self.class_embedding is None:
            return emb
        if class_labels is None:
            raise errors.MissingModelInputError(type(self).__name__, "class_labels", "the config sets num_class_embeds")
        return emb + self.class_embedding(class_labels).to(dtype=sample.dtype)


class _BlockInputs(NamedTuple):
    """What every block of one UNet call reads besides the hidden states."""

    emb: torch.Tensor
    context: torch.Tensor
    encoder_attention_mask: torch.Tensor | None
    cross_attention_kwargs: dict[str, Any] | None
    attention_mask: torch.Tensor | None = None

    def attention(self) -> dict[str, Any]:
        """The keyword arguments diffusers' UNet gives its cross-attention blocks."""
        return {
            "encoder_hidden_states": self.context, "attention_mask": self.attention_mask,
            "cross_attention_kwargs": self.cross_attention_kwargs,
            "encoder_attention_mask": self.encoder_attention_mask,
        }


def _as_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A ``(B, keys)`` keep-mask (1 = attend, 0 = ignore) -> an additive bias ``(B, 1, keys)``
    of 0 / -10000, as diffusers' UNet makes it."""
    if mask is None:
        return None
    return ((1 - mask.to(dtype)) * -10000.0).unsqueeze(1)


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and not value)
