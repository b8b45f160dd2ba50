"""The local engine: one worker in this process, no Ray.

It runs the very :class:`~pipeyard.batch.worker.GenerateWorker` the Ray engine runs, on
the same pinned job, so both engines write the same images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .worker import GenerateWorker

if TYPE_CHECKING:
    from .job import EngineOptions
    from .pinning import PinnedJob


def run_local(
    pinned: PinnedJob, requests: list[dict[str, str]], accept: Callable[[Mapping[str, Any]], None],
    options: EngineOptions,
) -> int:
    """Make every request's image, ``options.batch_size`` at a time; nothing is retried."""
    worker = GenerateWorker(pinned, threads=options.threads)
    for start in range(0, len(requests), options.batch_size):
        chunk = requests[start:start + options.batch_size]
        accept(worker({key: [request[key] for request in chunk] for key in ("id", "hash", "request")}))
    return 0
