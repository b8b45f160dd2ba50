"""The reliability suite's shared parts: the profile and the tally each scenario reports.

Two profiles, picked by ``PIPEYARD_RELIABILITY_PROFILE`` (a test-only variable, not a pipeyard
setting): ``fast`` (default, what ``make test`` runs: a few cases per scenario) and ``long``
(``make reliability``: sweeps and hypothesis' longer runs). Size a sweep with
``profile.cases(fast=..., long=...)``.

Every scenario counts what it did with ``tally("scenario name")``: cases run, faults injected,
failures, data lost, files written outside the allowed roots, untrusted code executed. The
test asserts its own zeros; the tally is what ``make reliability`` prints as one table (rows
are appended as JSON lines to ``PIPEYARD_RELIABILITY_REPORT`` when it is set, safely from
several xdist workers, and summed per scenario by ``scripts/reliability_table.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock

PROFILES = ("fast", "long")


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str

    @property
    def long(self) -> bool:
        return self.name == "long"

    def cases(self, *, fast: int, long: int) -> int:
        return long if self.long else fast


@dataclasses.dataclass
class Tally:
    """What one scenario did; fields are summed per scenario across tests and workers."""

    scenario: str
    cases: int = 0
    faults: int = 0
    failures: int = 0
    data_lost: int = 0
    outside_writes: int = 0
    untrusted_runs: int = 0

    def row(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def _profile_name() -> str:
    name = os.environ.get("PIPEYARD_RELIABILITY_PROFILE", "fast").strip().lower() or "fast"
    if name not in PROFILES:
        raise pytest.UsageError(
            f"PIPEYARD_RELIABILITY_PROFILE={name!r}: expected one of {', '.join(PROFILES)}"
        )
    return name


@pytest.fixture(scope="session")
def profile() -> Profile:
    return Profile(_profile_name())


@pytest.fixture
def tally() -> Iterator[Callable[[str], Tally]]:
    """``t = tally("kill -9 mid-download")``; count into ``t``; it is reported at teardown."""
    made: list[Tally] = []

    def make(scenario: str) -> Tally:
        made.append(Tally(scenario))
        return made[-1]

    yield make
    report = os.environ.get("PIPEYARD_RELIABILITY_REPORT")
    if not report or not made:
        return
    path = Path(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        with path.open("a", encoding="utf-8") as out:
            for t in made:
                out.write(json.dumps(t.row(), sort_keys=True) + "\n")
