"""Down, mid and up blocks of UNets and VAEs, and the registry that builds them by type name.

Every block type of a config (``down_block_types``, ``mid_block_type``, ``up_block_types``) is
looked up in :data:`DOWN_BLOCKS`, :data:`MID_BLOCKS` or :data:`UP_BLOCKS`; an unknown name raises
:class:`~pipeyard.errors.UnknownBlockTypeError` listing the known ones. All blocks take one
:class:`BlockArgs`, so a model describes a block once and the registry picks the class.

Down blocks return ``(hidden_states, skip_connections)``; up blocks consume skips from the end
of the tuple they get. Attention inside a block is one of: none, spatial self-attention
(:class:`~.attention.Attention`, DDPM), or a :class:`~.transformer_2d.Transformer2DModel` (SD).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import errors
from . import direct
from .attention import Attention
from .resnet import Downsample2D, ResnetBlock2D, Upsample2D
from .transformer_2d import Transformer2DModel

Skips = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class BlockArgs:
    """What a block needs to know; models fill it from their config."""

    in_channels: int
    out_channels: int
    temb_channels: int | None
    num_layers: int = 1
    add_sampler: bool = True  # a downsampler (down blocks) or upsampler (up blocks)
    prev_output_channel: int = 0  # up blocks: channels coming from the block below
    eps: float = 1e-5
    act_fn: str = "silu"
    groups: int = 32
    time_scale_shift: str = "default"
    dropout: float = 0.0
    output_scale_factor: float = 1.0
    downsample_padding: int = 1
    temb_activated: bool = False  # the model passes act(temb) to its blocks (see ResnetBlock2D)
    # spatial attention (DDPM UNets, VAE mid block)
    attention_head_dim: int | None = None
    attention_groups: int | None = None  # mid block only; None = no group norm in attention
    add_attention: bool = True
    # transformer attention (conditional UNets)
    num_attention_heads: int = 8
    cross_attention_dim: int | None = None
    transformer_layers: int | Sequence[int] = 1
    use_linear_projection: bool = False
    only_cross_attention: bool = False
    upcast_attention: bool = False

    def resnet(self, in_channels: int, out_channels: int) -> ResnetBlock2D:
        return ResnetBlock2D(
            in_channels=in_channels, out_channels=out_channels, temb_channels=self.temb_channels,
            groups=self.groups, eps=self.eps, act_fn=self.act_fn, time_embedding_norm=self.time_scale_shift,
            output_scale_factor=self.output_scale_factor, dropout=self.dropout, temb_activated=self.temb_activated,
        )

    def spatial_attention(self, channels: int, groups: int | None) -> Attention:
        head_dim = self.attention_head_dim or channels
        return Attention(
            channels, heads=channels // head_dim, dim_head=head_dim, bias=True, norm_num_groups=groups,
            eps=self.eps, residual_connection=True, rescale_output_factor=self.output_scale_factor,
        )

    def transformer(self, channels: int, layer: int, only_cross_attention: bool) -> Transformer2DModel:
        depth = self.transformer_layers
        depth = depth if isinstance(depth, int) else depth[layer]
        return Transformer2DModel(
            self.num_attention_heads, channels // self.num_attention_heads, channels, num_layers=depth,
            cross_attention_dim=self.cross_attention_dim, norm_num_groups=self.groups,
            use_linear_projection=self.use_linear_projection, only_cross_attention=only_cross_attention,
            upcast_attention=self.upcast_attention,
        )


class _AttentionCaller:
    """Calls a block's attention layers as diffusers' blocks do (same arguments, same names), so
    a processor or a patched ``forward`` sees what it would see in diffusers."""

    has_cross_attention = False

    def _attend(self, attn: nn.Module | None, hidden: torch.Tensor, call: _AttentionCall) -> torch.Tensor:
        if attn is None:
            return hidden
        if self.has_cross_attention:  # a Transformer2DModel, positional in its signature's order
            return direct.call(
                attn, hidden, call.context, None, None, None, call.kwargs, call.attention_mask,
                call.encoder_attention_mask, False,
            )[0]
        return direct.call(attn, hidden, **call.spatial_kwargs)


@dataclass
class _AttentionCall:
    """The attention inputs of one block call."""

    context: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    encoder_attention_mask: torch.Tensor | None = None
    kwargs: dict[str, Any] | None = None
    spatial_kwargs: dict[str, Any] = field(default_factory=dict)  # spatial attention: temb (mid) or kwargs


_NO_ATTENTION_INPUTS = _AttentionCall()


# ---------------------------------------------------------------------- down blocks


class _DownBlock(nn.Module, _AttentionCaller):
    """``num_layers`` x (resnet [+ attention]), then an optional stride-2 downsampler."""

    def __init__(self, args: BlockArgs) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            args.resnet(args.in_channels if i == 0 else args.out_channels, args.out_channels)
            for i in range(args.num_layers)
        )
        attentions = [self._make_attention(args, i) for i in range(args.num_layers)]
        if any(a is not None for a in attentions):
            self.attentions = nn.ModuleList(attentions)
        self.downsamplers = None
        if args.add_sampler:
            self.downsamplers = nn.ModuleList([Downsample2D(args.out_channels, padding=args.downsample_padding)])

    def _make_attention(self, args: BlockArgs, layer: int) -> nn.Module | None:
        return None

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, Skips]:
        """diffusers' signature (the union of its down blocks'); returns ``(hidden, skips)``."""
        call = _AttentionCall(
            encoder_hidden_states, attention_mask, encoder_attention_mask, cross_attention_kwargs,
            cross_attention_kwargs or {},
        )
        return self._run(hidden_states, temb, call)

    def _run(self, hidden_states: torch.Tensor, temb: torch.Tensor | None, call: _AttentionCall) -> tuple[torch.Tensor, Skips]:
        skips: Skips = ()
        attentions = getattr(self, "attentions", [None] * len(self.resnets))
        for resnet, attn in zip(self.resnets, attentions):
            hidden_states = direct.call(resnet, hidden_states, temb)
            hidden_states = self._attend(attn, hidden_states, call)
            skips += (hidden_states,)
        if self.downsamplers is not None:
            hidden_states = direct.call(self.downsamplers[0], hidden_states)
            skips += (hidden_states,)
        return hidden_states, skips


class DownBlock2D(_DownBlock):
    """Resnets only."""


class AttnDownBlock2D(_DownBlock):
    """Resnets, each followed by spatial self-attention (DDPM)."""

    def _make_attention(self, args: BlockArgs, layer: int) -> nn.Module:
        return args.spatial_attention(args.out_channels, args.groups)


class CrossAttnDownBlock2D(_DownBlock):
    """Resnets, each followed by a spatial transformer with cross-attention (SD)."""

    has_cross_attention = True

    def _make_attention(self, args: BlockArgs, layer: int) -> nn.Module:
        return args.transformer(args.out_channels, layer, args.only_cross_attention)


class DownEncoderBlock2D(_DownBlock):
    """VAE encoder block: resnets without time embedding."""


# ---------------------------------------------------------------------- mid blocks


class _MidBlock(nn.Module, _AttentionCaller):
    """resnet, then ``num_layers`` x (attention, resnet), all at ``in_channels``."""

    def __init__(self, args: BlockArgs) -> None:
        super().__init__()
        channels = args.in_channels
        self.attentions = nn.ModuleList(self._make_attention(args, i) for i in range(args.num_layers))
        self.resnets = nn.ModuleList(args.resnet(channels, channels) for _ in range(args.num_layers + 1))

    def _make_attention(self, args: BlockArgs, layer: int) -> nn.Module | None:
        raise NotImplementedError

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """diffusers' signature; spatial attention gets ``temb`` as diffusers passes it."""
        call = _AttentionCall(
            encoder_hidden_states, attention_mask, encoder_attention_mask, cross_attention_kwargs, {"temb": temb}
        )
        hidden_states = direct.call(self.resnets[0], hidden_states, temb)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            hidden_states = self._attend(attn, hidden_states, call)
            hidden_states = direct.call(resnet, hidden_states, temb)
        return hidden_states


class UNetMidBlock2D(_MidBlock):
    """Mid block of DDPM UNets and the VAE: spatial self-attention (optional)."""

    def _make_attention(self, args: BlockArgs, layer: int) -> nn.Module | None:
        if not args.add_attention:
            return None
        return args.spatial_attention(args.in_channels, args.attention_groups)


class UNetMidBlock2DCrossAttn(_MidBlock):
    """Mid block of SD UNets: a spatial transformer (never ``only_cross_attention``)."""

    has_cross_attention = True

    def _make_attention(self, args: BlockArgs, layer: int) -> nn.Module:
        return args.transformer(args.in_channels, layer, only_cross_attention=False)


# ---------------------------------------------------------------------- up blocks


class _UpBlock(nn.Module, _AttentionCaller):
    """``num_layers`` x (concat a skip, resnet [+ attention]), then an optional upsampler.

    Resnet ``j`` sees ``prev_output_channel`` (j = 0) or ``out_channels`` channels from below,
    plus the skip: ``in_channels`` for the last one, ``out_channels`` otherwise.
    """

    uses_skips = True

    def __init__(self, args: BlockArgs) -> None:
        super().__init__()
        last = args.num_layers - 1
        self.resnets = nn.ModuleList(
            args.resnet(self._resnet_in_channels(args, j, last), args.out_channels) for j in range(args.num_layers)
        )
        attentions = [self._make_attention(args, j) for j in range(args.num_layers)]
        if any(a is not None for a in attentions):
            self.attentions = nn.ModuleList(attentions)
        self.upsamplers = nn.ModuleList([Upsample2D(args.out_channels)]) if args.add_sampler else None

    def _resnet_in_channels(self, args: BlockArgs, j: int, last: int) -> int:
        below = args.prev_output_channel if j == 0 else args.out_channels
        return below + (args.in_channels if j == last else args.out_channels)

    def _make_attention(self, args: BlockArgs, layer: int) -> nn.Module | None:
        return None

    def forward(
        self,
        hidden_states: torch.Tensor,
        res_hidden_states_tuple: Skips = (),
        temb: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        upsample_size: tuple[int, int] | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """diffusers' signature (the union of its up blocks'); skips are used from the end."""
        call = _AttentionCall(encoder_hidden_states, attention_mask, encoder_attention_mask, cross_attention_kwargs)
        return self._run(hidden_states, res_hidden_states_tuple, temb, call, upsample_size)

    def _run(
        self,
        hidden_states: torch.Tensor,
        skips: Skips,
        temb: torch.Tensor | None,
        call: _AttentionCall,
        upsample_size: tuple[int, int] | None,
    ) -> torch.Tensor:
        attentions = getattr(self, "attentions", [None] * len(self.resnets))
        for resnet, attn in zip(self.resnets, attentions):
            if self.uses_skips:
                hidden_states = torch.cat([hidden_states, skips[-1]], dim=1)
                skips = skips[:-1]
            hidden_states = direct.call(resnet, hidden_states, temb)
            hidden_states = self._attend(attn, hidden_states, call)
        if self.upsamplers is not None:
            hidden_states = direct.call(self.upsamplers[0], hidden_states, upsample_size)
        return hidden_states


class UpBlock2D(_UpBlock):
    """Resnets only."""


class AttnUpBlock2D(_UpBlock):
    """Resnets, each followed by spatial self-attention (DDPM)."""

    def _make_attention(self, args: BlockArgs, layer: int) -> nn.Module:
        return args.spatial_attention(args.out_channels, args.groups)


class CrossAttnUpBlock2D(_UpBlock):
    """Resnets, each followed by a spatial transformer with cross-attention (SD)."""

    has_cross_attention = True

    def _make_attention(self, args: BlockArgs, layer: int) -> nn.Module:
        return args.transformer(args.out_channels, layer, args.only_cross_attention)


class UpDecoderBlock2D(_UpBlock):
    """VAE decoder block: resnets without time embedding and without skip connections."""

    uses_skips = False

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """diffusers' signature: no skip connections."""
        return self._run(hidden_states, (), temb, _NO_ATTENTION_INPUTS, None)

    def _resnet_in_channels(self, args: BlockArgs, j: int, last: int) -> int:
        return args.in_channels if j == 0 else args.out_channels


# ---------------------------------------------------------------------- registry

BlockFactory = Callable[[BlockArgs], nn.Module]

DOWN_BLOCKS: dict[str, BlockFactory] = {
    "DownBlock2D": DownBlock2D,
    "AttnDownBlock2D": AttnDownBlock2D,
    "CrossAttnDownBlock2D": CrossAttnDownBlock2D,
    "DownEncoderBlock2D": DownEncoderBlock2D,
}
MID_BLOCKS: dict[str, BlockFactory] = {
    "UNetMidBlock2D": UNetMidBlock2D,
    "UNetMidBlock2DCrossAttn": UNetMidBlock2DCrossAttn,
}
UP_BLOCKS: dict[str, BlockFactory] = {
    "UpBlock2D": UpBlock2D,
    "AttnUpBlock2D": AttnUpBlock2D,
    "CrossAttnUpBlock2D": CrossAttnUpBlock2D,
    "UpDecoderBlock2D": UpDecoderBlock2D,
}
_REGISTRIES = {"down": DOWN_BLOCKS, "mid": MID_BLOCKS, "up": UP_BLOCKS}


def block_class(kind: str, block_type: str, allowed: Sequence[str] | None = None) -> BlockFactory:
    """The class registered for ``block_type`` among ``kind`` ("down", "mid", "up") blocks.

    ``allowed`` narrows the registry to the types a given model supports. The ``UNetRes``
    prefix of some old configs is accepted, as diffusers does.

    Raises:
        UnknownBlockTypeError: with the known type names.
    """
    registry = _REGISTRIES[kind]
    known = [name for name in registry if allowed is None or name in allowed]
    name = block_type.removeprefix("UNetRes")
    if name not in known:
        raise errors.UnknownBlockTypeError(block_type, kind, known)
    return registry[name]


def check_block_types(kind: str, block_types: Sequence[str], allowed: Sequence[str]) -> None:
    """Fail early (before building anything) on the first unknown block type."""
    for block_type in block_types:
        block_class(kind, block_type, allowed)


def build_block(kind: str, block_type: str, args: BlockArgs, allowed: Sequence[str] | None = None) -> nn.Module:
    return block_class(kind, block_type, allowed)(args)
