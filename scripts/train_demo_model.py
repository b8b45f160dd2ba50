"""Train the small unconditional model that ``pipeyard demo`` ships and samples from.

The data are drawn on the fly: one coloured shape (circle, square or triangle; red, green or
blue) on a plain near-white background, 16x16 RGB by default (``--size 32`` works too, but
is about four times slower per step, too slow to learn well in ~20 min on 2 shared cores).
A small ``UNet2DModel`` learns to predict the noise that pipeyard's own ``DDPMScheduler.add_noise``
put in (plain DDPM training, AdamW, a fixed seed), with an
exponential moving average of its weights, until a wall-clock budget runs out. The EMA weights
are saved in diffusers' layout (``model_index.json``, ``unet/``, ``scheduler/``)::

    nice -n 10 .venv/bin/python scripts/train_demo_model.py --minutes 17 \
        --out core/pipeyard/_bundled/demo_model

(the shipped model: seed 0, 8776 steps of 32 images in 17 min, final smoothed loss 0.0115).

The saved folder loads with ``DiffusionPipeline.from_pretrained(folder)`` (a ``DDPMPipeline``)
or with ``custom_pipeline="ddim_noise_comparative_analysis"``.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeyard import DDPMPipeline, DDPMScheduler, UNet2DModel

#: Shape fill colours (RGB in [0, 1]): few and far apart, so a small model learns them fast.
COLOURS = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.7, 0.1], [0.1, 0.2, 0.9]])
#: Plain backgrounds (one: the problem is kept small enough to learn on 2 CPU cores in minutes).
BACKGROUNDS = torch.tensor([[0.95, 0.95, 0.95]])
SHAPES = ("circle", "square", "triangle")


def shape_masks(kind: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, r: torch.Tensor, size: int) -> torch.Tensor:
    """Return ``(B, 1, size, size)`` masks: shape ``SHAPES[kind]`` of radius ``r`` centred at (cx, cy).

    All geometry is in pixels. The edge is softened over one pixel (a little anti-aliasing).
    """
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    y, x = grid.view(1, -1, 1), grid.view(1, 1, -1)
    dx, dy = x - cx.view(-1, 1, 1), y - cy.view(-1, 1, 1)
    radius = r.view(-1, 1, 1)
    circle = radius - torch.sqrt(dx**2 + dy**2)
    square = radius * 0.85 - torch.maximum(dx.abs(), dy.abs())
    # An upright triangle: below the top vertex's two edges and above the base.
    slant = (dy + radius) * 0.5 - dx.abs() * 0.866 - radius * 0.1
    triangle = torch.minimum(slant, radius * 0.6 - dy)
    signed = torch.where(kind.view(-1, 1, 1) == 0, circle, torch.where(kind.view(-1, 1, 1) == 1, square, triangle))
    return signed.clamp(-0.5, 0.5).add(0.5).unsqueeze(1)


def draw_shapes(batch: int, generator: torch.Generator, size: int = 32) -> torch.Tensor:
    """Return ``(batch, 3, size, size)`` images in [-1, 1]: one coloured shape on a plain background."""
    kind = torch.randint(len(SHAPES), (batch,), generator=generator)
    colour = COLOURS[torch.randint(len(COLOURS), (batch,), generator=generator)]
    background = BACKGROUNDS[torch.randint(len(BACKGROUNDS), (batch,), generator=generator)]
    r = size * (0.2 + 0.1 * torch.rand(batch, generator=generator))
    cx = size / 2 + (torch.rand(batch, generator=generator) - 0.5) * (size - 2 * r)
    cy = size / 2 + (torch.rand(batch, generator=generator) - 0.5) * (size - 2 * r)
    mask = shape_masks(kind, cx, cy, r, size)
    image = mask * colour.view(-1, 3, 1, 1) + (1 - mask) * background.view(-1, 3, 1, 1)
    return image * 2 - 1


def build_unet(size: int) -> UNet2DModel:
    """The demo's UNet: three resolutions (size, size/2, size/4), attention at the last, about 0.7M parameters."""
    return UNet2DModel(
        sample_size=size, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(16, 32, 64), norm_num_groups=8, attention_head_dim=32,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    )


def training_step(
    unet: UNet2DModel, scheduler: DDPMScheduler, images: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """The DDPM loss for one batch: noise the images at random timesteps, predict the noise."""
    noise = torch.randn(images.shape, generator=generator)
    timesteps = torch.randint(scheduler.config.num_train_timesteps, (images.shape[0],), generator=generator)
    noisy = scheduler.add_noise(images, noise, timesteps)
    return F.mse_loss(unet(noisy, timesteps).sample, noise)


@torch.no_grad()
def update_ema(ema: UNet2DModel, model: UNet2DModel, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model``, parameter by parameter."""
    for target, source in zip(ema.parameters(), model.parameters()):
        target.lerp_(source, 1 - decay)


def learning_rate(elapsed: float, budget: float, peak: float, warmup: float = 0.03) -> float:
    """Linear warm-up over the first 3 % of the budget, then a cosine decay to 10 % of ``peak``."""
    progress = min(elapsed / budget, 1.0)
    if progress < warmup:
        return peak * max(progress / warmup, 0.01)
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup))))


def train(args: argparse.Namespace) -> UNet2DModel:
    """Train until ``args.minutes`` of wall time are spent; return the EMA model."""
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    unet, scheduler = build_unet(args.size), DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    ema = copy.deepcopy(unet).requires_grad_(False)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    budget, start, step, running = args.minutes * 60, time.perf_counter(), 0, None
    while (elapsed := time.perf_counter() - start) < budget:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(elapsed, budget, args.lr)
        loss = training_step(unet, scheduler, draw_shapes(args.batch_size, generator, args.size), generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        update_ema(ema, unet, min(args.ema_decay, (1 + step) / (10 + step)))
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        step += 1
        if step % 100 == 0:
            print(f"step {step:6d}  {elapsed:7.1f} s  loss {running:.4f}", flush=True)
    print(f"done: {step} steps in {time.perf_counter() - start:.1f} s, final loss (EMA of batch losses) {running:.4f}")
    return ema


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options: output folder, time budget, batch size, learning rate, seed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("core/pipeyard/_bundled/demo_model"))
    parser.add_argument("--size", type=int, default=16, help="image side in pixels (16: 4x cheaper than 32)")
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--ema-decay", type=float, default=0.995)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: tiny tensors, shared cores)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Train, then save the EMA UNet and its scheduler as a DDPM pipeline folder."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    ema = train(args)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    DDPMPipeline(unet=ema, scheduler=scheduler).save_pretrained(args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
