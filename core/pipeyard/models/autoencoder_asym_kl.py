"""AsymmetricAutoencoderKL: the VAE of "Designing a Better Asymmetric VQGAN for StableDiffusion"
(Zhu et al. 2023, arXiv:2306.04632; ``cross-attention/asymmetric-autoencoder-kl-x-1-5``).

The encoder is latent diffusion's; the decoder is larger and, for inpainting, conditioned on
the image and its mask (:class:`~.vae.MaskConditionDecoder`), so that the kept area comes back
sharp. Without ``image`` / ``mask`` it decodes like any KL VAE. Weight-compatible with
diffusers' ``AsymmetricAutoencoderKL`` (its ``config.json`` and weight names).
"""

from __future__ import annotations

import torch
from torch import nn

from ..configuration import register_to_config
from ..modeling import ModelMixin
from .attention import AttentionSlicingMixin, rename_legacy_attention_keys
from .outputs import AutoencoderKLOutput, DecoderOutput, DiagonalGaussianDistribution
from .validation import check_sample
from .vae import Encoder, MaskConditionDecoder


class AsymmetricAutoencoderKL(AttentionSlicingMixin, ModelMixin):
    """KL autoencoder with a mask-conditioned decoder.

    ``config.block_out_channels`` is the decoder's (``up_block_out_channels``), as pipelines read
    it for the VAE's scale factor; ``config.force_upcast`` is ``False``.

    Example::

        vae = AsymmetricAutoencoderKL.from_pretrained("cross-attention/asymmetric-autoencoder-kl-x-1-5")
        images = vae.decode(latents / vae.config.scaling_factor, image=init_image, mask=mask).sample
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
        down_block_out_channels: tuple[int, ...] = (64,),
        layers_per_down_block: int = 1,
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",),
        up_block_out_channels: tuple[int, ...] = (64,),
        layers_per_up_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 32,
        scaling_factor: float = 0.18215,
    ) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels, latent_channels, down_block_types, down_block_out_channels,
                               layers_per_down_block, norm_num_groups, act_fn)
        self.decoder = MaskConditionDecoder(latent_channels, out_channels, up_block_types, up_block_out_channels,
                                            layers_per_up_block, norm_num_groups, act_fn)
        self.quant_conv = nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)
        self.register_to_config(block_out_channels=up_block_out_channels, force_upcast=False)

    @classmethod
    def _rename_checkpoint_keys(cls, keys: list[str]) -> dict[str, str]:
        """Old checkpoints name the mid-block attention query/key/value/proj_attn."""
        return rename_legacy_attention_keys(keys)

    def encode(
        self, x: torch.Tensor, return_dict: bool = True
    ) -> AutoencoderKLOutput | tuple[DiagonalGaussianDistribution]:
        """Images ``(B, in_channels, H, W)`` in [-1, 1] -> the latent posterior.

        Raises:
            InputShapeError: wrong channel count or a size not divisible by the downsampling factor.
        """
        factor = 2 ** (len(self.config.down_block_out_channels) - 1)
        check_sample(type(self).__name__, x, self.config.in_channels, factor, "x")
        posterior = DiagonalGaussianDistribution(self.quant_conv(self.encoder(x)))
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(
        self,
        z: torch.Tensor,
        generator: torch.Generator | None = None,
        image: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Latents -> images; with ``image`` (``[-1, 1]``) and ``mask`` (1 = re-drawn) of the
        output's size, the decoder keeps the image where the mask is 0.

        ``generator`` is accepted for diffusers' signature and not used (decoding is deterministic).
        """
        check_sample(type(self).__name__, z, self.config.latent_channels, 1, "z")
        images = self.decoder(self.post_quant_conv(z), image, mask)
        return DecoderOutput(sample=images) if return_dict else (images,)

    def forward(
        self,
        sample: torch.Tensor,
        mask: torch.Tensor | None = None,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Encode, take the posterior's mode (or a sample), decode conditioned on ``sample`` and ``mask``."""
        posterior = self.encode(sample).latent_dist  # type: ignore[union-attr]
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        images = self.decode(z, generator, sample, mask).sample  # type: ignore[union-attr]
        return DecoderOutput(sample=images) if return_dict else (images,)
