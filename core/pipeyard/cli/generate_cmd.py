"""``pipeyard generate``: many images into a folder, locally or on a Ray cluster; rerun to resume.

A thin layer over :func:`pipeyard.generate`: items come from ``--items FILE`` (JSONL) or a grid
(``--prompt`` x ``--seeds`` x ``--scheduler``, with ``--steps``, ``--guidance``, ``--size`` and
``--set key=value`` on every item). The summary goes to stdout; the exit status is 1 when an
item failed (the next run tries it again).
"""

from __future__ import annotations

import json
from typing import Any

import click

from .. import errors


def parse_seeds(text: str) -> list[int]:
    """``0-7``, ``1,5,9`` or a mix (``0-3,10``) -> the seeds.

    Raises:
        JobSpecError: anything else.
    """
    seeds: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            seeds.extend(range(int(low), int(high) + 1) if dash else [int(low)])
        except ValueError:
            raise errors.JobSpecError("--seeds", f"{part.strip()!r} is not a seed or a range",
                                      "write e.g. --seeds 0-99 or --seeds 1,5,9") from None
    return seeds


def parse_settings(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--set key=value`` pairs; the value is read as JSON when it parses, else kept as text.

    Raises:
        JobSpecError: a pair without ``=``.
    """
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise errors.JobSpecError("--set", f"{pair!r} is not key=value", "write e.g. --set eta=0.5")
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value
    return settings


def grid_keywords(steps: int | None, guidance: float | None, size: tuple[int, ...], settings: tuple[str, ...]
                  ) -> dict[str, Any]:
    keywords: dict[str, Any] = {}
    if steps is not None:
        keywords["steps"] = steps
    if guidance is not None:
        keywords["guidance"] = guidance
    if size:
        keywords["size"] = list(size) if len(size) == 2 else size[0]
    keywords.update(parse_settings(settings))
    return keywords


@click.command()
@click.argument("model")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (images/, manifest.jsonl).")
@click.option("--items", "items_file", type=click.Path(dir_okay=False, exists=True),
              help="JSONL file, one item per line: prompt, seed, steps, guidance, size, scheduler, id, any keyword.")
@click.option("--prompt", "prompts", multiple=True, help="Grid: a prompt (repeat for several).")
@click.option("--seeds", default=None, help="Grid: seeds, e.g. 0-99 or 1,5,9 (default 0).")
@click.option("--scheduler", "schedulers", multiple=True, help="Grid: a scheduler class (repeat for several).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Grid: num_inference_steps.")
@click.option("--guidance", type=float, default=None, help="Grid: guidance_scale.")
@click.option("--size", type=click.IntRange(min=1), multiple=True, help="Grid: image size (once: square; twice: H W).")
@click.option("--set", "settings", multiple=True, help="Grid: any pipeline keyword, key=value (JSON value).")
@click.option("--pipeline", "custom_pipeline", default=None, help="custom_pipeline (community name, file, Hub repo).")
@click.option("--pipeline-revision", "custom_revision", default=None, help="Revision of a remote custom pipeline.")
@click.option("--revision", default=None, help="Hub revision of the model (pinned to its commit).")
@click.option("--trust-remote-code", is_flag=True, help="Run remote code that is not in your trust store.")
@click.option("--dtype", type=click.Choice(("float32", "float16", "bfloat16")), default=None)
@click.option("--device", default=None, help="cpu, cuda... (default: cuda with --gpus-per-worker, else cpu).")
@click.option("--engine", type=click.Choice(("local", "ray")), default="local", show_default=True)
@click.option("--address", default=None, help="Ray cluster to join (auto, ray://head:10001); default: start one.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Ray workers.")
@click.option("--cpus-per-worker", type=click.FloatRange(min=0), default=1.0, show_default=True)
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True,
              help="Items a worker takes at a time.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads per worker (default: --cpus-per-worker on Ray, torch's own locally).")
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Runs again of an item whose Ray worker died; past that it is reported failed.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def generate(model: str, out: str, items_file: str | None, prompts: tuple[str, ...], seeds: str | None,
             schedulers: tuple[str, ...], steps: int | None, guidance: float | None, size: tuple[int, ...],
             settings: tuple[str, ...], no_progress: bool, **options: Any) -> None:
    """Make one image per item of MODEL into --out; run it again to resume."""
    import pipeyard

    if len(size) > 2:
        raise click.UsageError("--size takes one value (square) or two (height, width)")
    grid = bool(prompts or seeds or schedulers or steps or guidance is not None or size or settings)
    if items_file and grid:
        raise click.UsageError("--items cannot be combined with grid options (--prompt, --seeds, --steps...)")
    job: dict[str, Any] = {"items": items_file} if items_file else {
        "prompts": list(prompts) or None, "seeds": parse_seeds(seeds) if seeds else [0],
        "schedulers": list(schedulers) or None, "keywords": grid_keywords(steps, guidance, size, settings),
    }
    summary = pipeyard.generate(model, out, **job, torch_dtype=options.pop("dtype"), **options,
                                progress=not no_progress)
    for line in summary.lines():
        click.echo(line)
    if summary.failed:
        click.echo(f"{len(summary.failed)} item(s) failed; run the same command again to retry them", err=True)
        raise SystemExit(1)
