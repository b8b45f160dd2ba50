"""Batch generation: many images from one pipeline, on this machine or a Ray cluster, resumable.

One module per step::

    items.py       JSONL rows or a grid (prompts x seeds x schedulers) -> Items (id, seed, keywords)
    pinning.py     driver: resolve / verify / trust the code once, pin sha256 + commit + model
                   revision; worker: check the bytes and the weights, load exactly that
    worker.py      GenerateWorker: loads the pinned pipeline once, batches -> uint8 images
    job.py         driver: check items, hash them, skip what the manifest has, write results
    output.py      the output folder: images/<id>.png, manifest.jsonl, the lock, resume rules
    images.py      pipeline output -> uint8 array -> PNG bytes
    local.py       the local engine (default): one worker in this process, no Ray
    ray_engine.py  the Ray engine: Ray Data map_batches over an actor pool (Ray imported here only)
    progress.py    the progress bar and the summary

:func:`generate` is ``pipeyard.generate`` (this package is ``pipeyard.batch``, so the public
name is always the function); ``pipeyard generate`` is its command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from .items import Item, grid_items, read_items_file
from .job import EngineOptions
from .progress import GenerateSummary

__all__ = ["EngineOptions", "GenerateSummary", "Item", "generate", "grid_items", "read_items_file"]


def generate(
    model: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    items: str | os.PathLike[str] | Sequence[Item | Mapping[str, Any]] | None = None,
    prompts: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    schedulers: Sequence[str | None] | None = None,
    keywords: Mapping[str, Any] | None = None,
    custom_pipeline: str | None = None,
    custom_revision: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    torch_dtype: str | None = None,
    device: str | None = None,
    allow_pickle: bool = False,
    engine: str = "local",
    address: str | None = None,
    workers: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    batch_size: int = 4,
    threads: int | None = None,
    retries: int = 3,
    hub_options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> GenerateSummary:
    """Make one image per item into ``out``; run it again to resume.

    Args:
        model: a model folder or Hub repo id (model_index.json); a Hub revision is resolved
            to one commit, used by every worker.
        out: the output folder (``images/<id>.png``, ``manifest.jsonl``).
        items: a JSONL file, or rows (mappings like the file's, or :class:`Item`); or leave it
            out and give a grid: ``prompts`` x ``seeds`` x ``schedulers``, each with ``keywords``.
        custom_pipeline, custom_revision, trust_remote_code: the pipeline, resolved, verified
            and trust-checked once here; workers get its verified bytes (see
            :mod:`pipeyard.batch.pinning`). None: the class model_index.json names.
        torch_dtype: ``"float16"`` etc.; device: ``"cuda"`` etc. (default ``cuda`` on Ray
            workers with GPUs, else ``cpu``).
        engine: ``"local"`` (default, no Ray) or ``"ray"`` (``pip install "pipeyard[ray]"``).
        address: the Ray cluster to join (``"auto"``, ``"ray://head:10001"``); None starts one.
        workers, cpus_per_worker, gpus_per_worker, batch_size, threads, retries: see
            :class:`EngineOptions`.
        hub_options: ``token``, ``cache_dir``, ``endpoint``, ``local_files_only`` for the Hub.
        progress: show a progress bar (items/s, ETA) on stderr.

    Returns:
        A :class:`GenerateSummary`: done, skipped, retried, failed (with reasons).

    Raises:
        JobSpecError, DuplicateItemError, UnknownSchedulerError: bad items, before any work.
        ItemConflictError: a finished id asked again with other settings.
        OutputBusyError, ManifestError, PinMismatchError, EngineUnavailableError,
        GenerateJobError, and what loading a pipeline raises (UntrustedCodeError...).

    Example:
        >>> summary = pipeyard.generate("demo-model", "out", seeds=range(8),  # doctest: +SKIP
        ...                             custom_pipeline="ddim_noise_comparative_analysis",
        ...                             keywords={"num_inference_steps": 10})
        >>> summary.done  # doctest: +SKIP
        8
    """
    import time

    from .job import run_job
    from .pinning import pin_job

    start = time.perf_counter()
    if device is None and gpus_per_worker > 0:
        device = "cuda"
    options = EngineOptions(engine, address, workers, cpus_per_worker, gpus_per_worker, batch_size, threads, retries)
    options.check()
    job_items = _items(items, prompts, seeds, schedulers, keywords)
    pinned, cls = pin_job(
        model, custom_pipeline=custom_pipeline, custom_revision=custom_revision, revision=revision,
        trust_remote_code=trust_remote_code, hub_options=hub_options, torch_dtype=torch_dtype, device=device,
        allow_pickle=allow_pickle,
    )
    summary = run_job(pinned, cls, job_items, os.fspath(out), options, progress)
    summary.seconds = time.perf_counter() - start
    return summary


def _items(
    items: str | os.PathLike[str] | Sequence[Item | Mapping[str, Any]] | None,
    prompts: Sequence[str] | None,
    seeds: Sequence[int] | None,
    schedulers: Sequence[str | None] | None,
    keywords: Mapping[str, Any] | None,
) -> list[Item]:
    from .. import errors
    from .items import check_unique, make_item

    if items is None:
        return grid_items(prompts=prompts, seeds=list(seeds) if seeds is not None else [0],
                          schedulers=list(schedulers) if schedulers else [None], keywords=keywords)
    if prompts or seeds is not None or schedulers or keywords:
        raise errors.JobSpecError("items", "given together with a grid (prompts, seeds, schedulers, keywords)",
                                  "pass either items or a grid")
    if isinstance(items, (str, os.PathLike)):
        return read_items_file(items)
    return check_unique([row if isinstance(row, Item) else make_item(row, f"items[{index}]")
                         for index, row in enumerate(items)])
