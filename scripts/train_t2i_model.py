"""Train the tiny text-to-image Stable Diffusion that ships as ``pipeyard/_bundled/t2i_model``.

Pictures and captions come from ``scripts/t2i_scenes.py`` (one or two coloured shapes on a plain
background, 32x32, "a big red circle on the left and a small blue square on the right on a
white background"); captions held out there are never drawn here. Two stages, one seed:

1. the VAE (pipeyard's ``AutoencoderKL``, 32x32 images <-> 4x16x16 latents) learns to
   reconstruct the pictures (L1 + MSE, a very small KL term); its ``scaling_factor`` is then set so
   that the latents have unit standard deviation;
2. the UNet (pipeyard's ``UNet2DConditionModel``) and a small transformers ``CLIPTextModel``
   learn together to predict the noise that ``DDPMScheduler.add_noise`` put in the latents
   (min-SNR-5 weighted), with 10 % of captions dropped (empty prompt) so that classifier-free
   guidance works; the saved weights are an exponential moving average. The UNet hears the
   prompt only through cross-attention, which starts out attending evenly to all 24 tokens (one
   word's change arrives 24x diluted, and for the first ~2000 steps the UNet learns the pictures
   and ignores the prompt): the text encoder's output is scaled up (``--text-gain``) and the
   prompt's path learns faster (``--text-lr-scale``).

The tokenizer is a ``CLIPTokenizer`` whose BPE knows each caption word as one token (every other
string still tokenizes, byte by byte). The result is a diffusers-format
``StableDiffusionPipeline`` folder (model_index.json, safetensors), written at every checkpoint
(``--save-every`` minutes; each save replaces the folder whole), so a shorter run still leaves a
usable model::

    nice -n 10 .venv/bin/python scripts/train_t2i_model.py --vae-minutes 7 --minutes 62 \\
        --out core/pipeyard/_bundled/t2i_model

Everything is seeded (``--seed``); with wall-clock budgets the number of steps depends on the
machine's speed, so ``--vae-steps`` / ``--steps`` give a step count instead (the learning-rate
schedule follows it), and two runs with the same counts write identical weights.
``--vae-from FOLDER`` skips stage 1 and takes the VAE of a saved folder. bench/RESULTS.md
records the shipped run and ``bench/prompt_accuracy.py`` measures it.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import t2i_scenes  # noqa: E402  (the shared scene/detector module next to this script)

from pipeyard import (  # noqa: E402
    AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel,
)

#: token budget of a prompt (the longest caption is 19 words + start and end)
MAX_TOKENS = 24
#: Stable Diffusion's noise schedule (shared by the training DDPM and the shipped DDIM scheduler)
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


# ---------------------------------------------------------------- components


def byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for bytes that byte-level BPE (GPT-2, CLIP) uses."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word: merge the lowest-ranked adjacent pair until none is ranked."""
    while len(symbols) > 1:
        pairs = [(ranks.get(pair, len(ranks)), i) for i, pair in enumerate(zip(symbols, symbols[1:]))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        symbols = [*symbols[:i], symbols[i] + symbols[i + 1], *symbols[i + 2 :]]
    return symbols


def write_tokenizer_files(folder: Path, words: tuple[str, ...]) -> tuple[Path, Path]:
    """vocab.json + merges.txt of a CLIP BPE that knows every byte and each of ``words`` whole.

    Merges are added one at a time, each joining the first two pieces of a word as the merges so
    far leave it (BPE applies merges by rank, so a merge learnt for one word can split another's
    differently: "red"'s "r e" comes before "green"'s "g r"); until every word is one piece.
    """
    alphabet = byte_alphabet()
    vocab = [*alphabet, *(c + "</w>" for c in alphabet)]
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        while len(pieces := _bpe([*word[:-1], word[-1] + "</w>"], ranks)) > 1:
            ranks[(pieces[0], pieces[1])] = len(ranks)
            if pieces[0] + pieces[1] not in vocab:
                vocab.append(pieces[0] + pieces[1])
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding="utf-8")
    merges = [f"{a} {b}" for (a, b), _ in sorted(ranks.items(), key=lambda item: item[1])]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder / "vocab.json", folder / "merges.txt"


def build_tokenizer(scratch: Path):
    from transformers import CLIPTokenizer

    vocab, merges = write_tokenizer_files(scratch, t2i_scenes.WORDS)
    tokenizer = CLIPTokenizer(vocab=str(vocab), merges=str(merges), model_max_length=MAX_TOKENS)
    split = [word for word in t2i_scenes.WORDS if len(tokenizer.tokenize(word)) != 1]
    longest = max(len(tokenizer(scene.caption).input_ids) for scene in t2i_scenes.all_scenes())
    if split or longest > MAX_TOKENS:
        raise RuntimeError(f"tokenizer splits {split} / needs {longest} > {MAX_TOKENS} tokens for a caption")
    return tokenizer


def build_text_encoder(tokenizer, width: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=width,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_vae() -> AutoencoderKL:
    """32x32 RGB <-> 4x16x16 latents (two resolutions, no attention: flat shapes need none)."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=t2i_scenes.SIZE,
        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, mid_block_add_attention=False,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )


def build_unet(text_width: int) -> UNet2DConditionModel:
    """16x16 latents, three resolutions, cross-attention to the prompt at 8x8 and 4x4 (about 1M parameters).

    Narrow at 16x16 (the costliest level on a CPU), wide where it attends to the prompt.
    """
    return UNet2DConditionModel(
        sample_size=t2i_scenes.SIZE // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32, 64), norm_num_groups=8, cross_attention_dim=text_width,
        attention_head_dim=(1, 1, 2),  # heads per block: 32 channels each (narrow heads attend uniformly)
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    )


# ---------------------------------------------------------------- training helpers


def learning_rate(progress: float, peak: float, warmup: float = 0.03) -> float:
    """Linear warm-up over the first 3 % of the budget, then a cosine decay to 10 % of ``peak``."""
    progress = min(progress, 1.0)
    if progress < warmup:
        return peak * max(progress / warmup, 0.01)
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup))))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model``, parameter by parameter."""
    for target, source in zip(ema.parameters(), model.parameters()):
        target.lerp_(source, 1 - decay)


class Budget:
    """How far a stage is: by wall-clock minutes, or by steps when a step count is given.

    Minutes fit a run to the time there is; steps make a rerun identical on any machine (the
    learning-rate schedule follows the same progress).
    """

    def __init__(self, minutes: float, steps: int | None) -> None:
        self.seconds, self.steps, self.start = minutes * 60, steps, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def progress(self, step: int) -> float:
        return step / self.steps if self.steps else self.elapsed() / self.seconds


class Batches:
    """Seeded training batches: scenes from the training split, their pictures and token ids."""

    def __init__(self, tokenizer, seed: int, drop: float) -> None:
        self.rng = random.Random(seed)
        self.train, _ = t2i_scenes.split_scenes()
        self.drop = drop
        captions = sorted({s.caption for s in self.train} | {""})
        ids = tokenizer(captions, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
        self.ids = dict(zip(captions, ids.input_ids))

    def images(self, n: int) -> torch.Tensor:
        scenes = t2i_scenes.sample_scenes(self.train, n, self.rng)
        return torch.from_numpy(t2i_scenes.draw_batch(scenes, self.rng))

    def encode_pool(self, vae: AutoencoderKL, size: int, chunk: int = 64) -> None:
        """Draw ``size`` training pictures once and keep their latent distributions (mean, std).

        Drawing and encoding every step would cost about a sixth of a step; the pool keeps the
        position and radius jitter of ``size`` pictures, and each use samples the latent afresh.
        """
        self.scenes = t2i_scenes.sample_scenes(self.train, size, self.rng)
        means, stds = [], []
        with torch.no_grad():
            for i in range(0, size, chunk):
                images = torch.from_numpy(t2i_scenes.draw_batch(self.scenes[i : i + chunk], self.rng))
                posterior = vae.encode(images).latent_dist
                means.append(posterior.mean)
                stds.append(posterior.std)
        self.means, self.stds = torch.cat(means), torch.cat(stds)

    def latents(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latents, token ids)``: ``n`` pool entries, a fresh latent sample each, ``drop`` of captions emptied."""
        index = torch.randint(len(self.scenes), (n,), generator=generator)
        latents = self.means[index] + self.stds[index] * torch.randn(self.means[index].shape, generator=generator)
        captions = ["" if self.rng.random() < self.drop else self.scenes[i].caption for i in index.tolist()]
        return latents, torch.stack([self.ids[c] for c in captions])


def train_vae(vae: AutoencoderKL, batches: Batches, args: argparse.Namespace) -> float:
    """Stage 1: reconstruction; returns the scaling factor (1 / std of the latents)."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    budget = Budget(args.vae_minutes, args.vae_steps)
    step, running = 0, None
    generator = torch.Generator().manual_seed(args.seed + 1)
    while (progress := budget.progress(step)) < 1:
        elapsed = budget.elapsed()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(progress, args.vae_lr)
        images = batches.images(args.vae_batch_size)
        posterior = vae.encode(images).latent_dist
        recon = vae.decode(posterior.sample(generator)).sample
        kl = posterior.kl().mean() / recon[0].numel()
        loss = F.l1_loss(recon, images) + F.mse_loss(recon, images) + args.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        step += 1
        if step % 50 == 0:
            print(f"vae step {step:6d}  {elapsed:7.1f} s  loss {running:.4f}", flush=True)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        latents = torch.cat([vae.encode(batches.images(64)).latent_dist.sample(generator) for _ in range(4)])
    scale = float(1 / latents.std())
    print(f"vae done: {step} steps, loss {running:.4f}, latent std {latents.std():.3f} -> scaling_factor {scale:.4f}")
    print(f"vae reconstructions read back by the detector: {reconstruction_accuracy(vae, batches):.1%} of attributes")
    return scale


@torch.no_grad()
def reconstruction_accuracy(vae: AutoencoderKL, batches: Batches, count: int = 128) -> float:
    """The detector's attribute accuracy on VAE reconstructions: the ceiling for the whole model."""
    scenes = t2i_scenes.sample_scenes(batches.train, count, batches.rng)
    images = torch.from_numpy(t2i_scenes.draw_batch(scenes, batches.rng))
    recon = ((vae.decode(vae.encode(images).latent_dist.mean).sample + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    right = total = 0
    for scene, image in zip(scenes, recon):
        for ok, n in t2i_scenes.score(scene, t2i_scenes.detect(image)).values():
            right, total = right + ok, total + n
    return right / total


def diffusion_loss(unet, text_encoder, scheduler, latents, ids, generator, offset: float = 0.0) -> torch.Tensor:
    """Min-SNR-5 weighted epsilon loss for one batch of (scaled latents, token ids).

    ``offset`` adds a random per-channel constant to the noise ("offset noise"). Without it the
    mean of even the noisiest latent still shows the background (at t=999, 0.07 x the picture over
    1024 values), so the model reads the background off the noise instead of the prompt, and at
    sampling time pure noise picks it at random.
    """
    noise = torch.randn(latents.shape, generator=generator)
    if offset:
        noise = noise + offset * torch.randn((*latents.shape[:2], 1, 1), generator=generator)
    timesteps = torch.randint(scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction = unet(noisy, timesteps, encoder_hidden_states=text_encoder(ids)[0]).sample
    alpha_bar = scheduler.alphas_cumprod[timesteps]
    snr = alpha_bar / (1 - alpha_bar)
    weight = torch.clamp(snr, max=5.0) / snr
    return (weight * F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3))).mean()


def train_diffusion(unet, text_encoder, vae, tokenizer, batches: Batches, args: argparse.Namespace) -> None:
    """Stage 2: UNet + text encoder together, with EMA copies saved every ``args.save_every`` minutes."""
    scheduler = DDPMScheduler(**SCHEDULE)
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    params = [*unet.parameters(), *text_encoder.parameters()]
    # The prompt's path (text encoder, cross-attention) learns at --text-lr-scale times the rate:
    # early on the UNet learns the pictures' look and ignores the weak, diluted text signal.
    prompt_path = {id(p) for p in text_encoder.parameters()}
    prompt_path |= {id(p) for name, p in unet.named_parameters() if ".attn2." in name}
    groups = [
        {"params": [p for p in params if id(p) not in prompt_path], "scale": 1.0},
        {"params": [p for p in params if id(p) in prompt_path], "scale": args.text_lr_scale},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(args.seed + 2)
    budget = Budget(args.minutes, args.steps)
    step, running, saved_at = 0, None, time.perf_counter()
    while (progress := budget.progress(step)) < 1:
        elapsed = budget.elapsed()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(progress, args.lr) * group.get("scale", 1.0)
        latents, ids = batches.latents(args.batch_size, generator)
        loss = diffusion_loss(
            unet, text_encoder, scheduler, latents * vae.config.scaling_factor, ids, generator, args.offset_noise
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        decay = min(args.ema_decay, (1 + step) / (10 + step))
        update_ema(ema_unet, unet, decay)
        update_ema(ema_text, text_encoder, decay)
        running = loss.item() if running is None else 0.99 * running + 0.01 * loss.item()
        step += 1
        if step % 100 == 0:
            print(f"step {step:6d}  {elapsed:7.1f} s  loss {running:.4f}", flush=True)
        if time.perf_counter() - saved_at > args.save_every * 60:
            note = f"step {step}, {elapsed / 60:.1f} min, loss {running:.4f}"
            save(ema_unet, ema_text, vae, tokenizer, args.out, note)
            saved_at = time.perf_counter()
    print(f"done: {step} steps in {budget.elapsed():.1f} s, final loss (EMA of batch losses) {running:.4f}")
    save(ema_unet, ema_text, vae, tokenizer, args.out, f"final: step {step}, loss {running:.4f}")


def save(unet, text_encoder, vae, tokenizer, out: Path, note: str) -> None:
    """Write the pipeline folder next to ``out``, then swap it in (a reader never sees half a model)."""
    scheduler = DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    pipe.save_pretrained(staging)
    for path in [staging, *staging.rglob("*")]:  # mkdtemp / atomic writes leave owner-only modes
        path.chmod(0o755 if path.is_dir() else 0o644)
    old = out.with_name(f".{out.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    print(f"saved {out} ({note})", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options: output folder, time budgets, batch size, learning rates, seed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("core/pipeyard/_bundled/t2i_model"))
    parser.add_argument("--vae-minutes", type=float, default=8.0, help="wall-clock budget of stage 1 (VAE)")
    parser.add_argument("--minutes", type=float, default=70.0, help="wall-clock budget of stage 2 (UNet + text)")
    parser.add_argument("--vae-steps", type=int, default=None, help="stage 1 steps (instead of --vae-minutes)")
    parser.add_argument("--steps", type=int, default=None, help="stage 2 steps (instead of --minutes)")
    parser.add_argument("--vae-from", type=Path, default=None, help="skip stage 1: the VAE of this saved folder")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="skip stage 1 and start stage 2 from this saved folder's weights (VAE, UNet, text)")
    parser.add_argument("--save-every", type=float, default=5.0, help="minutes between checkpoints")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vae-batch-size", type=int, default=16)
    parser.add_argument("--pool", type=int, default=16384, help="training pictures drawn and encoded once")
    parser.add_argument("--vae-lr", type=float, default=2e-3)
    parser.add_argument("--kl-weight", type=float, default=1e-4, help="KL term per latent element")
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--text-lr-scale", type=float, default=3.0, help="learning-rate factor of the prompt's path")
    parser.add_argument("--text-gain", type=float, default=4.0,
                        help="scale the text encoder's final norm at the start (after --init-from too: 1 keeps it)")
    parser.add_argument("--offset-noise", type=float, default=0.3, help="per-channel constant added to the noise")
    parser.add_argument("--text-width", type=int, default=64, help="CLIP hidden size (= cross-attention width)")
    parser.add_argument("--drop", type=float, default=0.1, help="share of empty captions (for guidance)")
    parser.add_argument("--ema-decay", type=float, default=0.995)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: tiny tensors, shared cores)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Train both stages and save the pipeline folder."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = build_tokenizer(Path(scratch))
        text_encoder = build_text_encoder(tokenizer, args.text_width)
    vae, unet = build_vae(), build_unet(args.text_width)
    batches = Batches(tokenizer, args.seed, args.drop)
    if args.init_from:
        unet.load_state_dict(UNet2DConditionModel.from_pretrained(args.init_from, subfolder="unet").state_dict())
        text_encoder.load_state_dict(type(text_encoder).from_pretrained(args.init_from / "text_encoder").state_dict())
        print(f"UNet and text encoder start from {args.init_from}")
    if args.text_gain != 1:
        # The UNet reads the prompt by cross-attention: with unit-scale embeddings its attention is
        # near uniform over the 24 tokens at first, so one word's change reaches it 24x diluted.
        norm = next(m for name, m in text_encoder.named_modules() if name.endswith("final_layer_norm"))
        with torch.no_grad():
            norm.weight.mul_(args.text_gain)
            norm.bias.mul_(args.text_gain)
        print(f"text encoder output scaled by {args.text_gain}")
    if args.vae_from or args.init_from:
        source = args.vae_from or args.init_from
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae").eval().requires_grad_(False)
        print(f"stage 1 skipped: VAE from {source} (scaling_factor {vae.config.scaling_factor:.4f})")
    else:
        vae.register_to_config(scaling_factor=train_vae(vae, batches, args))
    start = time.perf_counter()
    batches.encode_pool(vae, args.pool)
    print(f"encoded a pool of {args.pool} training pictures in {time.perf_counter() - start:.1f} s", flush=True)
    train_diffusion(unet, text_encoder, vae, tokenizer, batches, args)


if __name__ == "__main__":
    main()
