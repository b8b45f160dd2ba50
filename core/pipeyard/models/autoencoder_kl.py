"""AutoencoderKL: the VAE of latent diffusion / Stable Diffusion (``stabilityai/sd-vae-ft-mse``).

``encode(x).latent_dist`` is a :class:`~.outputs.DiagonalGaussianDistribution`;
``decode(z).sample`` the images. Latents are scaled by ``config.scaling_factor`` by the
*pipelines*, not here.

Memory savers, both off by default:

- slicing (:meth:`AutoencoderKL.enable_slicing`): encode/decode one image of the batch at a
  time; identical results.
- tiling (:meth:`AutoencoderKL.enable_tiling`): process large images as overlapping tiles of
  ``sample_size`` pixels, blended linearly over a quarter of a tile; results differ slightly
  from untiled ones (and equal diffusers' tiled results).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..configuration import register_to_config
from ..modeling import ModelMixin
from .attention import AttentionSlicingMixin, rename_legacy_attention_keys
from .outputs import AutoencoderKLOutput, DecoderOutput, DiagonalGaussianDistribution
from .vae import Decoder, Encoder
from .validation import check_sample

TILE_OVERLAP = 0.25


class AutoencoderKL(AttentionSlicingMixin, ModelMixin):
    """KL-regularised autoencoder, weight-compatible with diffusers' ``AutoencoderKL``.

    Example::

        vae = AutoencoderKL.from_pretrained("stabilityai/sd-vae-ft-mse")
        latents = vae.encode(images).latent_dist.sample(generator) * vae.config.scaling_factor
        images = vae.decode(latents / vae.config.scaling_factor).sample
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",),
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 32,
        scaling_factor: float = 0.18215,
        shift_factor: float | None = None,
        latents_mean: tuple[float, ...] | None = None,
        latents_std: tuple[float, ...] | None = None,
        force_upcast: bool = True,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        mid_block_add_attention: bool = True,
    ) -> None:
        super().__init__()
        common = {
            "block_out_channels": block_out_channels, "layers_per_block": layers_per_block,
            "norm_num_groups": norm_num_groups, "act_fn": act_fn, "mid_block_add_attention": mid_block_add_attention,
        }
        self.encoder = Encoder(in_channels, latent_channels, down_block_types, **common)
        self.decoder = Decoder(latent_channels, out_channels, up_block_types, **common)
        moments = 2 * latent_channels
        self.quant_conv = nn.Conv2d(moments, moments, 1) if use_quant_conv else None
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1) if use_post_quant_conv else None
        self.use_slicing = False
        self.use_tiling = False
        size = sample_size[0] if isinstance(sample_size, (list, tuple)) else sample_size
        self.tile_sample_min_size = size
        self.tile_latent_min_size = int(size / 2 ** (len(block_out_channels) - 1))
        self.tile_overlap_factor = TILE_OVERLAP

    @classmethod
    def _rename_checkpoint_keys(cls, keys: list[str]) -> dict[str, str]:
        """Old checkpoints name the mid-block attention query/key/value/proj_attn."""
        return rename_legacy_attention_keys(keys)

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    # ------------------------------------------------------------------ switches

    def enable_slicing(self) -> None:
        """Encode and decode batches one image at a time (lower peak memory, same result)."""
        self.use_slicing = True

    def disable_slicing(self) -> None:
        self.use_slicing = False

    def enable_tiling(self, use_tiling: bool = True) -> None:
        """Encode and decode images larger than ``sample_size`` as overlapping, blended tiles."""
        self.use_tiling = use_tiling

    def disable_tiling(self) -> None:
        self.use_tiling = False

    # ------------------------------------------------------------------ encode / decode

    def encode(
        self, x: torch.Tensor, return_dict: bool = True
    ) -> AutoencoderKLOutput | tuple[DiagonalGaussianDistribution]:
        """Images ``(B, in_channels, H, W)`` (values in [-1, 1]) -> the latent posterior.

        Raises:
            InputShapeError: wrong channel count or a size not divisible by the downsampling factor.
        """
        check_sample(type(self).__name__, x, self.config.in_channels, self.downsampling_factor, "x")
        moments = self._batched(self._encode_one, x)
        posterior = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(
        self, z: torch.Tensor, return_dict: bool = True, generator: torch.Generator | None = None
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Latents ``(B, latent_channels, h, w)`` -> images ``(B, out_channels, 8h, 8w)`` (SD)."""
        check_sample(type(self).__name__, z, self.config.latent_channels, 1, "z")
        images = self._batched(self._decode_one, z)
        return DecoderOutput(sample=images) if return_dict else (images,)

    def forward(
        self,
        sample: torch.Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Encode, take the posterior's mode (or a sample), decode."""
        posterior = self.encode(sample).latent_dist  # type: ignore[union-attr]
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        images = self.decode(z).sample  # type: ignore[union-attr]
        return DecoderOutput(sample=images) if return_dict else (images,)

    def _batched(self, run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        if self.use_slicing and x.shape[0] > 1:
            return torch.cat([run(part) for part in x.split(1)])
        return run(x)

    def _encode_one(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_tiling and max(x.shape[-2:]) > self.tile_sample_min_size:
            return self._tiled(x, self._encode_tile, self.tile_sample_min_size, self.tile_latent_min_size)
        return self._encode_tile(x)

    def _decode_one(self, z: torch.Tensor) -> torch.Tensor:
        if self.use_tiling and max(z.shape[-2:]) > self.tile_latent_min_size:
            return self._tiled(z, self._decode_tile, self.tile_latent_min_size, self.tile_sample_min_size)
        return self._decode_tile(z)

    def _encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        moments = self.encoder(x)
        return moments if self.quant_conv is None else self.quant_conv(moments)

    def _decode_tile(self, z: torch.Tensor) -> torch.Tensor:
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    # ------------------------------------------------------------------ tiling

    def _tiled(
        self, x: torch.Tensor, run: Callable[[torch.Tensor], torch.Tensor], tile_in: int, tile_out: int
    ) -> torch.Tensor:
        """Run ``run`` on ``tile_in``-sized tiles with stride ``tile_in * (1 - overlap)``.

        Output tiles of ``tile_out`` are blended with their upper and left neighbours over
        ``blend = tile_out * overlap`` rows/columns, then cropped to ``tile_out - blend``.
        """
        stride = int(tile_in * (1 - self.tile_overlap_factor))
        blend = int(tile_out * self.tile_overlap_factor)
        keep = tile_out - blend
        rows = [
            [run(x[:, :, i : i + tile_in, j : j + tile_in]) for j in range(0, x.shape[3], stride)]
            for i in range(0, x.shape[2], stride)
        ]
        stitched_rows = []
        for i, row in enumerate(rows):
            kept = []
            for j, tile in enumerate(row):
                if i > 0:
                    tile = blend_vertical(rows[i - 1][j], tile, blend)
                if j > 0:
                    tile = blend_horizontal(row[j - 1], tile, blend)
                kept.append(tile[:, :, :keep, :keep])
            stitched_rows.append(torch.cat(kept, dim=3))
        return torch.cat(stitched_rows, dim=2)


def blend_vertical(above: torch.Tensor, tile: torch.Tensor, extent: int) -> torch.Tensor:
    """Cross-fade the top ``extent`` rows of ``tile`` with the bottom rows of ``above`` (in place)."""
    extent = min(above.shape[2], tile.shape[2], extent)
    for y in range(extent):
        weight = y / extent
        tile[:, :, y, :] = above[:, :, -extent + y, :] * (1 - weight) + tile[:, :, y, :] * weight
    return tile


def blend_horizontal(left: torch.Tensor, tile: torch.Tensor, extent: int) -> torch.Tensor:
    """Cross-fade the left ``extent`` columns of ``tile`` with the right columns of ``left`` (in place)."""
    extent = min(left.shape[3], tile.shape[3], extent)
    for x in range(extent):
        weight = x / extent
        tile[:, :, :, x] = left[:, :, :, -extent + x] * (1 - weight) + tile[:, :, :, x] * weight
    return tile
