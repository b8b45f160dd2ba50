"""The Ray engine: Ray Data ``map_batches`` over an actor pool; the only module importing Ray.

* **One load per worker.** ``map_batches`` with a callable class runs an
  :class:`~ray.data.ActorPoolStrategy` pool: each actor builds
  :class:`~pipeyard.batch.worker.GenerateWorker` once (the pinned code and weights) and then
  takes batch after batch.
* **Fault tolerance is Ray's.** Ray Data restarts a dead actor and runs its batch again (its
  defaults for actor pools: ``max_restarts=-1``, ``max_task_retries=-1``; Ray 2.60 takes these
  only through the deprecated ``**ray_remote_args``, so they are left at that). A small tally
  actor counts how often each item was started: the summary's ``retried``, and the bound:
  an item started more than ``retries + 1`` times (a poison item that kills every worker
  running it) is not run again but reported failed, and the job goes on.
* **Streaming.** Results come back to the driver batch by batch (``iter_batches``) while other
  batches still run; the driver writes the images and the manifest, so workers need no shared
  filesystem and only one process ever writes the output folder.
* **Cluster.** ``address`` joins a running cluster (``ray start --head`` on the head node,
  ``address="auto"`` there, or ``ray://head:10001``); without it a local cluster is started
  for the job and shut down after it. A cluster the caller started (``ray.init`` before) is
  used and left running.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .. import errors
from .worker import GenerateWorker

if TYPE_CHECKING:
    from .job import EngineOptions
    from .pinning import PinnedJob


class RayGenerateWorker(GenerateWorker):
    """The worker inside a Ray actor: tells the tally which items it starts, then works."""

    def __init__(self, job: PinnedJob, threads: int | None, tally: Any, retries: int) -> None:
        super().__init__(job, threads)
        self.tally = tally
        self.retries = retries
        self.starts: dict[str, int] = {}

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        import ray

        self.starts = ray.get(self.tally.started.remote([str(i) for i in batch["id"]]))
        return super().__call__(batch)

    def refused(self, item_id: str) -> tuple[Any, str, float, str] | None:
        starts = self.starts.get(item_id, 1)
        if starts <= self.retries + 1:
            return None
        from .worker import NO_IMAGE

        reason = (f"GenerateJobError: the worker running this item died {starts - 1} times (retries={self.retries}); "
                  f"not run again")
        return NO_IMAGE, reason, 0.0, "null"


class _Tally:
    """How many times each item was started (by any worker, across restarts)."""

    def __init__(self) -> None:
        self.starts: dict[str, int] = {}

    def started(self, ids: list[str]) -> dict[str, int]:
        for item_id in ids:
            self.starts[item_id] = self.starts.get(item_id, 0) + 1
        return {item_id: self.starts[item_id] for item_id in ids}

    def retried(self) -> int:
        return sum(1 for count in self.starts.values() if count > 1)


def run_ray(
    pinned: PinnedJob, requests: list[dict[str, str]], accept: Callable[[Mapping[str, Any]], None],
    options: EngineOptions,
) -> int:
    """Run the requests on a Ray cluster; the number of items retried.

    Raises:
        EngineUnavailableError: Ray is not installed.
        GenerateJobError: Ray gave up (retries exhausted, cluster lost).
    """
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=options.address, log_to_driver=False)
    try:
        tally = ray.remote(num_cpus=0)(_Tally).remote()
        for batch in _dataset(ray, pinned, requests, options, tally).iter_batches(batch_size=None,
                                                                                 batch_format="numpy"):
            accept(batch)
        return int(ray.get(tally.retried.remote()))
    except ray.exceptions.RayError as exc:
        raise errors.GenerateJobError("ray", f"{type(exc).__name__}: {_first_line(exc)}") from exc
    finally:
        if started_here:
            ray.shutdown()


def _dataset(ray: Any, pinned: PinnedJob, requests: list[dict[str, str]], options: EngineOptions, tally: Any) -> Any:
    """The requests as a dataset, mapped by an actor pool of ``options.workers`` workers."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False  # the driver shows its own
    blocks = min(len(requests), max(options.workers * 2, math.ceil(len(requests) / options.batch_size)))
    threads = options.threads if options.threads is not None else max(1, int(options.cpus_per_worker))
    return ray.data.from_items(requests, override_num_blocks=blocks).map_batches(
        RayGenerateWorker,
        fn_constructor_kwargs={"job": pinned, "threads": threads, "tally": tally, "retries": options.retries},
        batch_size=options.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=options.workers),
        num_cpus=options.cpus_per_worker,
        num_gpus=options.gpus_per_worker,
    )


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is the part the engine needs)
    except ImportError:
        raise errors.EngineUnavailableError("ray", "ray[data]") from None
    return ray


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
