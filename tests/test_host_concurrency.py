"""Eight processes loading the same remote pipeline into one empty cache all succeed."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeyard.host import cache

_LOAD = """
import sys
from pipeyard.host import load_pipeline_class
cls = load_pipeline_class(sys.argv[1], trust_remote_code=True)
print(cls.__name__, cls.__module__)
"""


def test_eight_processes_fill_an_empty_cache_at_once(olah_hub, pipeline_text):
    repo_id, repo = olah_hub.new_repo()
    repo.commit({"pipeline.py": pipeline_text("Shared", header="from .parts import piece\n"),
                 "parts/piece.py": "VALUE = 1\n"})
    env = {**os.environ, "HF_ENDPOINT": olah_hub.endpoint}
    processes = [
        subprocess.Popen([sys.executable, "-c", _LOAD, repo_id], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    results = [process.communicate(timeout=120) + (process.returncode,) for process in processes]
    assert [code for _, _, code in results] == [0] * 8, [err for _, err, _ in results]
    assert len({out for out, _, _ in results}) == 1 and results[0][0].startswith("Shared pipeyard_m")
    stored = list(cache.modules_dir().iterdir())
    assert len(stored) == 1
    leftovers = [p for p in stored[0].rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [] and cache.load_package(stored[0].name) is not None
