"""StableDiffusionMixin: switches of a latent pipeline's VAE and UNet, with diffusers' names.

Pipelines written for diffusers inherit it (``class MyPipe(DiffusionPipeline,
StableDiffusionMixin)``) and users call its methods on them. What each does here:

==============================  ===============================================================
``enable_vae_slicing``          ``vae.enable_slicing()``: decode one image of the batch at a time
``enable_vae_tiling``           ``vae.enable_tiling()``: decode large images in overlapping tiles
``enable_freeu``                FreeU (Si et al., 2023) where the UNet implements it; pipeyard's
                                does not: :class:`~pipeyard.errors.UnsupportedFeatureError`
``fuse_qkv_projections``        pipeyard's attention already runs q/k/v as one matmul; the flags
                                ``fusing_unet`` / ``fusing_vae`` are recorded, numbers unchanged
==============================  ===============================================================
"""

from __future__ import annotations

import logging
from typing import Any

from .. import errors

logger = logging.getLogger(__name__)


class StableDiffusionMixin:
    """VAE slicing / tiling, FreeU and fused projections for a pipeline with ``vae`` and ``unet``."""

    # ------------------------------------------------------------------ VAE

    def enable_vae_slicing(self) -> None:
        """Decode the batch one image at a time (less memory, same images)."""
        self._component("vae", "VAE slicing").enable_slicing()

    def disable_vae_slicing(self) -> None:
        """Decode the whole batch at once again."""
        self._component("vae", "VAE slicing").disable_slicing()

    def enable_vae_tiling(self) -> None:
        """Decode large images as overlapping tiles (much less memory, seams blended)."""
        self._component("vae", "VAE tiling").enable_tiling()

    def disable_vae_tiling(self) -> None:
        """Decode in one piece again."""
        self._component("vae", "VAE tiling").disable_tiling()

    # ------------------------------------------------------------------ UNet

    def enable_freeu(self, s1: float, s2: float, b1: float, b2: float) -> None:
        """FreeU: scale the UNet decoder's backbone (``b1``, ``b2``) and skip (``s1``, ``s2``) features.

        Raises:
            UnsupportedFeatureError: the UNet does not implement FreeU (pipeyard's does not yet).
        """
        unet = self._component("unet", "FreeU")
        if not callable(getattr(unet, "enable_freeu", None)):
            raise errors.UnsupportedFeatureError(
                "enable_freeu", type(self).__name__,
                f"the {type(unet).__name__} UNet has no FreeU; run without it (call disable_freeu() or drop "
                f"enable_freeu(s1={s1}, s2={s2}, b1={b1}, b2={b2}))",
            )
        unet.enable_freeu(s1=s1, s2=s2, b1=b1, b2=b2)

    def disable_freeu(self) -> None:
        """Turn FreeU off (nothing to do on a UNet without FreeU)."""
        unet = self._component("unet", "FreeU")
        if callable(getattr(unet, "disable_freeu", None)):
            unet.disable_freeu()

    # ------------------------------------------------------------------ fused projections

    def fuse_qkv_projections(self, unet: bool = True, vae: bool = True) -> None:
        """Run attention's query/key/value projections as one matmul.

        pipeyard's attention layers do that already (their ``to_q``/``to_k``/``to_v`` stay
        separate modules for the weights); a model with its own ``fuse_qkv_projections`` is
        asked to fuse. ``fusing_unet`` / ``fusing_vae`` record the request, as in diffusers.
        """
        object.__setattr__(self, "fusing_unet", False)
        object.__setattr__(self, "fusing_vae", False)
        for name, wanted in (("unet", unet), ("vae", vae)):
            if wanted:
                model = self._component(name, "fused QKV projections")
                if callable(getattr(model, "fuse_qkv_projections", None)):
                    model.fuse_qkv_projections()
                object.__setattr__(self, f"fusing_{name}", True)

    def unfuse_qkv_projections(self, unet: bool = True, vae: bool = True) -> None:
        """Undo :meth:`fuse_qkv_projections` (a warning when it was not called)."""
        for name, wanted in (("unet", unet), ("vae", vae)):
            if not wanted:
                continue
            if not getattr(self, f"fusing_{name}", False):
                logger.warning("the %s's QKV projections were not fused (fuse_qkv_projections); nothing to undo", name)
                continue
            model = self._component(name, "fused QKV projections")
            if callable(getattr(model, "unfuse_qkv_projections", None)):
                model.unfuse_qkv_projections()
            object.__setattr__(self, f"fusing_{name}", False)

    # ------------------------------------------------------------------ helpers

    def _component(self, name: str, feature: str) -> Any:
        model = getattr(self, name, None)
        if model is None:
            raise errors.ComponentError(f"{type(self).__name__} has no {name} component, which {feature} needs")
        return model
